"""shmring in the benchmark, measured five ways: send (one copy), send with
streaming stores (send-nt), reserve and fill in place (zero copy), the batch
API, and the nogil Cython API."""
import uuid

import shmring
from shmring.bench.channel import Channel, Duplex
from shmring.bench.harness import touch
from shmring.bench.peers import Peer

SPIN = 200_000                          # polls before sleeping, in spin mode
BATCH = 256                             # frames per send_many/recv_many call


def capacity_for(size):
    """Room for about four frames in flight, and at least 1 MiB."""
    need = 4 * (size + 64)
    return max(1 << 20, 1 << (need - 1).bit_length())


class RingChannel(Channel):
    def __init__(self, size, spin):
        self.ring = shmring.Ring.create(f"bench-{uuid.uuid4().hex[:12]}", capacity_for(size))
        self.spin = spin

    def consumer(self):
        return self.ring.consumer(spin=self.spin)

    def producer(self, index):
        return self.ring.producer(spin=self.spin)

    def send(self, p, buf):
        p.send(buf)

    def recv(self, c):
        return c.recv()

    def drain(self, c, total):
        acc = 0
        recv = c.recv
        for _ in range(total):
            f = recv()
            acc += touch(f)
            f.release()
        return acc

    def close(self):
        self.ring.close()
        self.ring.unlink()


class StreamingChannel(RingChannel):
    def producer(self, index):
        return self.ring.producer(spin=self.spin, nontemporal=True)


class ReserveChannel(RingChannel):
    def fill(self, p, job):
        count, payload = job
        n = len(payload)
        for i in range(count):
            with p.reserve(n) as r:     # the producer writes the frame in place
                a = r.array()
                a.fill(i & 0xff)
                del a


class BatchChannel(RingChannel):
    def fill(self, p, job):
        count, payload = job
        batch = [payload] * BATCH
        for start in range(0, count, BATCH):
            p.send_many(batch if count - start >= BATCH else batch[:count - start])

    def drain(self, c, total):
        # Small frames are cheaper copied into bytes than wrapped in Frames.
        acc = 0
        got = 0
        while got < total:
            frames = c.recv_bytes_many(BATCH)
            for b in frames:
                acc += touch(b)
            got += len(frames)
        return acc


class NogilChannel(RingChannel):
    """Producer and consumer loops in C, through `cimport shmring`."""

    def __init__(self, size, spin, module):
        super().__init__(size, spin)
        self.mod = module

    def fill(self, p, job):
        count, payload = job
        self.mod.produce(p, count, payload)

    def drain(self, c, total):
        return self.mod.consume(c, total)


class NogilDuplex(Duplex):
    def echo(self, state, n):
        rx, tx = state
        self.fwd.mod.echo(rx, tx, n)

    def ping(self, state, job):
        tx, rx = state
        n, payload = job
        return list(self.fwd.mod.ping(tx, rx, n, payload))


class Shmring(Peer):
    kinds = {"send": RingChannel, "send-nt": StreamingChannel, "reserve": ReserveChannel,
             "batch": BatchChannel}

    def __init__(self, mode, spin=0):
        self.mode = mode
        self.spin = spin
        self.name = "shmring"

    def channel(self, producers, size):
        return self.kinds[self.mode](size, self.spin)


class ShmringNogil(Shmring):
    """The compiled module is built on first use (see nogil.py)."""

    def __init__(self, spin=0):
        super().__init__("nogil", spin)
        self.module = None
        self.reason = None

    def missing(self):
        if self.module is None and self.reason is None:
            from shmring.bench import nogil
            try:
                self.module = nogil.load()
            except Exception as e:      # noqa: BLE001 - no compiler, no Cython: skip
                self.reason = f"cannot build the nogil module: {type(e).__name__}: {e}"
        return self.reason

    def channel(self, producers, size):
        return NogilChannel(size, self.spin, self.module)

    def duplex(self, size):
        return NogilDuplex(self.channel(1, size), self.channel(1, size))

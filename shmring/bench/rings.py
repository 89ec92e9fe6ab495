"""shmring in the benchmark, measured six ways: send (one copy) with a
consumer that takes Frames (recv) or bytes (recv_bytes), send with streaming
stores (send-nt), reserve and fill in place (zero copy), the batch API, and
the nogil Cython API.  Each can run with a ring of a given capacity (the
--capacities sweep)."""
import copy
import uuid

import shmring
from shmring.bench.channel import Channel, Duplex
from shmring.bench.harness import touch
from shmring.bench.peers import Peer
from shmring.bench.report import size_name

SPIN = 200_000                          # polls before sleeping, in spin mode
BATCH = 256                             # frames per send_many/recv_many call


def smallest_ring(size, frames):
    """The smallest capacity that holds `frames` frames of `size` bytes."""
    record = 64 + (size + 63) // 64 * 64    # a record header, the payload on whole lines
    need = max(frames * record, 2 * record, 4096)   # a frame is at most half the ring
    return 1 << (need - 1).bit_length()


def capacity_for(size):
    """The default: room for about four frames in flight, and at least 1 MiB."""
    return max(1 << 20, smallest_ring(size, 4))


SWEEP_TOP = 128 << 20                   # a ring sized for bursts


def sweep(size):
    """Capacities from the smallest ring that holds 3 frames up to 128 MiB."""
    cap = smallest_ring(size, 3)
    out = []
    while cap <= SWEEP_TOP:
        out.append(cap)
        cap *= 2
    return out


class RingChannel(Channel):
    def __init__(self, size, spin, capacity=None):
        self.ring = shmring.Ring.create(f"bench-{uuid.uuid4().hex[:12]}",
                                        capacity or capacity_for(size))
        self.spin = spin

    def consumer(self):
        return self.ring.consumer(spin=self.spin)     # None: the default, adaptive poll

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


class RecvBytesChannel(RingChannel):
    def recv(self, c):
        return c.recv_bytes()

    def drain(self, c, total):
        acc = 0
        recv_bytes = c.recv_bytes
        for _ in range(total):
            acc += touch(recv_bytes())
        return acc


class StreamingChannel(RingChannel):
    def producer(self, index):
        return self.ring.producer(spin=self.spin, nontemporal=True)


class ReserveChannel(RingChannel):
    def fill(self, p, job):
        count, payload = job
        n, tag = len(payload), payload[0]
        for _ in range(count):
            with p.reserve(n) as r:     # the producer writes the frame in place
                a = r.array()
                a.fill(tag)             # its first byte names the producer (Channel.tally)
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

    counts_shares = False               # the consumer loop is C: nothing to count in

    def __init__(self, size, spin, capacity, module):
        super().__init__(size, spin, capacity)
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
    kinds = {"send": RingChannel, "recv_bytes": RecvBytesChannel, "send-nt": StreamingChannel,
             "reserve": ReserveChannel, "batch": BatchChannel}
    small_only = ("recv_bytes", "batch")   # APIs for small frames: 64 B and 4 KiB only

    def __init__(self, mode, spin=None):
        self.mode = mode
        self.spin = spin
        self.name = "shmring"
        self.capacity = None            # None: capacity_for(size)

    @property
    def label(self):
        if self.capacity is None:
            return self.mode
        return f"{self.mode}, {size_name(self.capacity)} ring"

    def with_capacity(self, capacity):
        """The same mode through rings of this capacity."""
        other = copy.copy(self)
        other.capacity = capacity
        return other

    def channel(self, producers, size):
        return self.kinds[self.mode](size, self.spin, self.capacity)

    def min_frames(self, size):
        """Two laps of the ring, so that a repetition is not mostly its first
        lap (each process's first touch of each page)."""
        return 2 * (self.capacity or capacity_for(size)) // (size + 64)


class ShmringNogil(Shmring):
    """The compiled module is built on first use (see nogil.py)."""

    def __init__(self, spin=None):
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
        return NogilChannel(size, self.spin, self.capacity, self.module)

    def duplex(self, size):
        return NogilDuplex(self.channel(1, size), self.channel(1, size))

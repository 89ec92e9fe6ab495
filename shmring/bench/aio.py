"""Awaiting frames in the benchmark (docs/asyncio.md).

In `shmring bench`: `shmring-async` is an `async for` consumer (asyncio) fed by
blocking producers, and, for latency, a ping-pong of arecv/asend on both sides;
`asyncio streams` is what an asyncio user has without shmring:
length-prefixed frames over a unix socketpair.  target_rows() reads them
against the blocking API and counts doorbell rings per 1,000 frames of the
async-for runs, for the targets table (--targets).  shmring/bench/doorbells.py
compares the doorbell with its alternatives.
"""
import asyncio
import socket
import struct
import time

from shmring.bench import report, rings
from shmring.bench.channel import Channel, Duplex
from shmring.bench.harness import touch
from shmring.bench.peers import Peer

LENGTH = struct.Struct("<I")
RINGS: list[tuple[int, int]] = []   # (doorbell rings, frames) of each async-for run, read by target_rows()
clock = time.perf_counter_ns


# --- shmring, awaited -------------------------------------------------------

class AsyncChannel(rings.RingChannel):
    """Blocking producers, an `async for` consumer."""

    counts_shares = False               # the producers share as in the blocking send rows

    def drain(self, c, total):
        async def run():
            acc = n = 0
            async for frame in c:
                acc += touch(frame)
                frame.release()
                n += 1
                if n == total:
                    return acc
        return asyncio.run(run())

    def close(self):
        s = self.ring.stats()
        RINGS.append((s["doorbell_rings"], s["frames_received"]))
        super().close()


class AsyncDuplex(Duplex):
    """Ping-pong with arecv() and asend() on both sides."""

    def echo(self, state, n):
        rx, tx = state

        async def run():
            for _ in range(n):
                with await rx.arecv() as frame:
                    await tx.asend(frame)
        asyncio.run(run())

    def ping(self, state, job):
        tx, rx = state
        n, payload = job

        async def run():
            times = []
            for _ in range(n):
                t = clock()
                await tx.asend(payload)
                with await rx.arecv():
                    times.append(clock() - t)
            return times
        return asyncio.run(run())


class AsyncShmring(Peer):
    name = "shmring-async"
    mode = "asyncio"                    # throughput: async for; ping-pong: arecv/asend

    def channel(self, producers, size):
        return AsyncChannel(size, 0)

    def duplex(self, size):
        return AsyncDuplex(rings.RingChannel(size, 0), rings.RingChannel(size, 0))


# --- the asyncio user's baseline: streams over a socketpair ------------------

async def read_frame(reader):
    (n,) = LENGTH.unpack(await reader.readexactly(LENGTH.size))
    return await reader.readexactly(n)


class StreamChannel(Channel):
    """One producer writes length-prefixed frames into a socketpair; the
    consumer reads them with asyncio streams."""

    def __init__(self):
        self.rx, self.tx = socket.socketpair()

    def consumer(self):
        self.tx.close()
        return self.rx

    def producer(self, index):
        self.rx.close()
        return self.tx

    def fill(self, sock, job):
        count, payload = job
        frame = LENGTH.pack(len(payload)) + payload
        for _ in range(count):
            sock.sendall(frame)

    def drain(self, sock, total):
        async def run():
            reader, writer = await asyncio.open_unix_connection(sock=sock)
            acc = 0
            for _ in range(total):
                acc += touch(await read_frame(reader))
            writer.close()
            return acc
        return asyncio.run(run())

    def close(self):
        self.rx.close()
        self.tx.close()


class PairDuplex:
    """A ping-pong whose two processes share a socketpair made before fork."""

    def __init__(self):
        self.a, self.b = socket.socketpair()

    def close(self):
        self.a.close()
        self.b.close()


class StreamDuplex(PairDuplex):
    """Ping-pong over one socketpair, asyncio streams on both ends."""

    def echo_setup(self):
        self.a.close()
        return self.b

    def ping_setup(self):
        self.b.close()
        return self.a

    def echo(self, sock, n):
        async def run():
            reader, writer = await asyncio.open_unix_connection(sock=sock)
            for _ in range(n):
                frame = await read_frame(reader)
                writer.write(LENGTH.pack(len(frame)) + frame)
                await writer.drain()
        asyncio.run(run())

    def ping(self, sock, job):
        n, payload = job
        frame = LENGTH.pack(len(payload)) + payload

        async def run():
            reader, writer = await asyncio.open_unix_connection(sock=sock)
            times = []
            for _ in range(n):
                t = clock()
                writer.write(frame)
                await writer.drain()
                await read_frame(reader)
                times.append(clock() - t)
            return times
        return asyncio.run(run())


class AsyncioStreams(Peer):
    name = "asyncio streams"
    max_producers = 1

    def channel(self, producers, size):
        return StreamChannel()

    def duplex(self, size):
        return StreamDuplex()


def target_rows(records):
    """The issue's targets for awaiting, as rows of report.targets(): measured
    ratios, and the doorbell rings per 1,000 frames of the async-for runs
    (the tally is read and reset)."""
    def rec(t, m, s=None, p=1):
        return report.find(records, t, m, s, p)
    ping = rec("shmring-async", "ping-pong asyncio")
    blocking = rec("shmring", "ping-pong send blocking")
    streams = rec("asyncio streams", "ping-pong copy")
    rows = [("async ping-pong p50 vs blocking", report.ratio(ping, blocking, "p50_us"),
             "<=", 1.5, blocking),
            ("async ping-pong p50 vs asyncio streams", report.ratio(ping, streams, "p50_us"),
             "<=", 1.0, streams)]
    for size in (64, 4096):
        for n in (1, 4):
            send = rec("shmring", "send", size, n)
            rows.append((f"{size} B async-for msgs/s, {n} producer(s), vs blocking consumer",
                         report.ratio(rec("shmring-async", "asyncio", size, n), send,
                                      "msgs_per_s"), ">=", 0.8, send))
    frames = sum(f for _, f in RINGS)
    per_1000 = 1000 * sum(r for r, _ in RINGS) / frames if frames else None
    RINGS.clear()
    rows.append(("doorbell rings per 1,000 frames, async-for runs", per_1000, "<=", 1, None))
    return rows

"""python -m shmring.bench.doorbells: how an event loop should wait for a ring
(docs/design.md, "Doorbells").  The unix datagram doorbell shmring uses
against an eventfd passed with SCM_RIGHTS (the wake alone, asyncio on both
sides), and awaiting frames through doorbells against a helper thread per ring
that blocks in recv() and hands frames to the loop; plus the cost of one ring
and the CPU of an idle waiter."""
import argparse
import asyncio
import contextlib
import os
import socket
import sys
import tempfile
import threading
import time
import uuid

import shmring
from shmring.bench import measure, rings
from shmring.bench.aio import AsyncShmring, PairDuplex, clock
from shmring.bench.channel import Duplex
from shmring.bench.harness import CTX, cpu_now, touch
from shmring.bench.peers import Peer


async def readable(fd):
    """Until fd is readable (asyncio's add_reader, as the doorbell waits)."""
    loop = asyncio.get_running_loop()
    fut = loop.create_future()
    loop.add_reader(fd, fut.set_result, None)
    try:
        await fut
    finally:
        loop.remove_reader(fd)


class DatagramWake:
    """The wake alone: a byte to the other side's bound datagram socket."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="shmring-bench-")
        self.paths = [os.path.join(self.dir, "ping"), os.path.join(self.dir, "echo")]

    def end(self, mine):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_NONBLOCK)
        s.bind(self.paths[mine])
        return s, self.paths[1 - mine]

    def echo_setup(self):
        return self.end(1)

    def ping_setup(self):
        return self.end(0)

    def echo(self, state, n):
        s, peer = state

        async def run():
            for _ in range(n):
                await readable(s.fileno())
                s.recv(16)
                s.sendto(b"!", peer)
        asyncio.run(run())

    def ping(self, state, job):
        s, peer = state

        async def run():
            times = []
            for _ in range(job[0]):
                t = clock()
                s.sendto(b"!", peer)
                await readable(s.fileno())
                s.recv(16)
                times.append(clock() - t)
            return times
        return asyncio.run(run())

    def close(self):
        for path in self.paths:
            if os.path.exists(path):
                os.unlink(path)
        os.rmdir(self.dir)


class EventfdWake(PairDuplex):
    """The wake alone: each side makes an eventfd and passes it to the other
    with SCM_RIGHTS (over the socketpair); a wake is an 8-byte write to the
    other side's."""

    def end(self, sock):
        mine = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        socket.send_fds(sock, [b"fd"], [mine])
        return sock, mine

    def echo_setup(self):
        self.a.close()
        return self.end(self.b)

    def ping_setup(self):
        self.b.close()
        sock, mine = self.end(self.a)
        _, (theirs,), _, _ = socket.recv_fds(sock, 16, 1)
        return mine, theirs

    def echo(self, state, n):
        sock, mine = state
        _, (theirs,), _, _ = socket.recv_fds(sock, 16, 1)
        one = (1).to_bytes(8, sys.byteorder)

        async def run():
            for _ in range(n):
                await readable(mine)
                os.eventfd_read(mine)
                os.write(theirs, one)
        asyncio.run(run())

    def ping(self, state, job):
        mine, theirs = state
        one = (1).to_bytes(8, sys.byteorder)

        async def run():
            times = []
            for _ in range(job[0]):
                t = clock()
                os.write(theirs, one)
                await readable(mine)
                os.eventfd_read(mine)
                times.append(clock() - t)
            return times
        return asyncio.run(run())


def threaded_frames(consumer, n):
    """The helper-thread design: a thread per ring blocks in recv_bytes() and
    hands each frame to the event loop (call_soon_threadsafe)."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[bytes] = asyncio.Queue()

    def pump():
        for _ in range(n):
            loop.call_soon_threadsafe(queue.put_nowait, consumer.recv_bytes())
    threading.Thread(target=pump, daemon=True).start()
    return queue


class ThreadDuplex(Duplex):
    """Ping-pong where each side's loop gets its frames from a helper thread."""

    def echo(self, state, n):
        rx, tx = state

        async def run():
            frames = threaded_frames(rx, n)
            for _ in range(n):
                tx.send(await frames.get())
        asyncio.run(run())

    def ping(self, state, job):
        tx, rx = state
        n, payload = job

        async def run():
            frames = threaded_frames(rx, n)
            times = []
            for _ in range(n):
                t = clock()
                tx.send(payload)
                await frames.get()
                times.append(clock() - t)
            return times
        return asyncio.run(run())


class ThreadChannel(rings.RingChannel):
    """Blocking producers; the consumer's loop gets frames from a helper thread."""

    def drain(self, c, total):
        async def run():
            frames = threaded_frames(c, total)
            acc = 0
            for _ in range(total):
                acc += touch(await frames.get())
            return acc
        return asyncio.run(run())


class Mechanism(Peer):
    name = "mechanism"

    def __init__(self, make, channel=None):
        self.make = make
        self.make_channel = channel

    def duplex(self, size):
        return self.make()

    def channel(self, producers, size):
        return self.make_channel(size, 0)


def ring_cost(n):
    """Seconds per ring and drain, in one process: a datagram (sendto, recv)
    against an eventfd (write, read)."""
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "bell")
        rx = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_NONBLOCK)
        rx.bind(path)
        tx = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        t = time.perf_counter()
        for _ in range(n):
            tx.sendto(b"!", path)
            rx.recv(16)
        dgram = (time.perf_counter() - t) / n
        rx.close()
        tx.close()
    efd = os.eventfd(0, os.EFD_NONBLOCK)
    t = time.perf_counter()
    for _ in range(n):
        os.eventfd_write(efd, 1)
        os.eventfd_read(efd)
    event = (time.perf_counter() - t) / n
    os.close(efd)
    return dgram, event


def idle(threaded, seconds, report_to):
    """CPU seconds of a consumer that waits `seconds` for nothing, and how
    many threads its process runs meanwhile."""
    ring = shmring.Ring.create(f"bench-idle-{uuid.uuid4().hex[:12]}", 1 << 16)
    try:
        with ring.consumer() as c:
            def wait_in_thread():
                with contextlib.suppress(shmring.Empty):
                    c.recv_bytes(timeout=seconds)

            async def run():
                if threaded:
                    thread = threading.Thread(target=wait_in_thread)
                    thread.start()
                    count = threading.active_count()
                    await asyncio.sleep(seconds)
                    thread.join()
                    return count
                waiter = asyncio.ensure_future(c.arecv(timeout=seconds))
                await asyncio.sleep(0)
                count = threading.active_count()
                with contextlib.suppress(shmring.Empty):
                    await waiter
                return count
            c0 = cpu_now()
            threads = asyncio.run(run())
            report_to.send((cpu_now() - c0, threads))
    finally:
        ring.unlink()
        ring.close()


def idle_in_child(threaded, seconds):
    rx, tx = CTX.Pipe(duplex=False)
    proc = CTX.Process(target=idle, args=(threaded, seconds, tx), daemon=True)
    proc.start()
    try:
        return rx.recv()
    finally:
        proc.join(seconds + 10)


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m shmring.bench.doorbells",
                                 description=__doc__.splitlines()[0])
    ap.add_argument("--pings", type=int, default=20000, help="round trips per ping-pong")
    args = ap.parse_args(argv)
    rows = []
    ways = [("unix datagram doorbell (the wake alone)", Mechanism(DatagramWake)),
            ("eventfd passed with SCM_RIGHTS (the wake alone)", Mechanism(EventfdWake)),
            ("shmring 64 B frames, awaited through doorbells", AsyncShmring()),
            ("shmring 64 B frames, awaited through a helper thread per ring",
             Mechanism(lambda: ThreadDuplex(rings.RingChannel(64, 0), rings.RingChannel(64, 0)))),
            ("shmring 64 B frames, blocking (no event loop)", rings.Shmring("send"))]
    for label, peer in ways:
        lat = measure.latency(peer, 64, args.pings)
        rows.append(f"| {label} | {lat['p50_us']:.1f} | {lat['p99_us']:.1f} |")
    flows = []
    for label, peer in (("async for, doorbells", AsyncShmring()),
                        ("helper thread per ring", Mechanism(None, ThreadChannel)),
                        ("blocking (no event loop)", rings.Shmring("send"))):
        for n in (1, 4):
            rate = measure.throughput(peer, 64, n, 3, 0.3)["msgs_per_s"]
            flows.append(f"| {label} | {n} | {rate:,.0f} |")
    dgram, event = ring_cost(200_000)
    d_cpu, d_threads = idle_in_child(False, 1.0)
    t_cpu, t_threads = idle_in_child(True, 1.0)
    print("Ping-pong round trip, asyncio on both sides unless said (us):\n")
    print("| mechanism | p50 | p99 |\n|---|---|---|")
    print("\n".join(rows))
    print("\n64 B frames to one consumer, its loop fed by:\n")
    print("| consumer | producers | msgs/s |\n|---|---|---|")
    print("\n".join(flows))
    print(f"\nOne ring and its drain, in one process: datagram {dgram * 1e6:.2f} us, "
          f"eventfd {event * 1e6:.2f} us")
    print(f"Idle consumer over 1 s: doorbell {d_cpu * 1e3:.2f} ms CPU, {d_threads} thread(s); "
          f"helper thread {t_cpu * 1e3:.2f} ms CPU, {t_threads} thread(s)")
    print(f"{os.cpu_count()} CPUs, Python {sys.version.split()[0]}, "
          f"{args.pings} round trips each")
    return 0


if __name__ == "__main__":             # not when a tool imports every submodule
    sys.exit(main())

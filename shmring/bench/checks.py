"""Idle CPU and memory: a blocked side must not burn CPU, and RSS must stay
flat while a million frames go through the zero-copy path."""
import contextlib
import time
import uuid

import shmring
from shmring.bench.harness import CTX, touch
from shmring.testing.processes import start_process


def rss_kb(pid="self"):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS in /proc")


def new_ring(capacity=1 << 20):
    return shmring.Ring.create(f"bench-check-{uuid.uuid4().hex[:12]}", capacity)


def idle_cpu(seconds=1.0):
    """CPU seconds used over `seconds` by a consumer blocked on an empty ring
    (blocking and spin mode) and by a producer blocked on a full one: the
    blocked thread's own (shmring starts no threads), since numpy's OpenBLAS
    pool spins for about 40 ms after import and would be counted by a check
    run first."""
    ring = new_ring()
    out = {}
    try:
        for name, spin in (("default", None), ("spin200000", 200_000)):
            with ring.consumer(spin=spin) as c:
                c0 = time.thread_time()
                with contextlib.suppress(shmring.Empty):
                    c.recv(timeout=seconds)
                out[f"consumer_{name}_cpu_s"] = time.thread_time() - c0
        with ring.producer() as p:
            frame = b"x" * 4000
            while p.send_many([frame] * 64, timeout=0) == 64:
                pass                    # fill the ring; nobody consumes
            c0 = time.thread_time()
            with contextlib.suppress(shmring.Full):
                p.send(frame, timeout=seconds)
            out["producer_full_cpu_s"] = time.thread_time() - c0
    finally:
        ring.close()
        ring.unlink()
    out["idle_seconds"] = seconds
    return out


def _produce(ring, frames, report):
    with ring.producer() as p:
        for i in range(frames):
            if i == frames // 10:
                report.send(rss_kb())
            with p.reserve(64) as r:    # zero copy: write in place
                mv = memoryview(r)
                mv[0] = mv[63] = i & 0xff
                mv.release()
        report.send(rss_kb())


def rss_flat(frames=1_000_000):
    """RSS of the consumer (recv, touch, release) and the producer (reserve,
    fill, commit) after the first 10% of frames and at the end, in kB."""
    ring = new_ring()
    rx, tx = CTX.Pipe(duplex=False)
    proc = None
    try:
        with ring.consumer() as c:
            proc = start_process(_produce, ring, frames, tx, daemon=True)
            for i in range(frames):
                if i == frames // 10:
                    c_start = rss_kb()
                f = c.recv(timeout=30)
                touch(f)
                f.release()
            c_end = rss_kb()
        p_start, p_end = rx.recv(), rx.recv()
        proc.join(10)
    finally:
        if proc is not None and proc.is_alive():
            proc.kill()
        ring.close()
        ring.unlink()
    return {"frames": frames, "consumer_rss_kb": [c_start, c_end],
            "producer_rss_kb": [p_start, p_end],
            "growth_kb": max(c_end - c_start, p_end - p_start)}

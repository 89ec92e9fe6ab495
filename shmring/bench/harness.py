"""Run one measurement in fresh processes: producers and a consumer forked
from this one, started together, each reporting its own CPU time.  They die
with this process, so an interrupted run leaves none waiting."""
import multiprocessing as mp
import queue
import resource
import time
from typing import Any

from shmring.testing.processes import start_process

CTX = mp.get_context("fork")
TIMEOUT = 30.0                          # seconds without a result before a run counts as hung


def cpu_now():
    """User + sys seconds of this process, all threads, to the microsecond."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def touch(buf):
    """What the consumer does with each frame, without copying it: read the
    first, middle and last byte, and from 64 KiB on also 16 bytes spread
    over the frame (a sampled checksum)."""
    if type(buf) is bytes and len(buf) < 65536:     # the same reads, faster
        return buf[0] + buf[len(buf) >> 1] + buf[-1]
    mv = memoryview(buf)                # dropped on return, before any release
    if mv.format != "B":
        mv = mv.cast("B")
    n = mv.nbytes
    acc = mv[0] + mv[n >> 1] + mv[n - 1]
    if n >= 65536:
        acc += sum(mv[::n >> 4])
    return acc


def _worker(role, setup, work, arg, ready, barrier, results, finished):
    """Set up (connect, open), say so, wait for everyone, then time work.
    A producer's CPU is counted until the consumer is done: library threads
    (mp.Queue's feeder, pyzmq's I/O thread) may still be sending its frames."""
    try:
        state = setup()
        ready.set()
        barrier.wait(60)
        t0, c0 = time.perf_counter(), cpu_now()
        out = work(state, arg)
        t1 = time.perf_counter()
        if role != "consumer":
            finished.wait(600)
        results.put((role, t0, t1, cpu_now() - c0, out))
    except BaseException as e:
        results.put((role, 0.0, 0.0, 0.0, f"{type(e).__name__}: {e}"))
        raise


def run_processes(consumer, producers):
    """consumer is (setup, work, arg); producers a list of the same.  The
    consumer is set up first (it may listen), then the producers.  Returns
    (seconds from the first start to the consumer's end, CPU seconds of all,
    {role: what its work returned})."""
    barrier = CTX.Barrier(len(producers) + 1)
    results = CTX.Queue()
    finished = CTX.Event()
    procs = []
    got: list[tuple[Any, ...]] = []     # (role, t0, t1, cpu, out) from each process
    try:
        for role, spec in [("consumer", consumer)] + [("producer", p) for p in producers]:
            ready = CTX.Event()
            proc = start_process(_worker, role, *spec, ready, barrier, results, finished,
                                 daemon=True)
            procs.append(proc)
            while not ready.wait(0.1):
                if not proc.is_alive():
                    break
        if not all(proc.is_alive() for proc in procs):
            barrier.abort()             # a setup failed: release the others
        while len(got) < len(procs):
            try:
                got.append(results.get(timeout=TIMEOUT))
            except queue.Empty:
                raise TimeoutError(f"no result within {TIMEOUT:.0f} s") from None
            if isinstance(got[-1][-1], str):
                raise RuntimeError(got[-1][-1])
            if got[-1][0] == "consumer":
                finished.set()
    finally:
        finished.set()
        for proc in procs:
            proc.join(5 if len(got) == len(procs) else 0)
            if proc.is_alive():
                proc.kill()
                proc.join()
        results.close()
    start = min(t0 for _, t0, _, _, _ in got)
    end = next(t1 for role, _, t1, _, _ in got if role == "consumer")
    outs = {role: out for role, _, _, _, out in got}   # one producer's is enough
    return end - start, sum(cpu for _, _, _, cpu, _ in got), outs

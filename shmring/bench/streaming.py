"""`python -m shmring.bench.streaming`: when does `nontemporal=True` pay?

One producer sends frames of one size through rings of several capacities,
with plain stores and with streaming stores, to a consumer that either
touches each frame (as the main benchmark does) or reads every byte of it.
Prints CPU seconds per GB, producer + consumer, the median of a few runs.
docs/usage.md sums up what it showed on two machines."""
import argparse
import statistics
import sys
import uuid

import numpy as np

import shmring
from shmring.bench import harness


def measure(size, capacity, nontemporal, read, frames):
    """(producer, consumer) CPU seconds per GB of one run."""
    ring = shmring.Ring.create(f"bench-nt-{uuid.uuid4().hex[:12]}", capacity)

    def produce(state, n):
        p, buf = state
        for _ in range(n):
            p.send(buf)

    def consume(c, n):
        c0 = harness.cpu_now()
        for _ in range(n):
            f = c.recv()
            if read:                    # every cache line of the frame
                words = np.frombuffer(f, np.uint64, len(f) // 8)
                words.sum()
                del words
            else:
                harness.touch(f)
            f.release()
        return harness.cpu_now() - c0

    try:
        _, cpu, outs = harness.run_processes(
            (ring.consumer, consume, frames),
            [(lambda: (ring.producer(nontemporal=nontemporal), np.full(size, 7, np.uint8)),
              produce, frames)])
    finally:
        ring.close()
        ring.unlink()
    gb = frames * size / 1e9
    return (cpu - outs["consumer"]) / gb, outs["consumer"] / gb


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m shmring.bench.streaming",
                                 description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=8_294_400, help="frame size in bytes")
    ap.add_argument("--capacities", default="16,32,64,128", help="ring capacities in MiB")
    ap.add_argument("--gigabytes", type=float, default=2.0, help="data per run")
    ap.add_argument("--reps", type=int, default=3, help="runs per point (median)")
    args = ap.parse_args(argv)
    frames = max(4, int(args.gigabytes * 1e9 // args.size))
    print("| ring | consumer | plain stores: producer + consumer | nontemporal | ratio |")
    print("|---|---|---|---|---|")
    for mib in (int(m) for m in args.capacities.split(",")):
        if (mib << 20) // 2 - 64 < args.size:
            print(f"| {mib} MiB | - | too small for {args.size} B frames | | |")
            continue
        for read in (False, True):
            totals = []
            for nontemporal in (False, True):
                runs = [measure(args.size, mib << 20, nontemporal, read, frames)
                        for _ in range(args.reps)]
                prod, cons = (statistics.median(side) for side in zip(*runs))
                totals.append((prod, cons))
            (p0, c0), (p1, c1) = totals
            print(f"| {mib} MiB | {'reads all' if read else 'touches'} | "
                  f"{p0:.3f} + {c0:.3f} = {p0 + c0:.3f} | {p1:.3f} + {c1:.3f} = {p1 + c1:.3f} | "
                  f"{(p1 + c1) / (p0 + c0):.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""`shmring demo`: several producer processes stream video-sized frames into
one ring; the consumer verifies every frame and reports throughput and CPU.

Each frame is a 64-byte stamp (producer, sequence, checksum base) and a body
of 64-bit words base[i] + seq, written straight into the ring (one pass, no
copy).  The consumer checks per-producer order and that the body sums to
sum(base) + n*seq, so a torn or stale frame fails."""
from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import time
from typing import TextIO

import numpy as np

import shmring

STAMP = 64
MAGIC = 0x4F4D4544474E4952                  # "RINGDEMO"
END = 1                                     # frame type of a producer's last frame
NEXT = ("Next: the README's example and docs/usage.md's recipes are programs to start from; "
        "`shmring bench --quick` compares shmring with pipes, sockets and queues here.")


def produce(ring: shmring.Ring, producer: int, frame_size: int, seconds: float, seed: int) -> None:
    body = (frame_size - STAMP) // 8
    base = np.random.default_rng(seed).integers(0, 2**63, body, dtype=np.uint64)
    checksum_base = int(base.sum(dtype=np.uint64))
    stop = time.monotonic() + seconds
    cpu0 = time.process_time()
    seq = 0
    with ring.producer() as p:
        while time.monotonic() < stop:
            with p.reserve(frame_size) as r:
                words = r.array().view(np.uint64)
                words[:4] = (MAGIC, producer, seq, checksum_base)
                np.add(base, np.uint64(seq), out=words[STAMP // 8:])
                del words
            seq += 1
        cpu_ns = int((time.process_time() - cpu0) * 1e9)
        p.send(np.array([MAGIC, producer, seq, cpu_ns], dtype=np.uint64), type=END)


class Verifier:
    def __init__(self) -> None:
        self.next_seq: dict[int, int] = {}

    def check(self, frame: shmring.Frame) -> float:
        """Verify a frame and return the CPU seconds it reports: a producer's
        END frame reports its sending loop's, every other frame 0."""
        words = frame.array().view(np.uint64)
        magic, producer, seq, checksum_base = (int(w) for w in words[:4])
        body_sum = int(words[STAMP // 8:].sum(dtype=np.uint64))
        body_words = len(words) - STAMP // 8
        del words                       # no view may outlive the frame's release
        if magic != MAGIC:
            raise AssertionError(f"frame without the demo stamp: {magic:#x}")
        expected = self.next_seq.get(producer, 0)
        if seq != expected:
            raise AssertionError(f"producer {producer}: frame {seq} arrived, expected {expected}")
        self.next_seq[producer] = seq + 1
        if frame.type == END:
            return checksum_base / 1e9
        if body_sum != (checksum_base + body_words * seq) % 2**64:
            raise AssertionError(f"producer {producer} frame {seq}: checksum mismatch (torn)")
        return 0.0


def capacity_for(frame_size: int) -> int:
    """A power of two holding at least four frames of this size."""
    need = 4 * (frame_size + 128)
    return max(1 << 16, 1 << (need - 1).bit_length())


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--producers", type=int, default=3, help="producer processes (3)")
    parser.add_argument("--seconds", type=float, default=5.0, help="how long producers run (5)")
    parser.add_argument("--size", type=int, default=1920 * 1080 * 4,
                        help="frame bytes, default one 1080p RGBA frame (8294400)")
    parser.add_argument("--capacity", type=int, default=None,
                        help="ring bytes, a power of two (default: room for 4 frames)")


def run(args: argparse.Namespace, out: TextIO = sys.stdout) -> tuple[int, int]:
    if args.size < STAMP or args.size % 8:
        raise SystemExit("--size must be a multiple of 8 and at least 64")
    if args.producers < 1 or args.seconds <= 0:
        raise SystemExit("--producers must be >= 1 and --seconds > 0")
    capacity = args.capacity or capacity_for(args.size)
    name = f"demo-{os.getpid()}"
    ctx = multiprocessing.get_context("spawn")
    ring = shmring.Ring.create(name, capacity)
    procs = []
    try:
        print(f"ring {name!r}: {capacity:,} bytes, {args.producers} producers, "
              f"{args.size:,}-byte frames, {args.seconds:g} s", file=out)
        consumer = ring.consumer()
        procs = [ctx.Process(target=produce, daemon=True,
                             args=(ring, i, args.size, args.seconds, 1000 + i))
                 for i in range(args.producers)]
        for proc in procs:
            proc.start()
        frames, nbytes = consume(consumer, args.producers, out)
        for proc in procs:
            proc.join(30)
            if proc.exitcode != 0:
                raise SystemExit(f"producer exited with {proc.exitcode}")
        print(NEXT, file=out)
    finally:
        for proc in procs:
            if proc.is_alive():
                proc.kill()
        ring.unlink()
    return frames, nbytes


def consume(consumer: shmring.Consumer, producers: int, out: TextIO) -> tuple[int, int]:
    """Receive and verify until every producer has ended.  The clock and the
    consumer's CPU start at the first frame, so process start-up is not
    counted; producers report the CPU of their sending loop."""
    verifier = Verifier()
    frames = nbytes = ended = 0
    producer_cpu = 0.0
    start = last = cpu0 = 0.0          # set at the first frame
    # On a terminal the progress line rewrites itself; in a log it is one line each.
    lead, tail = ("\r", "") if out.isatty() else ("", "\n")
    while ended < producers:
        with consumer.recv(timeout=60) as frame:
            if not frames and not ended:
                start = last = time.monotonic()
                cpu0 = time.process_time()
            producer_cpu += verifier.check(frame)
            if frame.type == END:
                ended += 1
                continue
            frames += 1
            nbytes += len(frame)
        now = time.monotonic()
        if now - last >= 0.5:
            last = now
            print(f"{lead}  {frames:7d} frames  {frames / (now - start):8.1f} frames/s  "
                  f"{nbytes / (now - start) / 1e9:6.2f} GB/s", end=tail, file=out, flush=True)
    elapsed = max(time.monotonic() - start, 1e-9)
    cpu = time.process_time() - cpu0 + producer_cpu
    print(f"{lead}{frames} frames verified (order and checksum) in {elapsed:.2f} s: "
          f"{frames / elapsed:.1f} frames/s, {nbytes / elapsed / 1e9:.2f} GB/s, "
          f"{cpu / max(nbytes / 1e9, 1e-9):.3f} CPU s/GB (producers and consumer)", file=out)
    return frames, nbytes

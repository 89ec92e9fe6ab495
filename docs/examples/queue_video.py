"""Worker processes decode video frames into arrays; one process trains on them.

    python docs/examples/queue_video.py [--workers 3] [--frames 90] [--size 1080x1920]

shmring.Queue stands where multiprocessing.Queue would: the workers put()
dicts holding a frame, the trainer get()s them.  Each frame is copied once,
from the worker's array into shared memory, and the trainer reads it there
(zero_copy=True): nothing else copies the pixels.
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
from collections.abc import Iterable
from typing import Any

import numpy as np
from numpy.typing import NDArray

import shmring


def decode(index: int, shape: tuple[int, ...]) -> tuple[NDArray[np.uint8], float]:
    """Stands in for a video decoder: an RGB frame, and the label to learn
    from it (how bright the frame is)."""
    rng = np.random.default_rng(index)
    gain = rng.random(3)
    frame = (rng.random(shape[:2] + (1,)) * gain * 255).astype(np.uint8)
    return frame, float(frame.mean() / 255)


def worker(frames: shmring.Queue, indices: Iterable[int], shape: tuple[int, ...]) -> None:
    for i in indices:
        frame, label = decode(i, shape)
        frames.put({"index": i, "frame": frame, "label": label})
    frames.put(None)                    # this worker is done


def features(frame: NDArray[Any]) -> NDArray[np.float64]:
    """Per-channel means of the frame, and a bias."""
    return np.append(frame.reshape(-1, 3).mean(axis=0) / 255, 1.0)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, default=3)
    ap.add_argument("--frames", type=int, default=90)
    ap.add_argument("--size", default="1080x1920", help="HEIGHTxWIDTH")
    args = ap.parse_args(argv)
    shape = tuple(int(n) for n in args.size.split("x")) + (3,)

    frames = shmring.Queue(maxsize=8)   # 32 MiB of shared memory; objects up to 16 MiB
    ctx = mp.get_context("spawn")
    workers = [ctx.Process(target=worker, args=(frames, range(w, args.frames, args.workers), shape))
               for w in range(args.workers)]
    for w in workers:
        w.start()

    # Train a linear model, label ~ features @ weights, by least squares:
    # each frame adds to the normal equations.
    xtx, xty, seen, done = np.zeros((4, 4)), np.zeros(4), [], 0
    while done < args.workers:
        item = frames.get(timeout=60, zero_copy=True)   # read-only views of shared memory
        if item is None:
            done += 1
            continue
        x = features(item["frame"])
        xtx += np.outer(x, x)
        xty += x * item["label"]
        seen.append((x, item["label"]))
        del item                        # gives the frame's space back to the ring
    for w in workers:
        w.join(60)
    weights = np.linalg.lstsq(xtx, xty, rcond=None)[0]
    error = np.mean([(x @ weights - label) ** 2 for x, label in seen])
    print(f"trained on {len(seen)} frames from {args.workers} workers")
    print(f"weights {np.round(weights, 4).tolist()}, mean squared error {error:.1e}")


if __name__ == "__main__":
    main()

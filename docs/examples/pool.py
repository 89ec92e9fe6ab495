"""A process pool feeding one consumer: each task's result comes back as a
frame, read in place instead of pickled through a pipe.

    with Pool(4) as pool:                                   # the same with pickling
        for task, result in pool.imap_unordered(work, range(20)):
            print(task, result.mean())
"""
import multiprocessing as mp

import numpy as np

import shmring

producer: shmring.Producer                  # one per worker process


def start_worker(ring: shmring.Ring) -> None:
    global producer
    producer = ring.producer()


def work(task: int) -> None:
    result = np.full(250_000, task, np.float32)             # any array
    producer.send_array(result, type=task)                  # the task id travels as the type


if __name__ == "__main__":
    ring = shmring.Ring.create("pool-results", 1 << 24, replace_stale=True)
    try:
        with mp.get_context("spawn").Pool(4, start_worker, (ring,)) as pool:
            done = pool.map_async(work, range(20), callback=lambda _: ring.seal(),
                                  error_callback=lambda _: ring.seal())
            with ring.consumer() as results:
                for frame in results:                       # ends once sealed and drained
                    print(frame.type, frame.array().mean())
            done.get()                                      # re-raises a task's exception
    finally:
        ring.unlink()

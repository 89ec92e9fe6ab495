"""A live view of several cameras: each shows its newest frame, and nothing
waits for anything.  The cameras never stall: a frame that finds the ring
full is dropped (on_full="drop").  The viewer, slower than the cameras,
never falls behind: each refresh takes every camera's newest frame and skips
the rest (recv_latest_each).  The last camera to finish seals the ring."""
import multiprocessing as mp
import time

import numpy as np

import shmring

CAMERAS, FRAMES, FPS = 3, 60, 30
SHAPE = (480, 640, 3)


def camera(ring: shmring.Ring, index: int) -> None:
    image = np.zeros(SHAPE, np.uint8)
    sent = 0
    with ring.producer(on_full="drop") as p:
        for seq in range(FRAMES):
            image[...] = seq                                # a camera's driver would fill it
            sent += p.send_array(image, type=seq)           # False: dropped, and counted
            time.sleep(1 / FPS)
    print(f"camera {index} sent {sent} of {FRAMES}", flush=True)
    s = ring.stats()
    if s["producers"] == 0 and s["producers_opened"] == CAMERAS:
        ring.seal()


if __name__ == "__main__":
    ring = shmring.Ring.create("live-view", 1 << 22, replace_stale=True)  # room for 4 frames
    try:
        for i in range(CAMERAS):
            mp.get_context("spawn").Process(target=camera, args=(ring, i)).start()
        shown = 0
        with ring.consumer() as viewer:
            while True:
                try:
                    newest = viewer.recv_latest_each()      # {producer slot: Frame}
                except shmring.Sealed:
                    break
                for slot, frame in newest.items():
                    print(f"slot {slot} frame {frame.type} mean {frame.array().mean():.0f}",
                          flush=True)
                shown += len(newest)
                del newest, frame                           # release them before the pause
                time.sleep(0.1)                             # a slow display: 10 refreshes a second
        s = ring.stats()
        print(f"shown {shown}, skipped {s['frames_skipped']}, dropped {s['frames_dropped']}, "
              f"committed {s['frames_committed']}", flush=True)
    finally:
        ring.unlink()

"""Several cameras into one consumer.  The frame's type says which camera
sent it; what the consumer knows about each camera (name, shape, dtype) is a
table indexed by it; and each frame carries its own stamp (sequence number,
capture time) in front of the pixels.  The last camera to finish seals the
ring, which ends the consumer's loop."""
import multiprocessing as mp
import time
from typing import Any, NamedTuple

import numpy as np
from numpy.typing import NDArray

import shmring


class Camera(NamedTuple):
    name: str
    shape: tuple[int, ...]
    dtype: np.dtype[Any]


CAMERAS = [Camera("left", (480, 640, 3), np.dtype(np.uint8)),    # per camera; type = index
           Camera("right", (480, 640, 3), np.dtype(np.uint8)),
           Camera("depth", (240, 320), np.dtype(np.uint16))]
STAMP = np.dtype([("seq", "<u8"), ("captured_ns", "<u8")])  # per frame
PIXELS = 64                                                 # pixels start on a cache line
FRAMES = 30


def camera(ring: shmring.Ring, index: int) -> None:
    cam = CAMERAS[index]
    with ring.producer() as p:
        for seq in range(FRAMES):
            with p.reserve(PIXELS + int(np.prod(cam.shape)) * cam.dtype.itemsize, type=index) as r:
                capture(r.array(), seq, index)              # written in place, zero copy
    s = ring.stats()
    if s["producers"] == 0 and s["producers_opened"] == len(CAMERAS):
        ring.seal()                                         # the last camera ends the stream


def capture(buf: NDArray[np.uint8], seq: int, index: int) -> None:
    """Stamp the frame and fill its image (a camera's driver would)."""
    cam = CAMERAS[index]
    buf[:STAMP.itemsize].view(STAMP)[0] = (seq, time.time_ns())
    buf[PIXELS:].view(cam.dtype).reshape(cam.shape)[...] = seq


def view(frame: shmring.Frame) -> tuple[str, Any, NDArray[Any]]:
    """(camera name, stamp, image) of a frame, all views of the ring."""
    cam = CAMERAS[frame.type]
    buf = frame.array()
    image = buf[PIXELS:].view(cam.dtype).reshape(cam.shape)
    return cam.name, buf[:STAMP.itemsize].view(STAMP)[0], image


if __name__ == "__main__":
    ring = shmring.Ring.create("cameras", 1 << 24, replace_stale=True)
    try:
        for i in range(len(CAMERAS)):
            mp.get_context("spawn").Process(target=camera, args=(ring, i)).start()
        with ring.consumer() as frames:
            for frame in frames:
                name, stamp, image = view(frame)
                age_ms = (time.time_ns() - int(stamp["captured_ns"])) / 1e6
                print(f"{name} {stamp['seq']} {image.shape} {image.dtype} {image.max()} "
                      f"{age_ms:.1f} ms")
    finally:
        ring.unlink()

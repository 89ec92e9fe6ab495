"""Video frames made on one host, shown on another: a ring on each host and
a bridge between them (docs/bridge.md).

    hostb$ python bridge_video.py receive --listen 0.0.0.0:5555
    hosta$ python bridge_video.py send hostb:5555

The camera and the viewer only ever see their own host's ring.  Each host
runs its end of the bridge through the Python API here; `shmring bridge
recv` and `shmring bridge send` do the same from a shell.  The receiver
runs until Ctrl-C; without --listen it binds 127.0.0.1 (this host only).
"""
from __future__ import annotations

import argparse
import multiprocessing
import os
import signal

import numpy as np

import shmring
import shmring.bridge

SHAPE = (1080, 1920, 4)                 # RGBA, 8,294,400 bytes
CAPACITY = 1 << 26                      # 64 MiB: 7 frames in flight per host
ctx = multiprocessing.get_context("spawn")


def camera(ring: shmring.Ring, frames: int) -> None:
    """Host A's producer: any number of these could share the ring."""
    with ring.producer() as p:
        for i in range(frames):
            with p.reserve_array(SHAPE, np.uint8, type=i) as r:    # written in place
                r.array()[...] = i % 256


def send(args: argparse.Namespace) -> None:
    ring = shmring.Ring.create(f"video-out-{os.getpid()}", CAPACITY)
    try:
        maker = ctx.Process(target=camera, args=(ring, args.frames))
        maker.start()
        sender = shmring.bridge.Sender(ring, args.endpoint)
        signal.signal(signal.SIGINT, lambda *_: sender.stop())     # Ctrl-C: stop in order
        try:
            sender.run(frames=args.frames)
        finally:
            confirmed = sender.close()          # ends the stream; True: host B has it all
        maker.join()
    finally:
        ring.unlink()
    if not confirmed:
        raise SystemExit("host B did not confirm the end of the stream")
    print(f"sent {args.frames} frames; host B has them all")


def viewer(ring: shmring.Ring, frames: int) -> None:
    """Host B's consumer: it only sees its own ring."""
    with ring.consumer() as c:
        for i in range(frames):
            with c.recv(timeout=60) as f:
                image = f.array()
                assert f.type == i and image.shape == SHAPE and image[0, 0, 0] == i % 256
                del image
    print(f"received {frames} frames of {SHAPE}, in order", flush=True)


def receive(args: argparse.Namespace) -> None:
    """Host B's receiver runs like a service, until SIGTERM or Ctrl-C."""
    ring = shmring.Ring.create(f"video-in-{os.getpid()}", CAPACITY)
    try:
        shower = ctx.Process(target=viewer, args=(ring, args.frames))
        shower.start()
        with shmring.bridge.Receiver(args.listen, ring) as receiver:
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, lambda *_: receiver.stop())
            print(f"listening on {receiver.endpoint}", flush=True)
            receiver.run()
        shower.join()
    finally:
        ring.unlink()


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").partition("\n")[0])
    sub = parser.add_subparsers(dest="side", required=True)
    r = sub.add_parser("receive", help="host B: listen, and show what arrives")
    r.add_argument("--listen", default="5555", help="PORT or HOST:PORT (default 5555 on 127.0.0.1)")
    s = sub.add_parser("send", help="host A: make frames and send them to host B")
    s.add_argument("endpoint", help="host B's HOST:PORT")
    for p in (r, s):
        p.add_argument("--frames", type=int, default=300)
    args = parser.parse_args()
    (receive if args.side == "receive" else send)(args)


if __name__ == "__main__":
    main()

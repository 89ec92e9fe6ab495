"""`shmring bridge send|recv|keygen`: the commands (shmring/cli.py holds
their arguments).  send and recv run until SIGTERM or SIGINT, then shut
down in order."""
from __future__ import annotations

import argparse
import logging
import signal
import sys
from typing import Any

import shmring
from shmring.bridge import auth
from shmring.bridge.receiver import Receiver
from shmring.bridge.sender import Sender


def open_ring(name, create):
    """Attach to ring `name`; if it does not exist, create it with capacity
    `create` bytes, or say how."""
    try:
        return shmring.Ring.attach(name)
    except FileNotFoundError:
        if create is None:
            raise FileNotFoundError(f"ring {name!r} does not exist: create it first, or pass "
                                    "--create CAPACITY") from None
    try:
        return shmring.Ring.create(name, create)
    except FileExistsError:             # another process created it meanwhile
        return shmring.Ring.attach(name)


def until_signal(make):
    """make() a Sender or Receiver that SIGTERM and SIGINT will stop(), even
    one that comes while it is being made."""
    made: list[Any] = []
    came: list[Any] = []

    def handler(*_):
        came.append(True)
        for bridge in made:
            bridge.stop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, handler)
    made.append(make())
    if came:
        made[0].stop()
    return made[0]


def send(args):
    sender = until_signal(lambda: Sender(
        open_ring(args.ring, args.create), args.endpoint, hwm=args.hwm,
        curve_secret=args.curve_secret, curve_server=args.curve_server,
        heartbeat=args.heartbeat, stats_every=args.stats))
    try:
        sender.run()
    finally:
        confirmed = sender.close(args.timeout)
    return 0 if confirmed else 1


def recv(args):
    receiver = until_signal(lambda: Receiver(
        args.endpoint, open_ring(args.ring, args.create), buffer=args.buffer,
        drop_when_full=args.drop_when_full, curve_secret=args.curve_secret,
        curve_allow=args.curve_allow, stats_every=args.stats))
    try:
        receiver.run()
    finally:
        receiver.close()
    return 0


def keygen(args):
    public, secret = auth.keygen(args.dir, args.name)
    print(f"public key {public}: give it to the other side\n"
          f"secret key {secret}: keep it on this host")
    return 0


def main(args: argparse.Namespace) -> int:
    if args.bridge_command != "keygen":
        logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                            format="%(asctime)s %(name)s %(levelname)s: %(message)s")
    try:
        status: int = {"send": send, "recv": recv, "keygen": keygen}[args.bridge_command](args)
        return status
    except (shmring.RingError, OSError, ValueError) as e:
        print(f"shmring bridge {args.bridge_command}: {e}", file=sys.stderr)
        return 1

"""The `shmring` command: demo, bench, info, ls, rm, bridge.  Every
subcommand is
wired here; an error is one line on stderr and exit status 1."""
from __future__ import annotations

import argparse
import datetime
import json
import sys

import shmring
from shmring import bench, demo, segments
from shmring._ring import segment_dir


def cmd_demo(args: argparse.Namespace) -> int:
    demo.run(args)
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    ring = shmring.Ring.attach(args.name)
    created = datetime.datetime.fromtimestamp(ring.created, datetime.timezone.utc)
    print(f"ring       {ring.name}\npath       {ring.path}\n"
          f"slots      {ring.producer_slots} (producers open at once, at most)\n"
          f"creator    pid {ring.creator_pid}, {created:%Y-%m-%d %H:%M:%S} UTC")
    for key, value in ring.stats().items():
        print(f"{key:<21}{value}")
    for p in segments.read_ring(ring.path)["producers"]:
        print(f"{'slot ' + str(p['slot']):<21}pid {p['pid']}{'' if p['alive'] else ' (dead)'}: "
              f"frames {p['frames']}, dropped {p['dropped']}")
    return 0


def _fmt_size(n: int | None) -> str:
    if n is None:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or n % 1024:
            return f"{n}{unit}"
        n //= 1024
    return f"{n}TiB"


def _pid(pid: int | None, alive: bool) -> str:
    return "-" if pid is None else f"{pid}{'' if alive else '(dead)'}"


def cmd_ls(args: argparse.Namespace) -> int:
    rings = segments.list_rings()
    if args.json:
        print(json.dumps(rings, indent=2))
        return 0
    if not rings:
        print(f"no rings in {segment_dir()}")
        return 0
    print(f"{'NAME':24} {'CAPACITY':>9} {'FILL':>9} {'CREATOR':>13} {'CONSUMER':>13} "
          f"{'PRODUCERS':>9} {'DOORBELLS':>9} {'ABANDONED':>9} STATE")
    for r in rings:
        bells = f"{sum(b['alive'] for b in r['doorbells'])}/{len(r['doorbells'])}"
        if r["error"]:
            print(f"{r['name']:24} {'-':>9} {'-':>9} {'-':>13} {'-':>13} {'-':>9} {bells:>9} "
                  f"{'-':>9} bad: {r['error']}")
            continue
        users = f"{sum(p['alive'] for p in r['producers'])}/{len(r['producers'])}"
        print(f"{r['name']:24} {_fmt_size(r['capacity']):>9} {_fmt_size(r['fill']):>9} "
              f"{_pid(r['creator_pid'], r['creator_alive']):>13} "
              f"{_pid(r['consumer_pid'], r['consumer_alive']):>13} "
              f"{users:>9} {bells:>9} {r['abandoned_frames']:>9} "
              f"{'stale' if r['stale'] else 'live'}{', sealed' if r['sealed'] else ''}")
    return 0


def cmd_rm(args: argparse.Namespace) -> int:
    try:
        segments.remove_ring(args.name, force=args.force)
    except shmring.RingError as e:
        raise shmring.RingError(f"{e}; --force removes it anyway") from None
    return 0


def cmd_bridge(args: argparse.Namespace) -> int:
    try:
        from shmring.bridge import commands
    except ImportError as e:
        print(f"shmring bridge: {e}", file=sys.stderr)
        return 1
    return commands.main(args)


def add_bridge_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="bridge_command", required=True)
    send = sub.add_parser("send", help="forward a local ring's frames to a receiver")
    send.add_argument("ring", help="the local ring; the sender becomes its consumer")
    send.add_argument("endpoint", help="the receiver: PORT, HOST:PORT or tcp://HOST:PORT")
    recv = sub.add_parser("recv", help="write what senders send into a local ring")
    recv.add_argument("endpoint", help="where to listen: PORT, HOST:PORT or tcp://HOST:PORT "
                      "(the host defaults to 127.0.0.1; 0.0.0.0 or * for every interface)")
    recv.add_argument("ring", help="the local ring; the receiver becomes one of its producers")
    for command in (send, recv):
        command.add_argument("--create", metavar="CAPACITY", type=int,
                             help="create the ring with this capacity if it does not exist")
        command.add_argument("--stats", metavar="SECONDS", type=float,
                             help="log a stats line every SECONDS")
        command.add_argument("--curve-secret", metavar="FILE",
                             help="this side's NAME.key_secret (CURVE; see keygen)")
    send.add_argument("--hwm", type=int, default=1000,
                      help="frames ZeroMQ queues for the receiver (default 1000); large ones "
                      "stay in the ring until sent")
    recv.add_argument("--buffer", metavar="BYTES", type=int,
                      help="bytes ZeroMQ queues here, about (default: the ring's capacity)")
    send.add_argument("--curve-server", metavar="FILE", help="the receiver's public NAME.key")
    send.add_argument("--heartbeat", metavar="SECONDS", type=float, default=10.0,
                      help="reconnect after this long without a sign of the receiver")
    send.add_argument("--timeout", metavar="SECONDS", type=float, default=10.0,
                      help="on exit, how long to wait for the receiver to confirm the end")
    recv.add_argument("--curve-allow", metavar="DIR",
                      help="directory of the allowed senders' public NAME.key files")
    recv.add_argument("--drop-when-full", action="store_true",
                      help="drop and count frames when the ring is full, instead of "
                      "stopping the senders (live video)")
    keygen = sub.add_parser("keygen", help="make a CURVE key pair: NAME.key and NAME.key_secret")
    keygen.add_argument("dir")
    keygen.add_argument("name")


def parser() -> argparse.ArgumentParser:
    # The first line of the docstring; none under python -OO.
    about = (shmring.__doc__ or "").partition("\n")[0]
    ap = argparse.ArgumentParser(prog="shmring", description=about)
    sub = ap.add_subparsers(dest="command", required=True)
    p = sub.add_parser("demo", help="stream frames from several processes")
    demo.add_arguments(p)
    p.set_defaults(func=cmd_demo)
    p = sub.add_parser("bench", help="compare shmring with sockets, pipes, queues, ...")
    bench.add_arguments(p)
    p.set_defaults(func=bench.run)
    p = sub.add_parser("info", help="print a ring's header and counters")
    p.add_argument("name")
    p.set_defaults(func=cmd_info)
    p = sub.add_parser("ls", help="list rings, their users, doorbells and stale segments")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_ls)
    p = sub.add_parser("rm", help="remove a ring and its doorbells (refused while in use)")
    p.add_argument("name")
    p.add_argument("--force", action="store_true",
                   help="remove even while live processes use it")
    p.set_defaults(func=cmd_rm)
    p = sub.add_parser("bridge", help="forward frames between rings on different hosts (ZeroMQ)")
    add_bridge_arguments(p)
    p.set_defaults(func=cmd_bridge)
    return ap


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        status: int = args.func(args)
        return status
    except (shmring.RingError, OSError, ValueError) as e:
        print(f"shmring {args.command}: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

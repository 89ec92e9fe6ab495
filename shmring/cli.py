"""The `shmring` command: demo, bench, info, ls, rm."""
from __future__ import annotations

import argparse
import datetime
import sys

import shmring
from shmring import bench, demo, segments


def run_demo(args: argparse.Namespace) -> int:
    demo.run(args)
    return 0


def info(args: argparse.Namespace) -> int:
    ring = shmring.Ring.attach(args.name)
    stats = ring.stats()
    created = datetime.datetime.fromtimestamp(ring.created, datetime.timezone.utc)
    print(f"ring       {ring.name}\npath       {ring.path}\n"
          f"capacity   {ring.capacity}\nmax_frame  {ring.max_frame}\n"
          f"producers  up to {ring.producer_slots}\n"
          f"creator    pid {ring.creator_pid}, {created:%Y-%m-%d %H:%M:%S} UTC")
    for key, value in stats.items():
        print(f"{key:<17}{value}")
    return 0


def main(argv: list[str] | None = None) -> int:
    # The first line of the docstring; none under python -OO.
    about = (shmring.__doc__ or "").partition("\n")[0]
    parser = argparse.ArgumentParser(prog="shmring", description=about)
    sub = parser.add_subparsers(dest="command", required=True)
    command = sub.add_parser("demo", help="stream frames from several processes")
    demo.add_arguments(command)
    command.set_defaults(func=run_demo)
    command = sub.add_parser("bench", help="compare shmring with sockets, pipes, queues, ...")
    bench.add_arguments(command)
    command.set_defaults(func=bench.run)
    command = sub.add_parser("info", help="print a live ring's header and stats")
    command.add_argument("name")
    command.set_defaults(func=info)
    segments.add_subcommands(sub)
    args = parser.parse_args(argv)
    status: int = args.func(args)
    return status


if __name__ == "__main__":
    sys.exit(main())

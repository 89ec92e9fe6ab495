"""The `shmring` command: demo, info."""
import argparse
import datetime
import sys

import shmring
from shmring import demo


def info(args):
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


def main(argv=None):
    parser = argparse.ArgumentParser(prog="shmring", description=shmring.__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    demo.add_arguments(sub.add_parser("demo", help="stream frames from several processes"))
    sub.add_parser("info", help="print a live ring's header and stats").add_argument("name")
    args = parser.parse_args(argv)
    if args.command == "demo":
        demo.run(args)
        return 0
    return info(args)


if __name__ == "__main__":
    sys.exit(main())

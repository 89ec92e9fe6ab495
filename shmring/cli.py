"""The `shmring` command: demo, bench, info, ls, rm, bridge."""
import argparse
import datetime
import sys

import shmring
from shmring import bench, demo, segments


def run_demo(args):
    demo.run(args)
    return 0


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


def bridge(args):
    try:
        from shmring.bridge import commands
    except ImportError as e:
        print(f"shmring bridge: {e}", file=sys.stderr)
        return 1
    return commands.main(args)


def add_bridge_arguments(parser):
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


def main(argv=None):
    parser = argparse.ArgumentParser(prog="shmring", description=shmring.__doc__.splitlines()[0])
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
    command = sub.add_parser("bridge", help="forward frames between rings on different hosts "
                             "(ZeroMQ)")
    add_bridge_arguments(command)
    command.set_defaults(func=bridge)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())

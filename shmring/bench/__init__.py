"""`python -m shmring bench`: shmring against the transports a user would
otherwise pick, side by side in one run.  See docs/benchmarks.md."""
import argparse
import json
import os
import sys
import time
from typing import Any

from shmring._ring import NONTEMPORAL_MIN
from shmring.bench import aio, bridge, checks, harness, measure, peers, report, rings, streams

SIZES = (64, 4096, 1 << 20, 8_294_400)
SPIN = rings.SPIN


def lineup():
    """Every transport, baselines first.  Spin-mode shmring is measured for
    latency only."""
    return [
        peers.WebSockets(),
        streams.Pipe(), streams.Pipe(buffered=False),
        streams.SocketPair(), streams.SocketPair(buffered=False),
        peers.MpQueue(), peers.MpPipe(), peers.FasterFifo(), peers.Zmq(), peers.Iceoryx2(),
        aio.AsyncioStreams(),
        rings.Shmring("send"), rings.Shmring("recv_bytes"), rings.Shmring("send-nt"),
        rings.Shmring("reserve"), rings.Shmring("batch"),
        rings.ShmringNogil(), aio.AsyncShmring(), bridge.ZmqTcp(), bridge.Bridge(),
    ]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true",
                        help="64 B and 8,294,400 B only, fewer repetitions: about a minute")
    parser.add_argument("--json", metavar="FILE", help="write the records as JSON")
    parser.add_argument("--plot", metavar="FILE.png", help="plot throughput and CPU/GB (matplotlib)")
    parser.add_argument("--only", metavar="NAMES",
                        help="comma-separated transports to run (substrings, e.g. 'pipe,shmring')")
    parser.add_argument("--sizes", metavar="BYTES", help="comma-separated frame sizes")
    parser.add_argument("--producers", metavar="N", default="1,4", help="comma-separated counts")
    parser.add_argument("--reps", type=int, help="repetitions per point (median, min, max)")
    parser.add_argument("--seconds", type=float, help="target seconds per repetition")
    parser.add_argument("--capacities", action="store_true",
                        help="also run shmring with 1 MiB frames and larger through rings from "
                             "the smallest that holds 3 frames up to 128 MiB")
    parser.add_argument("--check", action="store_true", help="only the idle CPU and RSS checks")
    parser.add_argument("--no-checks", action="store_true", help="skip the idle CPU and RSS checks")
    parser.add_argument("--targets", action="store_true",
                        help="for shmring's developers: also print the project's speed targets "
                             "with verdicts (docs/benchmarks.md)")
    parser.add_argument("--queue", action="store_true",
                        help="benchmark shmring.Queue against mp.Queue and faster-fifo instead")


def latency_lineup(available):
    """(peer, mode) pairs for 64-byte ping-pong: each baseline, and shmring's
    send and nogil APIs in blocking mode (the default, adaptive poll) and in
    spin mode, and send with spin=0 (a futex sleep every wait)."""
    out = []
    for peer in available:
        if peer.name != "shmring":
            out.append((peer, f"ping-pong {peer.mode}"))
        elif peer.mode in ("send", "nogil"):
            spinning = rings.Shmring("send", SPIN) if peer.mode == "send" \
                else rings.ShmringNogil(SPIN)
            spinning.missing()          # loads the already built module
            out += [(peer, f"ping-pong {peer.mode} blocking"),
                    (spinning, f"ping-pong {peer.mode} spin")]
            if peer.mode == "send":
                out.append((rings.Shmring("send", 0), "ping-pong send spin=0"))
    return out


def check_records(extra):
    """The idle CPU and RSS checks as records of the same shape, for --json."""
    blank = {"producers": 1, "msgs_per_s": None, "gb_per_s": None, "cpu_s_per_gb": None,
             "p50_us": None, "p99_us": None}
    out = []
    if "idle" in extra:
        out.append({**blank, "transport": "shmring", "mode": "check idle cpu", "size": None,
                    **extra["idle"]})
    if "rss" in extra:
        out.append({**blank, "transport": "shmring", "mode": "check rss", "size": 64,
                    **extra["rss"]})
    return out


def progress(text):
    if sys.stderr.isatty():
        sys.stderr.write(f"\r\033[K{text}")
    else:
        sys.stderr.write(text + "\n")
    sys.stderr.flush()


def plan(args, available):
    """(peer, size, producers) points to measure, one transport at a time."""
    sizes = [int(s) for s in args.sizes.split(",")] if args.sizes else \
        ([64, 8_294_400] if args.quick else list(SIZES))
    counts = [int(n) for n in args.producers.split(",")]
    points = [(None, size, 1) for size in sizes]        # np.copyto, the physical limit
    for peer in available:
        for size in sizes:
            if peer.mode in rings.Shmring.small_only and size > 4096:
                continue                # APIs for small frames
            if peer.sizes is not None and size not in peer.sizes:
                continue
            if peer.mode == "send-nt" and (NONTEMPORAL_MIN is None or size < NONTEMPORAL_MIN):
                continue                # smaller copies are plain memcpy
            for n in counts:
                if peer.max_producers and n > peer.max_producers:
                    continue
                if n == 1 or size <= 4096 or not args.quick:
                    points.append((peer, size, n))
    if args.capacities:
        points += capacity_sweep(points)
    return points


def capacity_sweep(points):
    """The shmring points with frames of 1 MiB and up, again through each
    ring of rings.sweep(size)."""
    out: list[Any] = []
    variants: dict[Any, Any] = {}
    for peer, size, n in points:
        if isinstance(peer, rings.Shmring) and size >= 1 << 20:
            for capacity in rings.sweep(size):
                key = (peer, capacity)      # one peer per ring size: a failure skips only it
                variants.setdefault(key, peer.with_capacity(capacity))
                out.append((variants[key], size, n))
    return out


def run(args: argparse.Namespace) -> int:
    if args.queue:
        from shmring.bench import queue
        status: int = queue.run(args)
        return status
    reps = args.reps or (3 if args.quick else 5)
    seconds = args.seconds or (0.05 if args.quick else 0.3)
    pings = 2000 if args.quick else 20000
    harness.TIMEOUT = 10.0 if args.quick else 30.0
    started = time.time()
    records, extra, notes = [], {}, []
    if not args.check:
        available, skipped = peers.select(lineup(), args.only)
        notes += skipped
        points = plan(args, available)
        lat = latency_lineup(available)
        total = len(points) + len(lat)
        broken = set()                  # a transport that failed once is not retried
        for i, (peer, size, n) in enumerate(points, 1):
            if peer in broken:
                continue
            name = "np.copyto" if peer is None else f"{peer.name} {peer.label}"
            progress(f"[{i}/{total}] {name}, {size} B, {n} producer(s)")
            rec = {"transport": "np.copyto" if peer is None else peer.name,
                   "mode": "limit" if peer is None else peer.label,
                   "size": size, "producers": n, "p50_us": None, "p99_us": None}
            if isinstance(peer, rings.Shmring):
                rec["capacity"] = peer.capacity or rings.capacity_for(size)
            try:
                rec.update(measure.throughput(peer, size, n, reps, seconds))
            except Exception as e:      # noqa: BLE001 - one transport's failure is a note
                broken.add(peer)
                notes.append(f"{name}, {size} B, {n} producer(s) failed: {type(e).__name__}: "
                             f"{e}; its other points are skipped")
                continue
            records.append(rec)
        for i, (peer, mode) in enumerate(lat, len(points) + 1):
            progress(f"[{i}/{total}] {peer.name} {mode}")
            rec = {"transport": peer.name, "mode": mode, "size": 64, "producers": 1,
                   "msgs_per_s": None, "gb_per_s": None, "cpu_s_per_gb": None}
            try:
                rec.update(measure.latency(peer, 64, pings))
            except Exception as e:      # noqa: BLE001 - one transport's failure is a note
                notes.append(f"{peer.name} {mode} failed: {type(e).__name__}: {e}")
                continue
            records.append(rec)
        progress("")
    if args.check or not args.no_checks:
        progress("idle CPU and RSS checks")
        extra["idle"] = checks.idle_cpu(1.0)
        extra["rss"] = checks.rss_flat(1_000_000)
        progress("")
    elapsed = time.time() - started
    records.sort(key=lambda r: (r["msgs_per_s"] is None, r["size"]))   # stable: lineup order
    print(report.table(records))
    print(report.comparisons(records))
    if extra:
        print(report.checks(extra))
    for note in notes + report.notes(records, os.cpu_count()):
        print(f"note: {note}")
    if args.targets:
        print(report.targets(records, extra, aio.target_rows(records)))
    print(f"{os.cpu_count()} CPUs, Python {sys.version.split()[0]}, {elapsed:.0f} s")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(records + check_records(extra), f, indent=1)
    if args.plot:
        print(report.plot(records, args.plot))
    return 0

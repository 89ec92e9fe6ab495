"""`shmring bench --queue` (or `python -m shmring.bench.queue`): shmring.Queue
against multiprocessing.Queue, faster-fifo and the raw frame API, in one run.

Two payloads: a video frame (a dict with one 1920x1080x4 uint8 array and a
float) and a small object (a tuple of three ints and a short string).  Each
transport moves them from 1 and 4 producer processes to one consumer, which
touches what it gets (harness.touch on the array).  Prints objects/s, CPU
seconds per GB of array data (all processes), the issue's targets as
ratios, and the RSS of both sides over 1,000,000 small objects."""
import argparse
import json
import statistics
import sys
import uuid
from typing import Any

import numpy as np

import shmring
from shmring.bench import checks, peers, rings
from shmring.bench.channel import Channel
from shmring.bench.harness import CTX, run_processes, touch
from shmring.bench.measure import GB, split
from shmring.bench.report import fmt

VIDEO = 1920 * 1080 * 4
CAPACITY = 1 << 25                      # the Queue's default; faster-fifo gets as much


def video():
    return {"frame": np.full((1080, 1920, 4), 7, np.uint8), "t": 0.5}


def small():
    return (1, 2, 3, "hello")


def use(obj):
    """What the consumer does with an object: read it, without copying."""
    if type(obj) is dict:
        return touch(obj["frame"].reshape(-1)) + int(obj["t"])
    return obj[0] + len(obj[3])


class ObjectChannel(Channel):
    """Objects, not buffers: one queue-like object on both sides."""

    def __init__(self, q, get=None):
        self.q = q
        self.get = get

    def consumer(self):
        return self.q

    def producer(self, index):
        return self.q

    def send(self, q, obj):
        q.put(obj)

    def drain(self, q, total):
        get = self.get or q.get
        acc = 0
        for _ in range(total):
            acc += use(get())
        return acc

    def close(self):
        self.q = None                   # a shmring.Queue's creator unlinks it when it goes


class ZeroCopyChannel(ObjectChannel):
    def drain(self, q, total):
        acc = 0
        for _ in range(total):
            acc += use(q.get(zero_copy=True))    # the frame goes with the object
        return acc


class FramesChannel(rings.RingChannel):
    """The raw frame API: the video array alone, send_array() and recv()."""

    def __init__(self):
        self.ring = shmring.Ring.create(f"bench-{uuid.uuid4().hex[:12]}", CAPACITY)
        self.spin = 0

    def send(self, p, obj):
        p.send_array(obj["frame"])

    def drain(self, c, total):
        acc = 0
        for _ in range(total):
            with c.recv() as f:
                acc += touch(f)
        return acc


class Transport(peers.Peer):
    def __init__(self, name, mode, make, payloads=("video", "small")):
        self.name, self.mode, self.make, self.payloads = name, mode, make, payloads

    def channel(self, producers, size):
        return self.make()


def lineup():
    def faster_fifo():
        from faster_fifo import Queue
        return ObjectChannel(Queue(max_size_bytes=CAPACITY))

    ff = Transport("faster-fifo", "get", faster_fifo)
    ff.needs = ("faster_fifo",)
    return [
        Transport("mp.Queue", "get", lambda: ObjectChannel(CTX.Queue())),
        ff,
        Transport("shmring.Queue", "get", lambda: ObjectChannel(shmring.Queue(capacity=CAPACITY))),
        Transport("shmring.Queue", "get zero_copy",
                  lambda: ZeroCopyChannel(shmring.Queue(capacity=CAPACITY)), ("video",)),
        Transport("shmring frames", "send_array/recv", FramesChannel, ("video",)),
    ]


def once(transport, payload, producers, total):
    ch = transport.channel(producers, None)
    try:
        makers = [(lambda i=i: ch.producer(i), ch.fill, (n, PAYLOADS[payload]()))
                  for i, n in enumerate(split(total, producers))]
        seconds, cpu, _ = run_processes((ch.consumer, ch.drain, total), makers)
    finally:
        ch.close()
    return seconds, cpu


PAYLOADS = {"video": video, "small": small}


def throughput(transports, payload, producers, reps, seconds):
    """Records for each transport.  Repetitions go round the transports, so
    that a change of load on a shared machine falls on all of them."""
    totals = []
    for t in transports:
        warm = max(producers * 4, 16 if payload == "video" else 20000)
        took, _ = once(t, payload, producers, warm)
        totals.append(int(min(2_000_000, max(producers * 8, warm * seconds / max(took, 1e-6)))))
    runs: list[list[Any]] = [[] for _ in transports]
    for _ in range(reps):
        for t, total, out in zip(transports, totals, runs):
            out.append(once(t, payload, producers, total))
    per = VIDEO / GB if payload == "video" else 1e-6      # CPU per GB, or per million objects
    records = []
    for t, total, out in zip(transports, totals, runs):
        rates = sorted(total / took for took, _ in out)
        cpus = sorted(c / (total * per) for _, c in out)
        records.append({
            "transport": t.name, "mode": t.mode, "payload": payload, "producers": producers,
            "objects_per_s": statistics.median(rates), "objects_per_s_min": rates[0],
            "objects_per_s_max": rates[-1], "cpu": statistics.median(cpus), "cpu_min": cpus[0],
            "cpu_max": cpus[-1], "cpu_unit": "s/GB" if payload == "video" else "s per million objects",
            "objects": total, "reps": reps})
    return records


def _produce_small(q, n, report):
    obj = small()
    for i in range(n):
        if i == n // 10:
            report.send(checks.rss_kb())
        q.put(obj)
    report.send(checks.rss_kb())


def rss_flat(n=1_000_000):
    """RSS of a consumer (get) and a producer (put) of n small objects after
    the first 10% and at the end, in kB."""
    q = shmring.Queue(capacity=1 << 20)
    rx, tx = CTX.Pipe(duplex=False)
    proc = CTX.Process(target=_produce_small, args=(q, n, tx), daemon=True)
    proc.start()
    try:
        for i in range(n):
            if i == n // 10:
                c_start = checks.rss_kb()
            use(q.get(timeout=30))
        c_end = checks.rss_kb()
        p_start, p_end = rx.recv(), rx.recv()
        proc.join(10)
    finally:
        if proc.is_alive():
            proc.kill()
    return {"objects": n, "consumer_rss_kb": [c_start, c_end], "producer_rss_kb": [p_start, p_end],
            "growth_kb": max(c_end - c_start, p_end - p_start)}


def find(records, transport, mode, payload, producers):
    for r in records:
        if (r["transport"], r["mode"], r["payload"], r["producers"]) == \
                (transport, mode, payload, producers):
            return r
    return None


def ratio(a, b, key):
    return None if a is None or b is None else a[key] / b[key]


def targets(records, rss):
    rows = []
    for n in sorted({r["producers"] for r in records}):
        def rec(transport, mode, payload, n=n):
            return find(records, transport, mode, payload, n)
        q = rec("shmring.Queue", "get", "video")
        rows += [
            (f"video, {n} prod.: get objects/s vs mp.Queue",
             ratio(q, rec("mp.Queue", "get", "video"), "objects_per_s"), ">=", 10),
            (f"video, {n} prod.: get objects/s vs faster-fifo",
             ratio(q, rec("faster-fifo", "get", "video"), "objects_per_s"), ">=", 3),
            (f"video, {n} prod.: zero_copy objects/s vs send_array/recv",
             ratio(rec("shmring.Queue", "get zero_copy", "video"),
                   rec("shmring frames", "send_array/recv", "video"), "objects_per_s"), ">=", 0.7),
            (f"video, {n} prod.: get CPU/GB vs faster-fifo",
             ratio(q, rec("faster-fifo", "get", "video"), "cpu"), "<=", 1 / 3),
            (f"video, {n} prod.: zero_copy CPU/GB vs faster-fifo",
             ratio(rec("shmring.Queue", "get zero_copy", "video"),
                   rec("faster-fifo", "get", "video"), "cpu"), "<=", 1 / 3),
        ]
        q = rec("shmring.Queue", "get", "small")
        rows += [
            (f"small, {n} prod.: objects/s vs faster-fifo",
             ratio(q, rec("faster-fifo", "get", "small"), "objects_per_s"), ">=", 2),
            (f"small, {n} prod.: objects/s vs mp.Queue",
             ratio(q, rec("mp.Queue", "get", "small"), "objects_per_s"), ">=", 3),
        ]
    if rss:
        rows.append((f"RSS growth kB over {rss['objects']:,} small objects", rss["growth_kb"],
                     "<=", 1024))
    out = ["| target | measured | bound | verdict |", "|---|---|---|---|"]
    for name, value, op, bound in rows:
        verdict = "not measured" if value is None else \
            "PASS" if (value <= bound if op == "<=" else value >= bound) else "FAIL"
        out.append(f"| {name} | {fmt(value, '.3g')} | {op} {bound:.3g} | {verdict} |")
    return "\n".join(out)


def table(records):
    rows = ["| payload | transport | mode | prod. | objects/s (min-max) | CPU (min-max) |",
            "|---|---|---|---|---|---|"]
    for r in records:
        rows.append(f"| {r['payload']} | {r['transport']} | {r['mode']} | {r['producers']} | "
                    f"{r['objects_per_s']:,.0f} ({r['objects_per_s_min']:,.0f}-"
                    f"{r['objects_per_s_max']:,.0f}) | {r['cpu']:.3g} ({r['cpu_min']:.3g}-"
                    f"{r['cpu_max']:.3g}) {r['cpu_unit']} |")
    return "\n".join(rows)


def run(args):
    """Run the queue benchmark with `shmring bench`'s arguments (--reps,
    --seconds, --producers, --only, --quick, --no-checks, --json)."""
    reps = args.reps or (2 if args.quick else 5)
    seconds = args.seconds or (0.2 if args.quick else 1.0)
    counts = [int(n) for n in args.producers.split(",")]
    available, notes = peers.select(lineup(), args.only)
    records = []
    for payload in PAYLOADS:
        for n in counts:
            print(f"{payload}, {n} producer(s)", file=sys.stderr, flush=True)
            try:
                records += throughput([t for t in available if payload in t.payloads],
                                      payload, n, reps, seconds)
            except Exception as e:      # noqa: BLE001 - one point's failure is a note
                notes.append(f"{payload}, {n} producer(s) failed: {type(e).__name__}: {e}")
    rss = None
    if not args.no_checks:
        print("RSS over 1,000,000 small objects", file=sys.stderr, flush=True)
        rss = rss_flat(100_000 if args.quick else 1_000_000)
    print(table(records))
    print()
    print(targets(records, rss))
    if rss:
        print(f"RSS kB, consumer {rss['consumer_rss_kb']}, producer {rss['producer_rss_kb']}")
    for note in notes:
        print(f"note: {note}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"records": records, "rss": rss, "notes": notes}, f, indent=1)
    return 0


def main(argv=None):
    from shmring.bench import add_arguments
    parser = argparse.ArgumentParser(prog="python -m shmring.bench.queue",
                                     description=__doc__.splitlines()[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())

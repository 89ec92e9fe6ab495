"""Free-running soak: many producer processes on a small ring, no pause
points, random sizes, for a set time; optionally SIGKILLing a random producer
now and then (each is replaced by a fresh one).  Producers send one frame at
a time or in send_many batches; the consumer follows a random plan of
receives (recv, recv_many, recv_bytes_many) and out-of-order releases
(stress/workers.py).  It ends by telling the producers to stop or, in half
the runs, by sealing the ring under them.  The seed also picks a blocking or
an awaiting (asyncio) consumer, and blocking or half awaiting producers, so
that the doorbells' handshakes are judged for lost wakeups too."""
import bisect
import os
import random
import shutil
import signal
import time
from collections import Counter

import shmring
from shmring.testing import processes, rings
from stress import workers
from stress.control import Control
from stress.invariants import Outcome, check
from stress.scheduled import STALL, consumer_verdict, end_consumer, wait_drained

PRODUCERS = int(os.environ.get("STRESS_SOAK_PRODUCERS", "4"))   # more on a many-core machine
CAPACITY = 16384
MAX_PRODUCERS = 120             # ids fit the frame type; also bounds the kills of a round
ROUND_FRAMES = 1_000_000        # a long soak's round: its records are checked, then dropped
BATCHES = (2, 3, 4)             # send_many sizes


def sizes_for(rng, max_frame):
    """A producer's cycle of frame sizes: mostly small, with 0 and max_frame."""
    return [rng.choice([0, max_frame, rng.randrange(64), rng.randrange(max_frame + 1)])
            for _ in range(61)]


def plan_for(rng):
    """The consumer's steps (workers.LabConsumer), and how many it may hold.
    One step in a long plan drops a frame while a second thread waits in
    recv(): that step can cost a wait, so it is rare."""
    receives = [("recv",), ("many", rng.randint(1, 3)), ("bytes", rng.randint(1, 3))]
    steps = [rng.choice(receives) for _ in range(rng.randint(8, 20))]
    steps += [(rng.choice(("release", "drop", "view")), rng.randint(-3, 2))
              for _ in range(rng.randint(4, 20))] + [("thread", rng.randint(-3, 2))]
    rng.shuffle(steps)
    return steps, rng.randint(1, 4)


class Calls:
    """Where each frame of a soak producer starts its send call: groups of
    one send(), one reserve(), one send_many(batches[g]) take turns
    (workers.produce_until_stopped)."""

    def __init__(self, sizes, batches):
        self.sizes, self.batches = sizes, batches
        self.starts = [0]

    def frame_of(self, seq):
        """(length, first and end frame of its call) of frame seq."""
        while self.starts[-1] <= seq:
            g = len(self.starts) - 1
            self.starts.append(self.starts[-1] + (self.batches[g % len(self.batches)]
                                                  if g % 3 == 2 else 1))
        k = bisect.bisect_right(self.starts, seq)
        return self.sizes[seq % len(self.sizes)], self.starts[k - 1], self.starts[k]


def soak(seconds, kills, seed=None):
    """(violations, summary line)."""
    return run(seconds, kills, seed)[:2]


def soak_frames(frames, round_frames=ROUND_FRAMES):
    """The long soak: rounds of the killing soak, each on a fresh ring with
    fresh producers and checked in full, until frames have passed.
    (violations, summary line)."""
    started = time.monotonic()
    total = Counter()
    while total["frames"] < frames:
        bad, summary, counts = run(float("inf"), True, frames=min(round_frames,
                                                                  frames - total["frames"]))
        total.update(counts)
        total["rounds"] += 1
        print(f"    round {total['rounds']}: {summary}", flush=True)
        if bad:
            return bad, f"round {total['rounds']} failed (above)"
        if counts["frames"] == 0:
            return ["a round passed no frame"], "no progress"
    return [], (f"{total['frames']} frames ({total['bytes'] / 1e9:.1f} GB) in {total['rounds']} "
                f"rounds, {total['kills']} producers killed, {total['recoveries']} dead claims "
                f"recovered, every frame conserved ({time.monotonic() - started:.0f} s)")


def run(seconds, kills, seed=None, frames=None):
    """One soak: for seconds, or until frames have passed (and, with kills,
    no longer than the producer ids last).  (violations, summary line, counts)."""
    seed = random.randrange(1 << 32) if seed is None else seed
    rng = random.Random(seed)
    start = rng.choice([0, (1 << 64) - 64 * rng.randrange(1, 4096), (1 << 32) - 64 * 17])
    awaiting = rng.random() < 0.5
    awaiting_producers = rng.random() < 0.5     # then the even ones await
    with rings.scratch_dir() as scratch:
        ring = shmring.Ring.create(rings.unique_name("soak"), CAPACITY, _start=start)
        ctl = Control(os.path.join(scratch, "control"), MAX_PRODUCERS + 1)
        out = os.path.join(scratch, "records")
        calls, pids, status, killed = {}, {}, {}, {}
        plan, hold = plan_for(rng)
        consumer = processes.fork(workers.consume, ring, ctl, 0, out, plan, hold, STALL, False,
                                  awaiting)

        def start_producer():
            i = len(calls) + 1
            calls[i] = Calls(sizes_for(rng, ring.max_frame),
                             [rng.choice(BATCHES) for _ in range(7)])
            pids[i] = processes.fork(workers.produce_until_stopped, ring, ctl, i,
                                     calls[i].sizes, calls[i].batches,
                                     awaiting_producers and i % 2 == 0)

        def exited():
            for i, pid in pids.items():
                if i not in status:
                    code = processes.reap(pid, 0)
                    if code is not None:
                        status[i] = code
            return len(status) == len(pids)

        try:
            for _ in range(PRODUCERS):
                start_producer()
            end = time.monotonic() + seconds
            next_kill = time.monotonic() + rng.uniform(0.1, 0.5)
            while time.monotonic() < end and (frames is None or (
                    ring.stats()["frames_received"] < frames
                    and not (kills and len(calls) >= MAX_PRODUCERS))):
                exited()
                running = [i for i in pids if i not in status]
                # None may be left to kill: all may have ended (say, with ConsumerGone).
                if kills and running and time.monotonic() >= next_kill \
                        and len(calls) < MAX_PRODUCERS:
                    victim = rng.choice(running)
                    os.kill(pids[victim], signal.SIGKILL)
                    killed[victim] = "free"
                    start_producer()
                    next_kill = time.monotonic() + rng.uniform(0.1, 0.5)
                time.sleep(0.01)
            sealed = rng.random() < 0.5
            if sealed:
                ring.seal()             # an orchestrator's shutdown: claims in flight race it
            else:
                ctl.stop("producers")
            bad = wait_drained(ring, exited, consumer)
            code = end_consumer(ring, ctl, consumer)
            bad += consumer_verdict(code)
            stats = ring.stats()
            if not bad:
                # A producer killed inside a send_many may have committed a
                # whole batch it never reported.
                outcomes = {i: Outcome(ctl.sent(i), killed.get(i), status[i],
                                       max(BATCHES) if i in killed else 0, ctl.refused(i))
                            for i in calls}
                meta = workers.read_meta(out)
                bad = meta["bad"] + check(workers.read_records(out),
                                          lambda i, seq: calls[i].frame_of(seq), outcomes, stats,
                                          None if kills else 0, start, ctl.lost_wakeups(),
                                          meta["saw_seal"])
                max_gap = meta["max_gap"]
            else:
                max_gap = float("nan")
            if bad and os.environ.get("STRESS_KEEP"):   # a failed run's records, for a post-mortem
                shutil.copytree(scratch, os.path.join(os.environ["STRESS_KEEP"], f"soak-{seed}"),
                                ignore=shutil.ignore_patterns("shmring.*"))
        finally:
            processes.kill_all([consumer] + [p for i, p in pids.items() if i not in status])
            ring.unlink()
            ring.close()
            ctl.close()
    wraps = ((stats["tail"] - start) % (1 << 64)) // CAPACITY
    summary = (f"{stats['frames_received']} frames, {stats['bytes_received'] / 1e6:.1f} MB, "
               f"{wraps} wraps, {len(killed)} kills, {stats['frames_abandoned']} recoveries, "
               f"max stall {max_gap * 1e3:.0f} ms, {'sealed' if sealed else 'stopped'}, "
               f"{'awaiting' if awaiting else 'blocking'} consumer, "
               f"{'half awaiting' if awaiting_producers else 'blocking'} producers "
               f"(seed {seed}, start {start:#x})")
    counts = {"frames": stats["frames_received"], "bytes": stats["bytes_received"],
              "kills": len(killed), "recoveries": stats["frames_abandoned"]}
    return bad, summary, counts

"""Free-running soak: many producer processes on a small ring, no pause
points, random sizes, for a set time; optionally SIGKILLing a random producer
now and then (each is replaced by a fresh one).  It ends by telling the
producers to stop or, in half the runs, by sealing the ring under them.  The
seed also picks a blocking or an awaiting (asyncio) consumer."""
import os
import random
import signal
import time

import shmring
from shmring.testing import processes, rings
from stress import workers
from stress.control import Control
from stress.invariants import Outcome, check
from stress.scheduled import STALL, consumer_verdict, end_consumer, wait_drained

PRODUCERS = int(os.environ.get("STRESS_SOAK_PRODUCERS", "4"))   # more on a many-core machine
CAPACITY = 16384
MAX_PRODUCERS = 120             # ids fit the frame type; also bounds the kills


def sizes_for(rng, max_frame):
    """A producer's cycle of frame sizes: mostly small, with 0 and max_frame."""
    return [rng.choice([0, max_frame, rng.randrange(64), rng.randrange(max_frame + 1)])
            for _ in range(61)]


def soak(seconds, kills, seed=None):
    """(violations, summary line)."""
    seed = random.randrange(1 << 32) if seed is None else seed
    rng = random.Random(seed)
    start = rng.choice([0, (1 << 64) - 64 * rng.randrange(1, 4096), (1 << 32) - 64 * 17])
    awaiting = rng.random() < 0.5
    with rings.scratch_dir() as scratch:
        ring = shmring.Ring.create(rings.unique_name("soak"), CAPACITY, _start=start)
        ctl = Control(os.path.join(scratch, "control"), MAX_PRODUCERS + 1)
        out = os.path.join(scratch, "records")
        sizes, pids, status, killed = {}, {}, {}, {}
        consumer = processes.fork(workers.consume, ring, ctl, 0, out, 3, STALL, False, awaiting)

        def start_producer():
            i = len(sizes) + 1
            sizes[i] = sizes_for(rng, ring.max_frame)
            pids[i] = processes.fork(workers.produce_until_stopped, ring, ctl, i, sizes[i])

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
            while time.monotonic() < end:
                exited()
                running = [i for i in pids if i not in status]
                # None may be left to kill: all may have ended (say, with ConsumerGone).
                if kills and running and time.monotonic() >= next_kill \
                        and len(sizes) < MAX_PRODUCERS:
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
                outcomes = {i: Outcome(ctl.sent(i), killed.get(i), status[i], ctl.refused(i))
                            for i in sizes}
                meta = workers.read_meta(out)
                bad = check(workers.read_records(out),
                            lambda i, seq: sizes[i][seq % len(sizes[i])], outcomes, stats,
                            None if kills else 0, meta["saw_seal"])
                max_gap = meta["max_gap"]
            else:
                max_gap = float("nan")
        finally:
            processes.kill_all([consumer] + [p for i, p in pids.items() if i not in status])
            ring.unlink()
            ring.close()
            ctl.close()
    wraps = ((stats["tail"] - start) % (1 << 64)) // CAPACITY
    summary = (f"{stats['frames_received']} frames, {stats['bytes_received'] / 1e6:.1f} MB, "
               f"{wraps} wraps, {len(killed)} kills, {stats['frames_abandoned']} recoveries, "
               f"max stall {max_gap * 1e3:.0f} ms, {'sealed' if sealed else 'stopped'}, "
               f"{'awaiting' if awaiting else 'blocking'} consumer (seed {seed}, start {start:#x})")
    return bad, summary

"""Hypothesis-driven interleavings of real processes at the core's pause points.

Hypothesis draws a whole Scenario up front; the coordinator replays its
schedule one pause point at a time, kills producers (and the sealer) where it
says, lets everything run free to drain, checks the invariants, and then
checks that a burst, with nobody receiving, gets the whole ring.  A
failure shrinks to a short, readable Scenario."""
import os
import signal
import time
from dataclasses import dataclass, field

from hypothesis import HealthCheck, Phase, example, given, note, settings
from hypothesis import strategies as st

import shmring
from shmring import layout
from shmring.testing import processes, rings
from stress import workers
from stress.control import POINT_NAMES, Control
from stress.invariants import CLAIM_POINTS, Outcome, check

CONSUMER = 0                    # participant 0; producers are 1..n
STEP_WAIT = 0.3                 # a turn that reaches no pause point by then is blocked
START_WAIT = 10.0
PRODUCER_TURNS = 200            # producers_first: more than any scenario's producer needs
WAITING_POINTS = ("space_wait", "space_armed")     # a producer parked here waits for room
DRAIN_DEADLINE = 60.0
STALL = 0.2                     # the consumer's stall_timeout: dead claims are recovered after it
NO_WATCHDOG = 3600.0            # an awaiting consumer's stall_timeout where nobody dies
QUIET_ROUND = 2 * STALL + 0.3   # liveness: progress within two quiet rounds
KILL_POINTS = ("rewind", "claim_cas", "claimed", "busy", "payload", "commit", "committed",
               "data_ring", "space_wait", "space_armed")
SEAL_KILL_POINTS = ("seal", "sealed")     # before the sealer's CAS on tail, and after it
STARTS = {"0": 0, "2^32": 1 << 32, "2^64": 1 << 64}
BURST_FRAME = 64                # the burst's frames (a 128-byte record): they fill the ring to the last lines


@dataclass
class Scenario:
    capacity: int
    start: str                  # "2^64-0x1c0" style: readable in a shrunk report
    hold: int                   # frames the consumer holds before releasing them, newest first
    sizes: dict                 # producer -> frame sizes, in order
    schedule: list              # bursts (participant, turns); 0 is the consumer
    kills: dict = field(default_factory=dict)  # producer -> (pause point, nth arrival there)
    seal: bool = False          # participant len(sizes) + 1 seals the ring, racing the producers
    awaits: tuple = ()          # participants that use the awaitable API (asyncio)

    def sealer(self):
        return len(self.sizes) + 1 if self.seal else None

    def start_pos(self):
        base, _, back = self.start.partition("-")
        return (STARTS[base] - int(back or "0", 16)) % (1 << 64)


@st.composite
def scenarios(draw):
    capacity = draw(st.sampled_from([4096, 8192, 16384]))
    max_frame = capacity // 2 - 64
    size = st.one_of(
        st.sampled_from([0, 1, 24, 64, capacity // 8 - 64, capacity // 4 - 64, max_frame]),
        st.integers(0, max_frame))
    n = draw(st.integers(1, 6))
    sizes = {i: draw(st.lists(size, min_size=1, max_size=6)) for i in range(1, n + 1)}
    base = draw(st.sampled_from(sorted(STARTS)))
    back = 0 if base == "0" else draw(st.one_of(   # how far below 2^32 / 2^64 to start
        st.sampled_from([64, capacity // 2, capacity - 64, capacity + 64]),
        st.integers(0, 3 * capacity // 64).map(lambda k: k * 64)))
    seal = draw(st.booleans())
    schedule = draw(st.lists(st.tuples(st.integers(0, n + seal), st.integers(1, 8)),
                             max_size=12))
    if seal:                    # the sealer's turn lands among the claims, not only at the drain
        schedule.insert(draw(st.integers(0, len(schedule))), (n + 1, draw(st.integers(1, 2))))
    kills = draw(st.dictionaries(st.integers(1, n), st.tuples(st.sampled_from(KILL_POINTS),
                                                             st.integers(1, 2)), max_size=2))
    if seal and draw(st.booleans()):
        kills[n + 1] = (draw(st.sampled_from(SEAL_KILL_POINTS)), 1)
    awaits = tuple(sorted(draw(st.sets(st.integers(0, n)))))
    return Scenario(capacity, f"{base}-{back:#x}" if back else base, draw(st.integers(1, 3)),
                    sizes, schedule, kills, seal, awaits)


# The doorbell handshake's windows, run first every time.  Random schedules
# reach them rarely: any commit after a lost ring rescues it, so the consumer
# must be parked in the window while the last frames commit.
EXPLICIT = [
    # The last frame commits while the awaiting consumer is parked after its
    # try and before arming: only its re-check finds the frame.
    Scenario(4096, "0", 1, {1: [100]}, [], {}, awaits=(0,)),
    # A producer wins the armed consumer's flag and dies before ringing: only
    # stall_timeout's second look finds the frame.
    Scenario(4096, "0", 1, {1: [100, 100]}, [(0, 2), (1, 8)], {1: ("data_ring", 1)},
             awaits=(0,)),
    # The awaiting consumer has every frame and awaits its doorbell when the
    # ring is sealed: only the seal's ring tells it the stream ended.
    Scenario(4096, "0", 1, {1: [100]}, [(1, 8), (0, 6)], {}, seal=True, awaits=(0,)),
]


class Run:
    """One replay of a Scenario: its processes and what they did."""

    def __init__(self, sc, scratch):
        self.sc = sc
        self.ring = shmring.Ring.create(rings.unique_name("lab"), sc.capacity, _start=sc.start_pos())
        self.ctl = Control(os.path.join(scratch, "control"), len(sc.sizes) + 1 + sc.seal)
        self.out = os.path.join(scratch, "records")
        self.pids = {}
        self.seen = {}                      # participant -> arrivals already handled
        self.running = set()                # granted a turn, not yet parked again
        self.visits = {}                    # (producer, point) -> arrivals there
        self.killed = {}                    # producer -> point
        self.status = {}                    # participant -> exit status
        self.trace = []

    def start(self):
        awaiting = CONSUMER in self.sc.awaits
        # Where nobody dies, an awaiting consumer's only wake is a doorbell: a
        # lost ring is then a stall the liveness check sees (or, at the seal,
        # an end of stream it never saw), not a delay.
        stall = STALL if self.sc.kills or not awaiting else NO_WATCHDOG
        self.pids[CONSUMER] = processes.fork(workers.consume, self.ring, self.ctl, CONSUMER,
                                             self.out, self.sc.hold, stall, True, awaiting)
        for i, sizes in self.sc.sizes.items():
            self.pids[i] = processes.fork(workers.produce, self.ring, self.ctl, i, sizes, True,
                                          i in self.sc.awaits)
        if self.sc.seal:
            self.pids[self.sc.sealer()] = processes.fork(workers.seal, self.ring, self.ctl,
                                                         self.sc.sealer(), True)
        for i in self.pids:
            self.seen[i] = 0
            self.running.add(i)
            self.settle(i, START_WAIT)

    def settle(self, i, timeout):
        """Wait for participant i to park at its next pause point or exit."""
        if not self.ctl.wait_arrival(i, self.seen[i], timeout):
            self.poll_exit(i)
            return
        self.running.discard(i)
        self.seen[i] = self.ctl.arrivals(i)
        point = POINT_NAMES[self.ctl.point(i)]
        self.trace.append(f"{self.who(i)}@{point}")
        key = (i, point)
        self.visits[key] = self.visits.get(key, 0) + 1
        if self.sc.kills.get(i) == (point, self.visits[key]):
            os.kill(self.pids[i], signal.SIGKILL)
            self.killed[i] = point
            self.trace.append(f"kill {self.who(i)}")
            self.poll_exit(i, time.monotonic() + START_WAIT)

    def who(self, i):
        return "C" if i == CONSUMER else "S" if i == self.sc.sealer() else f"P{i}"

    def poll_exit(self, i, deadline=0):
        status = processes.reap(self.pids[i], deadline)
        if status is not None:
            self.status[i] = status

    def turn(self, i):
        if i in self.status:
            return
        if i in self.running:               # blocked last time: give it a moment more
            self.settle(i, STEP_WAIT)
            if i in self.running or i in self.status:
                return
        self.ctl.grant(i)
        self.running.add(i)
        self.settle(i, STEP_WAIT)

    def drain(self):
        self.producers_first()
        self.ctl.release_all(len(self.pids))

        def exited():
            others = [i for i in self.pids if i != CONSUMER]
            for i in others:
                if i not in self.status:
                    self.poll_exit(i)
            return all(i in self.status for i in others)
        return wait_drained(self.ring, exited, self.pids[CONSUMER])

    def producers_first(self):
        """Before everything runs free, let each producer run on its own until
        it exits or blocks.  A consumer parked before its doorbell handshake
        then resumes to find every frame that could be committed without it,
        and none committed later to rescue a ring it lost."""
        for i in self.sc.sizes:
            for _ in range(PRODUCER_TURNS):
                self.turn(i)
                if i in self.status or i in self.running or \
                        POINT_NAMES[self.ctl.point(i)] in WAITING_POINTS:
                    break                   # done, or it needs the consumer to go on

    def finish(self):
        status = end_consumer(self.ring, self.ctl, self.pids[CONSUMER])
        if status is not None:
            self.status[CONSUMER] = status
        bad = consumer_verdict(status)
        if bad:
            return bad
        sealer = self.sc.sealer()
        if sealer is not None and sealer not in self.killed and self.status.get(sealer) != 0:
            bad.append(f"sealer ended with status {self.status.get(sealer)}")
        stats = self.ring.stats()
        if stats["sealed"] != (sealer is not None and self.killed.get(sealer) != "seal"):
            bad.append(f"ring sealed: {stats['sealed']}, though the sealer "
                       f"{'was killed before its CAS' if sealer in self.killed else 'ran'}")
        outcomes = {i: Outcome(self.ctl.sent(i), self.killed.get(i), self.status.get(i),
                               self.ctl.refused(i))
                    for i in self.sc.sizes}
        abandoned = sum(1 for p in self.killed.values() if p in CLAIM_POINTS)
        return bad + check(workers.read_records(self.out),
                           lambda i, seq: self.sc.sizes[i][seq], outcomes,
                           stats, abandoned, workers.read_meta(self.out)["saw_seal"])

    def close(self):
        processes.kill_all([pid for i, pid in self.pids.items() if i not in self.status])
        self.ring.unlink()
        self.ring.close()
        self.ctl.close()


def end_consumer(ring, ctl, pid):
    """Reap the consumer once the ring is drained: its exit status, or None if
    it did not end.  On a sealed ring it is not told to stop: it must end by
    itself, at the seal (an awaiting one only if the seal rang its doorbell)."""
    if not ring.sealed:
        ctl.stop("consumer")
    return processes.reap(pid, time.monotonic() + START_WAIT)


def consumer_verdict(status):
    if status is None:
        return [f"the consumer did not end within {START_WAIT:.0f} s of the drain "
                "(on a sealed ring: it never saw the seal)"]
    return [] if status == 0 else [f"consumer ended with status {status}"]


def wait_drained(ring, exited, consumer):
    """Wait until every producer has exited (exited() polls) and the ring is
    empty.  Violations if the consumer process dies (it may end only at the
    seal), if the ring stops making progress for two quiet rounds, or if it
    does not drain by the deadline."""
    deadline = time.monotonic() + DRAIN_DEADLINE
    last, quiet_since = None, time.monotonic()
    while True:
        code = processes.reap(consumer, 0)
        if code is not None and not (code == 0 and ring.stats()["sealed"]):
            return [(f"consumer died with status {code} before the ring drained "
                    "(its traceback is above)")]
        done = exited()
        s = ring.stats()
        if done and s["fill"] == 0:
            return []
        now = time.monotonic()
        progress = (s["frames_received"], s["head"], s["tail"], done)
        if progress != last:
            last, quiet_since = progress, now
        elif now - quiet_since > 2 * QUIET_ROUND:
            return [(f"liveness: no progress for two quiet rounds ({2 * QUIET_ROUND:.1f} s); "
                     f"stats {s}")]
        if now > deadline:
            return [f"liveness: not drained after {DRAIN_DEADLINE} s; stats {s}"]
        time.sleep(0.005)


def burst_gets_the_ring(ring):
    """After a run, with a consumer that is not receiving and holds nothing
    (a new one, in this process: a single-threaded program that puts before
    it gets), a producer sending without waiting must get all the room the
    ring has: as many frames as the usual claims, wrap padding included, fit
    before head.  A Full there is room taken that nobody gives back before
    the next receive, such as a rewind while the consumer does not wait at
    the tail.  The ring is first moved past the middle of a lap (without
    rewinding), where a rewind would pad."""
    cap = ring.capacity
    need = layout.record_size(BURST_FRAME)
    if ring.sealed:
        return []
    with ring.consumer() as c, ring.producer(rewind=False) as mover, ring.producer() as p:
        while ring.stats()["tail"] % cap < cap // 2:
            mover.send(b"", timeout=0)
            c.recv(0).release()
        s = ring.stats()
        pos, used, room = s["tail"], s["fill"], 0
        while True:                     # the frames that fit, claimed as usual
            to_end = cap - pos % cap
            total = need if to_end >= need else need + to_end
            if used + total > cap:
                break
            pos, used, room = pos + total, used + total, room + 1
        for sent in range(room):
            try:
                p.send(bytes(BURST_FRAME), timeout=0)
            except shmring.Full:
                return [f"burst: Full after {sent} of {room} frames of {need} B that fit, with "
                        f"the consumer not receiving; before the burst {s}, now {ring.stats()}"]
    return []


def replay(sc):
    """Run one Scenario: (violations, trace of the turns taken)."""
    with rings.scratch_dir() as scratch:
        run = Run(sc, scratch)
        try:
            run.start()
            for i, turns in sc.schedule:
                for _ in range(turns):
                    run.turn(i)
            bad = run.drain()
            bad = bad or run.finish()
            return bad or burst_gets_the_ring(run.ring), " ".join(run.trace)
        finally:
            run.close()


def explore(seconds, max_examples, shrink=True):
    """Run Hypothesis for up to `seconds`; raises AssertionError with the shrunk
    Scenario on a violation.  Returns how many scenarios ran."""
    phases = list(Phase) if shrink else [Phase.explicit, Phase.reuse, Phase.generate]
    end = time.monotonic() + seconds
    ran = [0]

    def scenario_holds(sc):
        if time.monotonic() > end:
            return
        ran[0] += 1
        bad, trace = replay(sc)
        note(f"turns taken: {trace}")
        assert not bad, "\n  ".join(["invariant violated:"] + bad)

    for sc in reversed(EXPLICIT):
        scenario_holds = example(sc)(scenario_holds)
    settings(max_examples=max_examples, deadline=None, database=None, print_blob=True,
             report_multiple_bugs=False, phases=phases,
             suppress_health_check=list(HealthCheck))(given(scenarios())(scenario_holds))()
    return ran[0]

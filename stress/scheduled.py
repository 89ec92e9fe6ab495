"""Hypothesis-driven interleavings of real processes at the core's pause points.

Hypothesis draws a whole Scenario up front; the coordinator replays its
schedule one pause point at a time, kills producers (and the sealer) where it
says, lets everything run free to drain, checks the invariants, and then
checks that a burst, with nobody receiving, gets the whole ring.  A failure
shrinks to a short, readable Scenario.

Between turns, while every participant is parked, the coordinator checks
each new claim's size (a record is padded only when it does not fit before
the wrap) and, if the Scenario says so, plants stale headers from another lap
(a position a multiple of a large power of two away, at the same index)
wherever the consumer may read a header nobody has written in this lap."""
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
from stress.invariants import CLAIM_POINTS, U64, Outcome, check

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
               "data_ring", "space_wait", "space_sleep", "space_armed")
SEAL_KILL_POINTS = ("seal", "sealed")     # before the sealer's CAS on tail, and after it
STARTS = {"0": 0, "2^32": 1 << 32, "2^64": 1 << 64}
STALE_TYPE = 0x57A1E                # what a planted header says its frame is (not a lab frame)
STATES = {"busy": layout.BUSY, "committed": layout.COMMITTED, "pad": layout.PAD,
          "released": layout.RELEASED}
BURST_FRAME = 64                # the burst's frames (a 128-byte record): they fill the ring to the last lines


@dataclass
class Scenario:
    capacity: int
    start: str                  # "2^64-0x1c0" style: readable in a shrunk report
    hold: int                   # frames the consumer holds at most after a receive
    sizes: dict                 # producer -> frame sizes, in order
    schedule: list              # bursts (participant, turns); 0 is the consumer
    kills: dict = field(default_factory=dict)  # producer -> (pause point, nth arrival there)
    batch: dict = field(default_factory=dict)  # producer -> frames per send_many (absent: send)
    plan: list = field(default_factory=lambda: [("recv",)])  # the consumer's steps (workers)
    stale: tuple = None         # (sign, m, j, state): plant headers of position +-m*2^j
    seal: bool = False          # participant len(sizes) + 1 seals the ring, racing the producers
    awaits: tuple = ()          # participants that use the awaitable API (asyncio)

    def sealer(self):
        return len(self.sizes) + 1 if self.seal else None

    def start_pos(self):
        base, _, back = self.start.partition("-")
        return (STARTS[base] - int(back or "0", 16)) % (1 << 64)

    def frame_of(self, i, seq):
        """(length, first and end frame of its send call) of producer i's frame seq."""
        first = seq - seq % self.batch.get(i, 1)
        return self.sizes[i][seq], first, min(first + self.batch.get(i, 1), len(self.sizes[i]))

    def stale_delta(self):
        sign, m, j, _ = self.stale
        return (m << j) * (1 if sign == "+" else -1)


@st.composite
def scenarios(draw):
    capacity = draw(st.sampled_from([4096, 8192, 16384]))
    max_frame = capacity // 2 - 64
    size = st.one_of(
        st.sampled_from([0, 1, 24, 64, capacity // 8 - 64, capacity // 4 - 64, max_frame]),
        st.integers(0, max_frame),
        st.integers(capacity // 4, max_frame))     # large: the ring fills, producers wait
    n = draw(st.integers(1, 6))
    sizes = {i: draw(st.lists(size, min_size=1, max_size=6)) for i in range(1, n + 1)}
    base = draw(st.sampled_from(sorted(STARTS)))
    back = 0 if base == "0" else draw(st.one_of(   # how far below 2^32 / 2^64 to start
        st.sampled_from([64, capacity // 2, capacity - 64, capacity + 64]),
        st.integers(0, 3 * capacity // 64).map(lambda k: k * 64)))
    seal = draw(st.booleans())
    schedule = draw(st.lists(st.tuples(st.integers(0, n + seal), st.integers(1, 12)),
                             max_size=12))
    if seal:                    # the sealer's turn lands among the claims, not only at the drain
        schedule.insert(draw(st.integers(0, len(schedule))), (n + 1, draw(st.integers(1, 2))))
    kills = draw(st.dictionaries(st.integers(1, n), st.tuples(st.sampled_from(KILL_POINTS),
                                                             st.integers(1, 2)), max_size=2))
    if seal and draw(st.booleans()):
        kills[n + 1] = (draw(st.sampled_from(SEAL_KILL_POINTS)), 1)
    batch = draw(st.dictionaries(st.integers(1, n), st.integers(2, 4), max_size=n))
    lap = capacity.bit_length()     # 2^lap is two laps: any larger power keeps the index
    stale = draw(st.one_of(st.none(), st.tuples(
        st.sampled_from("-+"), st.sampled_from([1, 3]),
        st.one_of(st.sampled_from([32, 48, 63]), st.integers(lap, 63)),
        st.sampled_from(sorted(STATES)))))
    awaits = tuple(sorted(draw(st.sets(st.integers(0, n)))))
    return Scenario(capacity, f"{base}-{back:#x}" if back else base, draw(st.integers(1, 4)),
                    sizes, schedule, kills, batch, draw(plans), stale, seal, awaits)


step = st.one_of(
    st.just(("recv",)),
    st.tuples(st.sampled_from(["many", "bytes"]), st.integers(1, 3)),
    st.tuples(st.sampled_from(workers.LETS_GO), st.integers(-3, 2)))
plans = st.lists(step, min_size=1, max_size=6).filter(
    lambda plan: any(s[0] in workers.RECEIVES for s in plan))


# The doorbell handshake's windows, run first every time (a waiting
# consumer passes the `waiting` point first, so its turns count it).  Random schedules
# reach them rarely: any commit after a lost ring rescues it, so the consumer
# must be parked in the window while the last frames commit.
EXPLICIT = [
    # The last frame commits while the awaiting consumer is parked after its
    # try and before arming: only its re-check finds the frame.
    Scenario(4096, "0", 1, {1: [100]}, [], {}, awaits=(0,)),
    # A producer wins the armed consumer's flag and dies before ringing: only
    # stall_timeout's second look finds the frame.
    Scenario(4096, "0", 1, {1: [100, 100]}, [(0, 3), (1, 8)], {1: ("data_ring", 1)},
             awaits=(0,)),
    # The awaiting consumer has every frame and awaits its doorbell, past its
    # re-check (its last turn reaches no pause point), when the ring is
    # sealed: only the seal's ring tells it the stream ended.  One turn
    # fewer leaves it at data_armed, where its re-check races the seal.
    Scenario(4096, "0", 1, {1: [100]}, [(1, 8), (0, 9)], {}, seal=True, awaits=(0,)),
    # The doorbells' wake races, under the lost-wakeup judge: a producer
    # commits and wins the flag of a consumer parked between arming and its
    # re-check; an awaiting producer awaits room while the consumer releases,
    # wins its flag and rings.
    Scenario(4096, "0", 1, {1: [100, 100]}, [(0, 3), (1, 7), (0, 1)], awaits=(0,)),
    Scenario(4096, "0", 4, {1: [1984, 1984, 1984]}, [(1, 14), (0, 5)],
             plan=[("recv",), ("recv",), ("release", 0)], awaits=(1,)),
]


class Run:
    """One replay of a Scenario: its processes and what they did."""

    def __init__(self, sc, scratch):
        self.sc = sc
        self.ring = shmring.Ring.create(rings.unique_name("lab"), sc.capacity, _start=sc.start_pos())
        self.raw = rings.Raw(self.ring.path)
        self.ctl = Control(os.path.join(scratch, "control"), len(sc.sizes) + 1 + sc.seal)
        self.out = os.path.join(scratch, "records")
        self.pids = {}
        self.seen = {}                      # participant -> arrivals already handled
        self.running = set()                # granted a turn, not yet parked again
        self.visits = {}                    # (producer, point) -> arrivals there
        self.killed = {}                    # producer -> point
        self.status = {}                    # participant -> exit status
        self.parked = {}                    # participant -> the point it waits at
        self.trace = []
        self.bad = []                       # found between turns
        self.rewinds = {}                   # producer -> its slot's rewinds at its last claim

    def start(self):
        awaiting = CONSUMER in self.sc.awaits
        # Where nobody dies, an awaiting consumer's only wake is a doorbell: a
        # lost ring is then a stall the liveness check sees (or, at the seal,
        # an end of stream it never saw), not a delay.
        stall = STALL if self.sc.kills or not awaiting else NO_WATCHDOG
        self.pids[CONSUMER] = processes.fork(workers.consume, self.ring, self.ctl, CONSUMER,
                                             self.out, self.sc.plan, self.sc.hold, stall, True,
                                             awaiting)
        for i, sizes in self.sc.sizes.items():
            self.pids[i] = processes.fork(workers.produce, self.ring, self.ctl, i, sizes,
                                          self.sc.batch.get(i, 1), True, i in self.sc.awaits)
        if self.sc.seal:
            self.pids[self.sc.sealer()] = processes.fork(workers.seal, self.ring, self.ctl,
                                                         self.sc.sealer(), True)
        for i in self.pids:
            self.seen[i] = 0
            self.running.add(i)
            self.settle(i, START_WAIT)
        self.plant()

    def settle(self, i, timeout):
        """Wait for participant i to park at its next pause point or exit."""
        if not self.ctl.wait_arrival(i, self.seen[i], timeout):
            self.poll_exit(i)
            return
        self.running.discard(i)
        self.seen[i] = self.ctl.arrivals(i)
        point = POINT_NAMES[self.ctl.point(i)]
        self.parked[i] = point
        self.trace.append(f"{self.who(i)}@{point}")
        key = (i, point)
        self.visits[key] = self.visits.get(key, 0) + 1
        if point == "claimed":
            self.check_claim(i, self.visits[key] - 1)
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
        self.parked.pop(i, None)
        self.settle(i, STEP_WAIT)
        self.plant()

    def check_claim(self, i, k):
        """Producer i just claimed (its CAS succeeded) for its frame k: the
        claim must be the record, plus the rest of the data area only when
        the record does not fit before the wrap, or when the claim rewound
        (its slot counted one more rewind, before the claimed pause point)."""
        slot = self.raw.slot_of_pid(self.pids[i])
        pos = self.raw.u64(self.raw.slot(slot, layout.Slot.intent_pos))
        total = self.raw.u64(self.raw.slot(slot, layout.Slot.intent_len))
        rewinds = self.raw.u64(self.raw.slot(slot, layout.Slot.rewinds))
        rewound, self.rewinds[i] = rewinds != self.rewinds.get(i, 0), rewinds
        need = layout.record_size(self.sc.sizes[i][k])
        room = self.sc.capacity - pos % self.sc.capacity
        want = need + room if room < need or rewound else need
        if total != want:
            self.bad.append(f"space: producer {i} claimed {total} bytes at {pos:#x} for a record "
                            f"of {need} with {room} left before the wrap; {want} were needed")

    def plant(self):
        """Stale headers from another lap (Scenario.stale) on every line where
        the consumer may read a header that nobody wrote in this lap: the free
        space from tail on, and the claims of producers parked before their
        header.  Only while every participant is parked, so nobody writes."""
        if self.sc.stale is None or any(i in self.running for i in self.pids
                                         if i not in self.status):
            return
        cap, delta = self.sc.capacity, self.sc.stale_delta()
        head = self.raw.u64(layout.SegmentHeader.head)
        tail = self.raw.u64(layout.SegmentHeader.tail)
        spans = [(tail, (head + cap - tail) & U64)]
        for i, point in self.parked.items():
            if point == "claimed" and i not in self.status:
                slot = self.raw.slot_of_pid(self.pids[i])
                spans.append((self.raw.u64(self.raw.slot(slot, layout.Slot.intent_pos)),
                              self.raw.u64(self.raw.slot(slot, layout.Slot.intent_len))))
        H = layout.RecordHeader
        for start, length in spans:
            for pos in range(start, start + min(length, cap), layout.ALIGN):
                pos &= U64
                self.raw.put64(self.raw.record(pos, H.length), 0)
                self.raw.put32(self.raw.record(pos, H.type), STALE_TYPE)
                self.raw.put64(self.raw.record(pos, H.commit),
                               self.raw.tag(pos + delta) | STATES[self.sc.stale[3]])

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
        bad = list(self.bad) + consumer_verdict(status)
        if status != 0:
            return bad
        sealer = self.sc.sealer()
        if sealer is not None and sealer not in self.killed and self.status.get(sealer) != 0:
            bad.append(f"sealer ended with status {self.status.get(sealer)}")
        stats = self.ring.stats()
        if stats["sealed"] != (sealer is not None and self.killed.get(sealer) != "seal"):
            bad.append(f"ring sealed: {stats['sealed']}, though the sealer "
                       f"{'was killed before its CAS' if sealer in self.killed else 'ran'}")
        # A killed producer delivers exactly the frames it committed: each
        # commit passed the "committed" point, where the coordinator saw it.
        outcomes = {i: Outcome(self.visits.get((i, "committed"), 0), self.killed[i],
                               self.status.get(i)) if i in self.killed else
                    Outcome(self.ctl.sent(i), None, self.status.get(i),
                            refused=self.ctl.refused(i)) for i in self.sc.sizes}
        abandoned = sum(1 for p in self.killed.values() if p in CLAIM_POINTS)
        meta = workers.read_meta(self.out)
        return bad + meta["bad"] + check(
            workers.read_records(self.out), self.sc.frame_of, outcomes, stats,
            abandoned, self.sc.start_pos(), self.ctl.lost_wakeups(), meta["saw_seal"])

    def close(self):
        processes.kill_all([pid for i, pid in self.pids.items() if i not in self.status])
        self.raw.close()
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


# Every run starts with these: each stops a waiter between its re-check and
# its sleep while the other side publishes and makes its wake decision.
WAKE_RACES = [
    # The consumer re-checks an empty ring (data_sleep); a producer commits
    # and wakes it; then the consumer sleeps, and must return at once.
    Scenario(4096, "0", 1, {1: [100, 100]}, [(0, 2), (1, 6), (0, 1)]),
    # A producer finds the ring full (space_sleep); the consumer releases its
    # oldest frame while it holds another; then the producer sleeps.
    Scenario(4096, "0", 4, {1: [1984, 1984, 1984]}, [(1, 13), (0, 4), (1, 1)],
             plan=[("recv",), ("recv",), ("release", 0)]),
    # The same near 2^64, a frame held as views and a batch receive.
    Scenario(8192, "2^64-0x80", 4, {1: [4032, 4032, 4032], 2: [0]}, [(1, 13), (0, 4), (1, 1)],
             plan=[("many", 2), ("view", 1), ("release", 0)]),
]


# And these: a header from 2^48 bytes back where the consumer polls a claim
# whose header is not written yet; one from 2^32 ahead where its wait
# re-checks an empty ring.
STALE_LAPS = [
    Scenario(4096, "0", 1, {1: [100]}, [(1, 1), (0, 4)], stale=("-", 1, 48, "committed")),
    Scenario(4096, "2^32-0x40", 1, {1: [100]}, [(0, 3), (1, 1)], stale=("+", 1, 32, "committed")),
]


# And this: head + capacity past 2^64 while tail plus a claim is not, where
# only a comparison by difference sees the room (random starts reach it in
# some runs, not all).
WRAPS = [Scenario(8192, "2^64-0x1000", 1, {1: [960, 960]}, [(1, 3)])]


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

    test = given(scenarios())(scenario_holds)
    for sc in reversed(WAKE_RACES + STALE_LAPS + WRAPS + EXPLICIT):
        test = example(sc)(test)
    settings(max_examples=max_examples, deadline=None, database=None, print_blob=True,
             report_multiple_bugs=False, phases=phases,
             suppress_health_check=list(HealthCheck))(test)()
    return ran[0]

"""A reference model of the ring, and Hypothesis state machines that drive
the real ring and the model side by side, comparing every observable result.

RingModel is the ring's abstract state, sequential and small: the records
between head and tail (claimed with no header yet, BUSY, COMMITTED, PAD or
RELEASED), each producer's committed frames, the consumer's cursor and held
set, head, tail and the free space, and the counters.  It follows
docs/design.md, not the C code: a claim pads only what does not fit before
the wrap; the consumer delivers COMMITTED records in ring order and skips PAD
and RELEASED ones; head walks over the released prefix; a new consumer starts
at head, so frames held unreleased are delivered again.

InProcess drives a real ring from one process: producers, waiting or
dropping (on_full="drop": a frame without room is dropped and counted), that
send(), send_many(), reserve() and commit or abort, and close; a consumer
that receives with recv(), recv_many(), recv_bytes_many(), recv_latest()
and recv_latest_each() (the older frames are released unread and counted),
releases or drops what it holds, keeps numpy views, and is replaced.

AcrossProcesses runs the producers in child processes that stop at every
pause point of the core (stress/control.py).  A rule either starts a send or
lets one producer take one step, and the model says where it must stop next
(or that it ends: sent, or Full); meanwhile the consumer, in this process,
must see a claim with no header yet, a BUSY record or padding not yet written
exactly as the model says: as nothing to deliver.

Every result is compared as it comes (a frame's producer, sequence, type,
length and bytes; Empty; Full; how many send_many() sent; where a producer
stopped), and after every rule stats() (head, tail, fill, frames and bytes
committed, received, aborted, dropped and skipped, live producers) and the
consumer's held count."""
import os
import select
import tempfile
import time
from collections import Counter
from dataclasses import dataclass

from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

import shmring
from shmring import layout
from shmring.testing import processes, rings
from shmring.testing.frames import frame_type, payload
from stress.control import POINT_NAMES, Control

U64 = (1 << 64) - 1
STARTS = [0, (1 << 32) - 1024, (1 << 64) - 2048 - 64 * 3]
PRODUCERS = (1, 2, 3)
STEPS = ("claim_cas", "claimed", "busy", "payload", "commit", "committed")  # a send, in order
WAIT = 10                       # a child producer stops or answers within this


@dataclass
class Record:
    pos: int
    size: int
    state: str                  # "claimed" (no header yet), "busy", "committed", "pad", "released"
    producer: int = 0
    slot: int = 0               # the producer's slot: recv_latest_each() keys by it
    seq: int = 0
    length: int = 0
    type: int = 0
    padding: int = None         # where the wrap padding its claim wrote starts


class RingModel:
    def __init__(self, capacity, start):
        self.capacity = capacity
        self.max_frame = capacity // 2 - layout.RECORD_HEADER
        self.head = self.tail = self.cursor = start
        self.records = {}       # position -> Record, for [head, tail)
        self.held = set()       # delivered to this consumer, not released
        self.sent = Counter()   # producer -> frames committed
        self.slots = {}         # open producer -> its slot
        self.counts = Counter()

    # --- producers ---

    def open(self, producer):
        """A producer takes the lowest free slot (every owner here is alive)."""
        self.slots[producer] = min(set(range(len(self.slots) + 1)) - set(self.slots.values()))

    def close(self, producer):
        del self.slots[producer]

    def total(self, tail, length):
        """Bytes a claim at tail takes: the record, and the rest of the data
        area before it when it does not fit there."""
        need = layout.record_size(length)
        room = self.capacity - tail % self.capacity
        return need + room if room < need else need

    def fits(self, tail, length):
        return ((tail - self.head) & U64) + self.total(tail, length) <= self.capacity

    def claim(self, producer, seq, length, type):
        """The CAS on tail: the claim's records, no header written yet."""
        total, need = self.total(self.tail, length), layout.record_size(length)
        padding = None
        if total != need:
            padding = self.tail
            self.records[padding] = Record(padding, total - need, "claimed")
        pos = (self.tail + total - need) & U64
        self.records[pos] = Record(pos, need, "claimed", producer, self.slots[producer], seq,
                                   length, type, padding)
        self.tail = (self.tail + total) & U64
        return pos

    def write_headers(self, pos):
        rec = self.records[pos]
        if rec.padding is not None:
            self.records[rec.padding].state = "pad"
        rec.state = "busy"

    def commit(self, pos):
        rec = self.records[pos]
        rec.state = "committed"
        self.sent[rec.producer] += 1
        self.counts["frames_committed"] += 1
        self.counts["bytes_committed"] += rec.length

    def abort(self, pos):
        self.records[pos].state = "pad"
        self.counts["frames_aborted"] += 1

    def send(self, producer, length, type=None, drops=False):
        """A whole send() in one step: the record, or None (Full, or dropped
        and counted by a dropping producer)."""
        if not self.fits(self.tail, length):
            self.counts["frames_dropped"] += drops
            return None
        seq = self.sent[producer]
        pos = self.claim(producer, seq, length, frame_type(producer, seq) if type is None else type)
        self.write_headers(pos)
        self.commit(pos)
        return self.records[pos]

    # --- the consumer ---

    def poll(self):
        """The next frame, or None (Empty): claims not yet written and BUSY
        records hold the cursor; padding and released records are skipped."""
        while self.cursor != self.tail:
            rec = self.records[self.cursor]
            if rec.state in ("claimed", "busy"):
                return None
            self.cursor = (self.cursor + rec.size) & U64
            if rec.state == "committed":
                self.held.add(rec.pos)
                self.counts["frames_received"] += 1
                self.counts["bytes_received"] += rec.length
                return rec
            if rec.pos == self.head:
                self.advance_head()
        return None

    def latest(self):
        """What recv_latest() and recv_latest_each() take: every frame ready
        now, in ring order (skip() then lets the older ones go)."""
        got = []
        while (rec := self.poll()) is not None:
            got.append(rec)
        return got

    def skip(self, recs, keep):
        """Release the frames taken but not kept, unread, and count them."""
        for rec in recs:
            if rec not in keep:
                self.release(rec.pos)
                self.counts["frames_skipped"] += 1

    def release(self, pos):
        self.records[pos].state = "released"
        self.held.discard(pos)
        if pos == self.head or not self.held:
            self.advance_head()

    def advance_head(self):
        while self.head != self.cursor and self.records[self.head].state in ("pad", "released"):
            self.head = (self.head + self.records.pop(self.head).size) & U64

    def reopen(self):
        """A new consumer: it starts at head; what was held comes again."""
        self.cursor = self.head
        self.held = set()

    def stats(self):
        return {"head": self.head, "tail": self.tail, "fill": (self.tail - self.head) & U64,
                "frames_abandoned": 0, "bytes_abandoned": 0,
                **{k: self.counts[k] for k in ("frames_committed", "bytes_committed",
                                                "frames_aborted", "frames_dropped",
                                                "frames_received", "bytes_received",
                                                "frames_skipped")}}


sizes = st.one_of(st.sampled_from([0, 1, 24, 960, 1984, 4032]), st.integers(0, 4032))


class Held:
    """A frame this consumer holds, or the views left of it."""

    def __init__(self, frame, pos):
        self.frame, self.views, self.pos = frame, [], pos


class RingMachine(RuleBasedStateMachine):
    """The consumer's rules and the comparisons; subclasses add producers."""

    def make(self, capacity, start):
        self.ring = shmring.Ring.create(rings.unique_name("reference"), capacity, _start=start)
        self.model = RingModel(capacity, start)
        self.consumer = self.ring.consumer(stall_timeout=60)
        self.held = []

    def size(self, n):
        return min(n, self.model.max_frame)

    def got(self, frame, rec, how="recv"):
        """Compare a delivered frame (a Frame, or bytes) with the model's."""
        assert rec is not None, f"{how} delivered a frame of {len(frame)} bytes; the model has none"
        want = payload(rec.producer, rec.seq, rec.length)
        if isinstance(frame, bytes):
            assert frame == want, f"{how}: the bytes of producer {rec.producer} frame {rec.seq} differ"
            return
        assert (frame.type, len(frame)) == (rec.type, rec.length), \
            f"{how}: type {frame.type:#x}, {len(frame)} bytes; the model: type {rec.type:#x}, " \
            f"{rec.length} bytes (producer {rec.producer} frame {rec.seq})"
        assert bytes(frame) == want, f"{how}: the bytes of producer {rec.producer} frame {rec.seq} differ"
        self.held.append(Held(frame, rec.pos))

    @rule()
    def recv(self):
        rec = self.model.poll()
        try:
            frame = self.consumer.recv(timeout=0)
        except shmring.Empty:
            assert rec is None, f"recv: Empty; the model has producer {rec.producer} frame {rec.seq}"
            return
        self.got(frame, rec)

    @rule(k=st.integers(1, 4), copies=st.booleans())
    def recv_many(self, k, copies):
        want = []
        while len(want) < k:
            rec = self.model.poll()
            if rec is None:
                break
            want.append(rec)
            if copies:
                self.model.release(rec.pos)
        got = (self.consumer.recv_bytes_many if copies else self.consumer.recv_many)(k, timeout=0)
        how = f"recv_{'bytes_' if copies else ''}many({k})"
        assert len(got) == len(want), f"{how}: {len(got)} frames; the model: {len(want)}"
        for frame, rec in zip(got, want):
            self.got(frame, rec, how)

    @rule(each=st.booleans())
    def recv_latest(self, each):
        """recv_latest() or recv_latest_each(): the newest frame (of each
        producer); the older ones are released unread."""
        recs = self.model.latest()
        if each:
            newest = {}
            for rec in recs:
                newest[rec.slot] = rec
            keep = sorted(newest.values(), key=lambda rec: recs.index(rec))
        else:
            keep = recs[-1:]
        self.model.skip(recs, keep)
        how = "recv_latest_each" if each else "recv_latest"
        try:
            got = (self.consumer.recv_latest_each if each else self.consumer.recv_latest)(timeout=0)
        except shmring.Empty:
            assert not keep, f"{how}: Empty; the model has {len(keep)} frame(s)"
            return
        if each:
            slots = [rec.slot for rec in keep]
            assert list(got) == slots, f"{how}: slots {list(got)}; the model: {slots}"
        got = list(got.values()) if each else [got]
        assert len(got) == len(keep), f"{how}: {len(got)} frame(s); the model: {len(keep)}"
        for frame, rec in zip(got, keep):
            self.got(frame, rec, how)

    @precondition(lambda self: self.held)
    @rule(at=st.integers(-4, 3), how=st.sampled_from(["release", "drop", "view"]))
    def let_go(self, at, how):
        """Release a held frame (from the front or the back), drop it, or keep
        it as views that release it when the last one dies."""
        k = at % len(self.held)
        held = self.held[k]
        if how == "view" and held.frame is not None:
            with held.frame as f:
                held.views = [memoryview(f), f.array()]
            held.frame = None
            return
        if held.views:
            held.views.pop()
            if held.views:
                return
        elif how == "release":
            held.frame.release()
        del self.held[k]
        held.frame = None
        self.model.release(held.pos)

    @rule()
    def new_consumer(self):
        self.consumer.close()
        self.held.clear()           # frames of a closed consumer release nothing
        self.consumer = self.ring.consumer(stall_timeout=60)
        self.model.reopen()

    @invariant()
    def counters_agree(self):
        if not hasattr(self, "model"):
            return
        got = self.ring.stats()
        want = dict(self.model.stats(), producers=self.live_producers(), consumer_pid=os.getpid())
        diff = {k: (got[k], v) for k, v in want.items() if got[k] != v}
        assert not diff, f"stats() differs from the model (got, model): {diff}"
        assert self.consumer.held == len(self.model.held), \
            f"consumer.held {self.consumer.held}; the model: {len(self.model.held)}"

    def teardown(self):
        if hasattr(self, "ring"):
            self.consumer.close()
            self.held.clear()
            self.close_producers()
            self.ring.unlink()
            self.ring.close()


class InProcess(RingMachine):
    """Producers and the consumer in this process."""

    @initialize(capacity=st.sampled_from([4096, 8192]), start=st.sampled_from(STARTS))
    def create(self, capacity, start):
        self.make(capacity, start)
        self.producers = {}
        self.drops = set()          # producers made with on_full="drop"
        self.reservations = {}      # producer -> (Reservation, model position)

    def live_producers(self):
        return len(self.producers)

    def close_producers(self):
        self.reservations.clear()
        for p in self.producers.values():
            p.close()

    @precondition(lambda self: len(self.producers) < len(PRODUCERS))
    @rule(i=st.sampled_from(PRODUCERS), drops=st.booleans())
    def open_producer(self, i, drops):
        if i not in self.producers:
            self.producers[i] = self.ring.producer(on_full="drop" if drops else "wait")
            self.model.open(i)
            self.drops.discard(i)
            if drops:
                self.drops.add(i)

    @rule(i=st.sampled_from(PRODUCERS))
    def close_producer(self, i):
        if i in self.producers:
            if i in self.reservations:      # closing aborts the open claim
                self.model.abort(self.reservations.pop(i)[1])
            self.producers.pop(i).close()
            self.model.close(i)

    def idle(self, i):
        return i in self.producers and i not in self.reservations

    @rule(i=st.sampled_from(PRODUCERS), n=sizes)
    def send(self, i, n):
        if not self.idle(i):
            return
        n, seq = self.size(n), self.model.sent[i]
        rec = self.model.send(i, n, drops=i in self.drops)
        try:
            went = self.producers[i].send(payload(i, seq, n), type=frame_type(i, seq), timeout=0)
        except shmring.Full:
            assert rec is None, f"send({n}): Full; the model had room (head {self.model.head:#x})"
            assert i not in self.drops, f"send({n}): Full from a dropping producer"
            return
        assert went is not False or rec is None, f"send({n}) dropped; the model had room"
        assert went is not False or i in self.drops, f"send({n}) returned False, not dropping"
        assert rec is not None or went is False, f"send({n}) went through; the model says Full"

    @rule(i=st.sampled_from(PRODUCERS), ns=st.lists(sizes, min_size=1, max_size=5))
    def send_many(self, i, ns):
        if not self.idle(i):
            return
        ns, seq = [self.size(n) for n in ns], self.model.sent[i]
        frames = []                 # a frame the model drops carries a sequence nobody expects
        for n in ns:
            went = self.model.send(i, n, frame_type(i, seq), drops=i in self.drops)
            if went is None and i not in self.drops:
                break               # a waiting producer's send_many stops at the first Full
            frames.append(payload(i, self.model.sent[i] - 1 if went else 0xffff, n))
        frames += [payload(i, 0xffff, n) for n in ns[len(frames):]]
        want = self.model.sent[i] - seq
        sent = self.producers[i].send_many(frames, type=frame_type(i, seq), timeout=0)
        assert sent == want, f"send_many({ns}) sent {sent}; the model: {want}"

    @rule(i=st.sampled_from(PRODUCERS), n=sizes)
    def reserve(self, i, n):
        if not self.idle(i):
            return
        n, seq = self.size(n), self.model.sent[i]
        fits = self.model.fits(self.model.tail, n)
        try:
            r = self.producers[i].reserve(n, type=frame_type(i, seq), timeout=0)
        except shmring.Full:
            assert not fits, f"reserve({n}): Full; the model had room"
            assert i not in self.drops, f"reserve({n}): Full from a dropping producer"
            return
        if r is None:
            assert not fits and i in self.drops, f"reserve({n}) dropped; the model had room"
            self.model.counts["frames_dropped"] += 1
            return
        assert fits, f"reserve({n}) went through; the model says Full"
        pos = self.model.claim(i, seq, n, frame_type(i, seq))
        self.model.write_headers(pos)
        self.reservations[i] = (r, pos)

    @precondition(lambda self: self.reservations)
    @rule(i=st.sampled_from(PRODUCERS), keep=st.booleans())
    def finish(self, i, keep):
        if i not in self.reservations:
            return
        r, pos = self.reservations.pop(i)
        if keep:
            rec = self.model.records[pos]
            with memoryview(r) as view:
                view[:] = payload(i, rec.seq, rec.length)
            r.commit()
            self.model.commit(pos)
        else:
            r.abort()
            self.model.abort(pos)


class AcrossProcesses(RingMachine):
    """Producers in child processes, one pause point at a time."""

    @initialize(capacity=st.sampled_from([4096, 8192]), start=st.sampled_from(STARTS),
                n=st.integers(1, len(PRODUCERS)))
    def create(self, capacity, start, n):
        self.make(capacity, start)
        with tempfile.TemporaryDirectory(prefix="shmring-reference-") as scratch:
            self.ctl = Control(os.path.join(scratch, "control"), n + 1)   # (unlinked: mapped only)
        self.children = {}          # producer -> (pid, command fd, result fd)
        self.sending = {}           # producer -> [step, seq, length, tail seen, model position]
        self.seen = Counter()       # producer -> arrivals at pause points
        for i in PRODUCERS[:n]:
            commands, results = os.pipe(), os.pipe()
            pid = processes.fork(serve, self.ring, self.ctl, i, commands[0], results[1])
            os.close(commands[0])
            os.close(results[1])
            self.children[i] = (pid, commands[1], results[0])
            assert self.answer(i) == "ready"
            self.model.open(i)

    def live_producers(self):
        return len(self.children)

    def close_producers(self):
        processes.kill_all([pid for pid, _, _ in self.children.values()])
        for _, commands, results in self.children.values():
            os.close(commands)
            os.close(results)
        self.ctl.close()

    def answer(self, i):
        """Where producer i stopped (a pause point's name), or its answer
        ("ready", "sent", "full")."""
        _, _, results = self.children[i]
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            if self.ctl.arrivals(i) != self.seen[i]:
                self.seen[i] = self.ctl.arrivals(i)
                return POINT_NAMES[self.ctl.point(i)]
            if select.select([results], [], [], 0.001)[0]:
                return os.read(results, 64).decode().strip()
        raise AssertionError(f"producer {i} neither stopped at a pause point nor answered in {WAIT} s")

    @rule(i=st.sampled_from(PRODUCERS), n=sizes)
    def start_send(self, i, n):
        if i not in self.children or i in self.sending:
            return
        n, seq = self.size(n), self.model.sent[i]
        os.write(self.children[i][1], f"{seq} {n}\n".encode())
        want = "claim_cas" if self.model.fits(self.model.tail, n) else "full"
        got = self.answer(i)
        assert got == want, f"producer {i} sending {n} bytes: {got}; the model: {want}"
        if got == "claim_cas":
            self.sending[i] = ["claim_cas", seq, n, self.model.tail, None]

    @precondition(lambda self: self.sending)
    @rule(i=st.sampled_from(PRODUCERS), turns=st.integers(1, len(STEPS)))
    def steps(self, i, turns):
        """Producer i runs on, one pause point at a time, at most turns times."""
        for _ in range(turns):
            if i in self.sending:
                self.step(i)

    def step(self, i):
        """Producer i runs to its next pause point, or to the end of its send."""
        state = self.sending[i]
        point, seq, n, tail, pos = state
        if point == "claim_cas" and tail != self.model.tail:    # its CAS fails: try again
            state[3] = self.model.tail
            want = "claim_cas" if self.model.fits(self.model.tail, n) else "full"
        elif point == "committed":
            want = "sent"
        else:
            want = STEPS[STEPS.index(point) + 1]
            if point == "claim_cas":
                state[4] = self.model.claim(i, seq, n, frame_type(i, seq))
            elif point == "claimed":
                self.model.write_headers(pos)
            elif point == "commit":
                self.model.commit(pos)
        self.ctl.grant(i)
        got = self.answer(i)
        assert got == want, f"producer {i} ({n} bytes) from {point}: {got}; the model: {want}"
        if got in ("sent", "full"):
            del self.sending[i]
        else:
            state[0] = got


def serve(ring, control, i, commands, results):
    """A child producer: for each "seq length" line, send that frame without
    waiting and answer "sent" or "full"; it stops at every pause point."""
    control.install(i)
    with ring.producer() as p, os.fdopen(commands) as lines:
        os.write(results, b"ready\n")
        for line in lines:
            seq, n = map(int, line.split())
            try:
                p.send(payload(i, seq, n), type=frame_type(i, seq), timeout=0)
                os.write(results, b"sent\n")
            except shmring.Full:
                os.write(results, b"full\n")


MACHINES = {"in-process": InProcess, "across processes": AcrossProcesses}


def check_reference(seconds, examples=None, shrink=True):
    """Run each machine in turns for about `seconds` (or `examples` runs of
    each); (violations, summary line).  Without shrink, the first failing
    run is reported as it came (shrinking child processes takes minutes)."""
    phases = list(Phase) if shrink else [Phase.explicit, Phase.reuse, Phase.generate]
    started = time.monotonic()
    runs = Counter()
    with rings.scratch_dir():
        while time.monotonic() < started + seconds and \
                (examples is None or min(runs.values(), default=0) < examples):
            for name, machine in MACHINES.items():
                try:
                    run_state_machine_as_test(machine, settings=settings(
                        max_examples=5, stateful_step_count=40, deadline=None, database=None,
                        report_multiple_bugs=False, phases=phases,
                        suppress_health_check=list(HealthCheck)))
                except Exception as e:  # noqa: BLE001 - Flaky, a child's timeout: all are failures
                    first = e.exceptions[0] if hasattr(e, "exceptions") else e   # a group
                    return ([f"{name}: {type(first).__name__}: {first}",
                             *getattr(first, "__notes__", []), *getattr(e, "__notes__", [])],
                            f"the ring and its model disagree ({name}); the steps are below")
                runs[name] += 5
    return [], ", ".join(f"{n} runs {name}" for name, n in runs.items()) + \
        f" agreed with the model ({time.monotonic() - started:.0f} s)"


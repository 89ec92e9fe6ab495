"""What the lab's child processes run: producers, the consumer and a sealer.

Producers send their frames in order: one per send(), or several per
send_many() (all frames of one batch carry the type of its first, and the
invariants number them on from it), and in the soak through reserve() too;
awaiting ones (asyncio, so that the doorbells run too) with asend() and
asend_many().  A producer stops at the seal, and notes that it was refused.

The consumer follows a plan (drawn by Hypothesis in the scheduled check, from
the seed in the soak): it receives with recv(), recv_many(k) and
recv_bytes_many(k), holds several frames, and lets them go in the plan's
order: from the front or the back, by release() or by dropping the frame, by
dropping it while a second thread waits in recv(), or through numpy views
kept across later receives (the last view to die releases it).  Before any
frame goes, it re-verifies the checksum of every frame it still holds: a
ring that reuses space under a held frame changes its bytes.  An awaiting
consumer receives with arecv(), arecv_many(k) and arecv_bytes_many(k), and
waits with no timeout: only a doorbell (or the stall_timeout watchdog) wakes
it, so a lost ring shows as a stall.  The consumer ends when told to stop,
or at the seal once it has every frame."""
import asyncio
import contextlib
import ctypes
import json
import os
import re
import struct
import threading
import time
import zlib

import numpy as np

from shmring import Empty, Sealed, layout
from shmring.testing.frames import frame_type, identify, payload
from shmring.testing.rings import Raw

# how it came (below), type, length, crc32 as received, record position
# (NO_POS: a copy, position unknown), and how many claims the ring had
# recovered when it was delivered
RECORD = struct.Struct("<BIQIQQ")
TYPED, OWN, ANONYMOUS = 0, 1, 2     # a Frame and its type; a copy and the type its header
                                    # names; a copy too short for a header (type 0)
NO_POS = 1                          # positions are multiples of 64
SEND_TIMEOUT = 60                   # no producer waits for space longer than this
WAIT = 0.05                         # the consumer's wait when the ring is empty
RECEIVES = ("recv", "many", "bytes")
LETS_GO = ("release", "drop", "thread", "view")


def produce(ring, control, i, sizes, batch, install, awaiting=False):
    """Send sizes[seq] bytes for seq = 0, 1, ... as producer i (participant
    i), batch frames per call: send() for 1, send_many() beyond (awaiting:
    asend() and asend_many()), until the ring is sealed."""
    if install:
        control.install(i)

    async def asend_all(p):
        for seq in range(0, len(sizes), batch):
            await asend_batch(p, i, seq, sizes[seq:seq + batch])
            control.set_sent(i, seq + min(batch, len(sizes) - seq))

    with ring.producer() as p:
        try:
            if awaiting:
                asyncio.run(asend_all(p))
                return
            for seq in range(0, len(sizes), batch):
                send_batch(p, i, seq, sizes[seq:seq + batch])
                control.set_sent(i, seq + min(batch, len(sizes) - seq))
        except Sealed as e:
            refused(control, i, e)


def refused(control, i, sealed):
    """Producer i's send raised Sealed: count the frames its call sent first."""
    control.set_sent(i, control.sent(i) + sent_before(sealed))
    control.set_refused(i)


def sent_before(sealed):
    """The frames a send_many() sent before its Sealed (its message says)."""
    m = re.search(r"(\d+) frame\(s\) of this call were sent", str(sealed))
    return int(m.group(1)) if m else 0


def seal(ring, control, i, install):
    """Seal the ring, as participant i: any process holding it may."""
    if install:
        control.install(i)
    ring.seal()


def send_batch(p, i, seq, sizes):
    """Frames seq, seq + 1, ... of producer i, one call."""
    if len(sizes) == 1:
        p.send(payload(i, seq, sizes[0]), type=frame_type(i, seq), timeout=SEND_TIMEOUT)
        return
    frames = [payload(i, seq + k, n) for k, n in enumerate(sizes)]
    sent = p.send_many(frames, type=frame_type(i, seq), timeout=SEND_TIMEOUT)
    if sent != len(frames):
        raise RuntimeError(f"send_many sent {sent} of {len(frames)} frames in {SEND_TIMEOUT} s")


async def asend_batch(p, i, seq, sizes):
    """send_batch, awaiting room."""
    if len(sizes) == 1:
        await p.asend(payload(i, seq, sizes[0]), type=frame_type(i, seq), timeout=SEND_TIMEOUT)
        return
    frames = [payload(i, seq + k, n) for k, n in enumerate(sizes)]
    sent = await p.asend_many(frames, type=frame_type(i, seq), timeout=SEND_TIMEOUT)
    if sent != len(frames):
        raise RuntimeError(f"asend_many sent {sent} of {len(frames)} frames in {SEND_TIMEOUT} s")


def produce_until_stopped(ring, control, i, sizes, batches, awaiting=False):
    """Soak producer: cycle through sizes until the coordinator says stop, or
    until the seal.  Groups of frames take turns: one send(), one reserve()
    that yields the CPU halfway through the fill (so that a SIGKILL often
    lands inside an open claim), one send_many() of batches[g] frames;
    awaiting, asend(), areserve() and asend_many()."""
    control.keep_notes()

    def group_sizes(seq, group):
        n = 1 if group % 3 < 2 else batches[group % len(batches)]
        return [sizes[(seq + j) % len(sizes)] for j in range(n)]

    def fill(r, data):
        with memoryview(r) as view:
            view[:len(data) // 2] = data[:len(data) // 2]
            os.sched_yield()
            view[len(data) // 2:] = data[len(data) // 2:]

    def blocking(p):
        seq = group = 0
        while not control.stopped("producers"):
            todo = group_sizes(seq, group)
            if group % 3 == 1:
                with p.reserve(todo[0], type=frame_type(i, seq), timeout=SEND_TIMEOUT) as r:
                    fill(r, payload(i, seq, todo[0]))
            else:
                send_batch(p, i, seq, todo)
            seq, group = seq + len(todo), group + 1
            control.set_sent(i, seq)

    async def awaiting_sends(p):
        seq = group = 0
        while not control.stopped("producers"):
            todo = group_sizes(seq, group)
            if group % 3 == 1:
                async with p.areserve(todo[0], type=frame_type(i, seq), timeout=SEND_TIMEOUT) as r:
                    fill(r, payload(i, seq, todo[0]))
            else:
                await asend_batch(p, i, seq, todo)
            seq, group = seq + len(todo), group + 1
            control.set_sent(i, seq)

    # Odd producers copy with streaming stores (every size, in a lab build).
    with ring.producer(nontemporal=i % 2 == 1) as p:
        try:
            if awaiting:
                asyncio.run(awaiting_sends(p))
            else:
                blocking(p)
        except Sealed as e:
            refused(control, i, e)


class Held:
    """A frame the consumer holds: the Frame, or the views left of it."""

    def __init__(self, frame, crc, type):
        self.frame = frame
        self.views = []
        self.crc = crc
        self.type = type

    def changed(self):
        """Whether the bytes under the frame (or any of its views) moved."""
        return any(zlib.crc32(b) != self.crc for b in ([self.frame] if self.frame else self.views))


class LabConsumer:
    """The consumer of the scheduled and soak checks (see the module doc).
    plan: a list of steps, repeated: ("recv",), ("many", k), ("bytes", k),
    ("release", i), ("drop", i), ("thread", i), ("view", i), where i indexes
    the held frames (negative from the back); hold: at most this many held
    after a receive (the oldest go first)."""

    def __init__(self, ring, control, me, out, plan, hold, installed):
        self.ring, self.control, self.me = ring, control, me
        self.out, self.plan, self.hold, self.installed = out, plan, hold, installed
        self.raw = Raw(ring.path)
        self.c = None
        self.held = []
        self.bad = []
        self.counts = dict.fromkeys(RECEIVES + LETS_GO, 0)
        self.max_gap, self.last = 0.0, time.monotonic()
        self.saw_seal = False

    def run(self, stall_timeout, awaiting):
        with self.ring.consumer(stall_timeout=stall_timeout) as self.c:
            try:
                if awaiting:
                    asyncio.run(self.until_stopped())
                while not awaiting and not self.control.stopped("consumer"):
                    for step in self.plan:
                        if self.control.stopped("consumer"):
                            break
                        if step[0] in RECEIVES:
                            self.receive(step)
                        else:
                            self.let_go(step)
            except Sealed:
                self.saw_seal = True
            while self.held:
                self.let_go(("release", 0))
        self.raw.close()
        return {"max_gap": self.max_gap, "bad": self.bad, "counts": self.counts,
                "saw_seal": self.saw_seal}

    async def until_stopped(self):
        """The plan, awaiting, until the stop word (read only here) or the seal."""
        follower = asyncio.ensure_future(self.follow_awaiting())
        while not self.control.stopped("consumer") and not follower.done():
            await asyncio.sleep(WAIT)
        follower.cancel()                   # a cancelled arecv takes no frame
        with contextlib.suppress(asyncio.CancelledError):
            await follower                  # Sealed, if that is how it ended

    async def follow_awaiting(self):
        while True:
            for step in self.plan:
                if step[0] in RECEIVES:
                    if not await self.atake(step, 0):
                        self.release_all()
                        await self.atake(step, None)
                    self.trim()
                else:
                    self.let_go(step)

    # --- receiving ---

    def receive(self, step):
        if not self.take(step, 0):
            self.release_all()
            self.take(step, WAIT)
        self.trim()

    def release_all(self):
        """Never wait holding frames: a producer may need their space."""
        while self.held:
            self.let_go(("release", 0))

    def trim(self):
        while len(self.held) > self.hold:
            self.let_go(("release", 0))

    def take(self, step, timeout):
        """One receive of the step's kind; records (and holds) what came."""
        kind, k = step[0], (step[1] if len(step) > 1 else 1)
        try:
            if kind == "recv":
                got = [self.c.recv(timeout=timeout)]
            elif kind == "many":
                got = self.c.recv_many(k, timeout=timeout)
            else:
                got = self.c.recv_bytes_many(k, timeout=timeout)
        except Empty:
            return 0
        return self.took(kind, k, got)

    async def atake(self, step, timeout):
        """take(), awaiting: timeout 0 tries once, None waits for a frame."""
        kind, k = step[0], (step[1] if len(step) > 1 else 1)
        try:
            if kind == "recv":
                got = [await self.c.arecv(timeout=timeout)]
            elif kind == "many":
                got = await self.c.arecv_many(k, timeout=timeout)
            else:
                got = await self.c.arecv_bytes_many(k, timeout=timeout)
        except Empty:
            return 0
        return self.took(kind, k, got)

    def took(self, kind, k, got):
        if len(got) > k:
            self.bad.append(f"{'recv_many' if kind == 'many' else 'recv_bytes_many'}({k}) "
                            f"returned {len(got)} frames")
        self.counts[kind] += 1
        for item in got:
            self.deliver(item)
        return len(got)

    def deliver(self, item):
        now = time.monotonic()
        self.max_gap, self.last = max(self.max_gap, now - self.last), now
        crc = zlib.crc32(item)
        abandoned = self.raw.u64(layout.SegmentHeader.abandoned_frames)
        if isinstance(item, bytes):
            own = identify(item)
            self.out.write(RECORD.pack(ANONYMOUS if own is None else OWN, own or 0, len(item), crc,
                                       NO_POS, abandoned))
            return
        self.out.write(RECORD.pack(TYPED, item.type, len(item), crc, self.position(item), abandoned))
        self.held.append(Held(item, crc, item.type))

    def position(self, frame):
        """The record's position, from the tag of its commit word."""
        header = np.frombuffer(frame, np.uint8).ctypes.data - layout.RECORD_HEADER
        commit = ctypes.c_uint64.from_address(header).value
        return (commit & ~layout.STATE_MASK) ^ self.raw.secret

    # --- letting go ---

    def let_go(self, step):
        kind, at = step
        if not self.held:
            return
        self.verify()
        k = at % len(self.held)
        entry = self.held[k]
        self.counts[kind] += 1
        if kind == "view":
            if entry.frame is not None:
                with entry.frame as f:          # the frame leaves `with` viewed: the last view releases
                    entry.views = [memoryview(f), f.array()]
                entry.frame = None
            return
        del self.held[k]
        if entry.views:
            entry.views.pop(0)                  # one view dies; the frame stays held while any lives
            if entry.views:
                self.held.insert(k, entry)
        elif kind == "release":
            entry.frame.release()
        elif kind == "drop":
            entry.frame = None                  # unreleased: its last reference goes
        else:
            self.drop_while_receiving(entry)

    def drop_while_receiving(self, entry):
        """Drop the frame while a second thread waits in recv(): the call in
        progress releases it before it returns (consumer.pxi's dropped queue)."""
        before = self.progress()
        taker = threading.Thread(target=self.take_unless_sealed, daemon=True)
        taker.start()
        deadline = time.monotonic() + 10
        while self.progress() == before and taker.is_alive() and time.monotonic() < deadline:
            taker.join(0.0002)
        entry.frame = None
        taker.join(SEND_TIMEOUT)
        if taker.is_alive():
            self.bad.append("recv() on a second thread did not return")

    def take_unless_sealed(self):
        """The second thread's recv(); at the seal, the plan's next receive
        raises Sealed again."""
        with contextlib.suppress(Sealed):
            self.take(("recv",), WAIT / 10)

    def progress(self):
        """Moves once the receiving thread is inside its call: it reached a
        pause point (scheduled), or it sleeps in its wait (soak)."""
        if self.installed:
            return self.control.arrivals(self.me)
        return self.raw.u64(layout.SegmentHeader.consumer_waits)

    def verify(self):
        for entry in self.held:
            if entry.changed():
                self.bad.append(f"held frame of type {entry.type:#x} changed under the consumer: "
                                "its space was reused while held")
                entry.crc = zlib.crc32(entry.frame if entry.frame else entry.views[0])


def consume(ring, control, i, out_path, plan, hold, stall_timeout, install, awaiting=False):
    """The consumer's child: LabConsumer, blocking or awaiting, its records
    in out_path and what else it found in out_path + ".json"."""
    if install:
        control.install(i)
    else:
        control.keep_notes()
    with open(out_path, "wb") as out:
        meta = LabConsumer(ring, control, i, out, plan, hold, install).run(stall_timeout, awaiting)
    with open(out_path + ".json", "w") as f:
        json.dump(meta, f)


def read_records(path):
    with open(path, "rb") as f:
        data = f.read()
    return [RECORD.unpack_from(data, k) for k in range(0, len(data), RECORD.size)]


def read_meta(path):
    with open(path + ".json") as f:
        return json.load(f)

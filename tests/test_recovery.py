"""Dead and stopped processes, with real processes and real SIGKILL/SIGSTOP:
dead producer recovery at every kill point, a live slow producer is never
skipped, consumer replacement and redelivery, ConsumerGone."""
import random
import signal
import struct
import threading
import time

import pytest

import shmring
from shmring import _core, layout
from shmring.testing.frames import frame_type, payload, split_type
from shmring.testing.processes import children, wait_until
from shmring.testing.rings import Raw

CAP = 8192


def send(p, producer, seq, n=100):
    p.send(payload(producer, seq, n), type=frame_type(producer, seq))


def parse(frame):
    """(producer, seq) of a self-checking frame whose bytes are intact."""
    ident = split_type(frame.type)
    assert ident is not None and bytes(frame) == payload(*ident, len(frame)), \
        "frame contents damaged"
    return ident


# The victim: opens a producer, sends `before` frames, then stops at a kill
# point and waits to be killed.  Raw kill points reproduce the exact memory
# state of a producer that died inside producer_claim (which Python cannot
# stop at in a release build), performed by the victim itself on its own slot.
VICTIM = """
from shmring.testing.frames import frame_type, payload
from shmring.testing.rings import Raw
name, point, before, size = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
ring = shmring.Ring.attach(name)
p = ring.producer()
for i in range(before):
    p.send(payload(9, i, 100), type=frame_type(9, i))
say("sent")
hear()
if point in ("busy", "mid_payload", "before_commit", "slow"):
    r = p.reserve(size)
    with memoryview(r) as mv:
        if point == "mid_payload":
            mv[:size // 2] = b"\\xab" * (size // 2)
        elif point in ("before_commit", "slow"):
            mv[:] = b"\\xcd" * size
    say("claimed")
    hear()
    r.commit()
    say("committed")
    hear()
else:
    raw = Raw(ring.path)
    slot = raw.slot_of_pid(os.getpid())
    tail = raw.u64(layout.SegmentHeader.tail)
    need = layout.record_size(size)
    room = raw.capacity - (tail & (raw.capacity - 1))
    total = need + room if room < need else need
    raw.put64(raw.slot(slot, layout.Slot.intent_pos), tail)   # producer_claim: intent first,
    raw.put64(raw.slot(slot, layout.Slot.intent_len), total)
    if point != "before_cas":
        raw.put64(layout.SegmentHeader.tail, tail + total)     # then the CAS of tail; no header
    say("claimed", tail, total)
    hear()
"""


def run_victim(spawn, name, point, before, size):
    return spawn(VICTIM.replace("sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])",
                                repr((name, point, before, size))[1:-1]))


KILL_POINTS = ["busy", "mid_payload", "before_commit", "after_cas", "before_cas"]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("start", [0, 2**32 - 1024, 2**64 - 1024],
                         ids=["start0", "near2^32", "near2^64"])
@pytest.mark.parametrize("point", KILL_POINTS)
def test_dead_producer_is_skipped_after_stall(name, point, start):
    """A producer SIGKILLed at each point of a claim blocks the consumer for
    about stall_timeout, then its record is skipped and counted; every frame
    of the other producer arrives, in order.  The start positions put the
    dead claim across the ring's wrap and across 2^32 and 2^64."""
    stall = 0.3
    with shmring.Ring.create(name, CAP, _start=start) as ring, children() as spawn:
        c = ring.consumer(stall_timeout=stall)
        live = ring.producer()
        for i in range(2):
            send(live, 1, i)
        victim = run_victim(spawn, name, point, 2, 3000)
        victim.expect("sent")
        victim.tell()
        victim.expect("claimed")
        victim.kill()
        for i in range(2, 7):
            send(live, 1, i)
        got = []
        stalls = []
        while len(got) < 9:
            t0 = time.monotonic()
            with c.recv(timeout=5) as f:
                got.append(parse(f))
            stalls.append(time.monotonic() - t0)
        order = [(1, 0), (1, 1)] + [(9, 0), (9, 1)] + [(1, i) for i in range(2, 7)]
        # The victim's two committed frames and the live ones: all, in ring order.
        assert sorted(got, key=lambda g: order.index(g)) == got
        assert sorted(got) == sorted(order)
        with pytest.raises(shmring.Empty):
            c.recv(timeout=0.05)
        st = ring.stats()
        if point == "before_cas":
            # Died before claiming anything: nothing to skip and no stall.
            assert st["frames_abandoned"] == 0
            assert max(stalls) < stall
        else:
            assert st["frames_abandoned"] == 1
            assert st["bytes_abandoned"] >= layout.record_size(3000)
            assert stall * 0.9 <= max(stalls) < stall + 1.0
        assert st["fill"] == 0
        # The ring keeps working, and the dead slot is reusable.
        with ring.producer() as p:
            send(p, 2, 0)
        with c.recv(timeout=1) as f:
            assert parse(f) == (2, 0)
        c.close()


@pytest.mark.timeout(30)
def test_default_stall_timeout_is_at_most_two_seconds(name):
    with shmring.Ring.create(name, CAP) as ring, children() as spawn:
        c = ring.consumer()
        victim = run_victim(spawn, name, "busy", 0, 100)
        victim.expect("sent")
        victim.tell()
        victim.expect("claimed")
        victim.kill()
        with ring.producer() as p:
            send(p, 1, 0)
        t0 = time.monotonic()
        with c.recv(timeout=5) as f:
            assert parse(f) == (1, 0)
        assert time.monotonic() - t0 <= 2.2
        assert ring.stats()["frames_abandoned"] == 1
        c.close()


@pytest.mark.timeout(30)
@pytest.mark.parametrize("point", ["slow", "after_cas"])
def test_stopped_producer_is_never_skipped(name, point):
    """A live producer that is SIGSTOPped inside a claim (header written, or
    only the tail claimed) holds the consumer for as long as it is stopped,
    far beyond stall_timeout; nothing behind it is delivered early or lost."""
    with shmring.Ring.create(name, CAP) as ring, children() as spawn:
        c = ring.consumer(stall_timeout=0.05)
        victim = run_victim(spawn, name, point, 0, 200)
        victim.expect("sent")
        victim.tell()
        line = victim.expect("claimed")
        victim.signal(signal.SIGSTOP)
        with ring.producer() as p:
            for i in range(3):
                send(p, 1, i)
        with pytest.raises(shmring.Empty):
            c.recv(timeout=0.8)     # 16 stall timeouts: still not skipped
        assert ring.stats()["frames_abandoned"] == 0
        victim.signal(signal.SIGCONT)
        if point == "slow":
            victim.tell()
            victim.expect("committed")
            with c.recv(timeout=5) as f:
                assert bytes(f) == b"\xcd" * 200
        else:
            # Finish the claim by hand, as producer_claim and publish would.
            pos = line.split()[1]
            pos = int(pos)
            raw = Raw(ring.path)
            try:
                slot = raw.slot_of_pid(victim.pid)
                R = layout.RecordHeader
                raw.put64(raw.record(pos, R.length), 200)
                raw.m[raw.record(pos, R.type):raw.record(pos, R.ndim)] = struct.pack("=IH", 7, slot)
                raw.m[raw.record(pos, R.ndim):raw.record(pos, R.dtype)] = b"\0\0"  # ndim, flags
                raw.m[raw.record(pos, R.size):raw.record(pos, R.size + 200)] = b"\xee" * 200
                raw.put64(raw.record(pos, R.commit), raw.tag(pos) | layout.COMMITTED)
                raw.put64(raw.slot(slot, layout.Slot.intent_len), 0)
            finally:
                raw.close()
            with c.recv(timeout=5) as f:
                assert (f.type, bytes(f)) == (7, b"\xee" * 200)
        for i in range(3):
            with c.recv(timeout=5) as f:
                assert parse(f) == (1, i)
        assert ring.stats()["frames_abandoned"] == 0
        c.close()


CONSUMER = """
name = sys.argv[1]
ring = shmring.Ring.attach(name)
c = ring.consumer()
say("open")
hear()
frames = [c.recv(timeout=5) for _ in range(4)]
say("got", *[bytes(f)[:8].hex() for f in frames])
frames[0].release()         # in order: head moves past it
frames[2].release()         # out of order: only marked released
say("released")
hear()
"""


@pytest.mark.timeout(30)
def test_dead_consumer_is_replaced_and_unreleased_frames_redelivered(name):
    """ConsumerExists only while the consumer lives (a SIGSTOPped one still
    counts); after SIGKILL a new consumer attaches and gets again exactly the
    frames the dead one received and never released, then the rest."""
    with shmring.Ring.create(name, CAP) as ring, children() as spawn:
        cons = spawn(CONSUMER.replace("sys.argv[1]", repr(name)))
        cons.expect("open")
        with pytest.raises(shmring.ConsumerExists):
            ring.consumer()
        with ring.producer() as p:
            for i in range(6):
                send(p, 1, i)
        cons.tell()
        cons.expect("got")
        cons.expect("released")
        cons.signal(signal.SIGSTOP)
        with pytest.raises(shmring.ConsumerExists):
            ring.consumer()
        cons.kill()
        c = ring.consumer(stall_timeout=0.1)
        got = []
        while True:
            try:
                with c.recv(timeout=0.2) as f:
                    got.append(parse(f)[1])
            except shmring.Empty:
                break
        assert got == [1, 3, 4, 5]
        assert ring.stats()["fill"] == 0
        c.close()


@pytest.mark.timeout(30)
def test_zombie_consumer_counts_as_dead(name):
    """A consumer killed but not yet reaped by its parent (a zombie) is gone."""
    with shmring.Ring.create(name, CAP) as ring, children() as spawn:
        cons = spawn(CONSUMER.replace("sys.argv[1]", repr(name)))
        cons.expect("open")
        cons.signal(signal.SIGKILL)         # not reaped: a zombie until close()
        raw = Raw(ring.path)
        try:
            wait_until(lambda: not _core.alive(raw.u64(layout.SegmentHeader.consumer)), 5,
                       "the consumer to die")
        finally:
            raw.close()
        ring.consumer().close()


BLOCKED_PRODUCER = """
name = sys.argv[1]
ring = shmring.Ring.attach(name)
p = ring.producer()
n = 0
try:
    while True:
        p.send(b"x" * 1000, timeout=0)
        n += 1
except shmring.Full:
    pass
say("full", n)
try:
    p.send(b"y" * 1000)            # no timeout: waits for space
    say("sent")
except shmring.ConsumerGone as e:
    say("gone", time.monotonic())
"""


@pytest.mark.timeout(30)
def test_producer_blocked_on_full_ring_gets_consumer_gone(name):
    with shmring.Ring.create(name, CAP) as ring, children() as spawn:
        cons = spawn(CONSUMER.replace("sys.argv[1]", repr(name)))
        cons.expect("open")
        prod = spawn(BLOCKED_PRODUCER.replace("sys.argv[1]", repr(name)))
        filled = int(prod.expect("full").split()[1])
        # The producer is asleep waiting for space once it has counted a wait.
        wait_until(lambda: ring.stats()["producer_waits"] > 0, 5, "the producer to block")
        killed = time.monotonic()
        cons.kill()
        line = prod.expect("gone", timeout=5)
        assert float(line.split()[1]) - killed < 1.0
        # A new consumer can take over and the ring drains cleanly.
        with ring.consumer() as c:
            n = 0
            while True:
                try:
                    c.recv_bytes(timeout=0.1)
                    n += 1
                except shmring.Empty:
                    break
            assert n == filled          # the blocked frame was never written


SPAMMER = """
from shmring.testing.frames import frame_type, payload
name, pid, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
ring = shmring.Ring.attach(name)
p = ring.producer()
say("ready")
seq = 0
while count < 0 or seq < count:
    n = 8 + (seq * 97) % 900
    body = payload(pid, seq, n)
    if seq % 2:
        p.send(body, type=frame_type(pid, seq))
    else:
        r = p.reserve(n, type=frame_type(pid, seq))
        with memoryview(r) as mv:
            mv[:] = body
        r.commit()
    seq += 1
say("done", seq)
hear()
"""


@pytest.mark.timeout(120)
def test_random_kills_lose_nothing_from_survivors(name):
    """Producers SIGKILLed at random moments while another keeps sending: the
    survivor's frames all arrive in order, each victim delivers a prefix of
    its own frames, and the consumer never wedges."""
    rng = random.Random()
    seed = rng.randrange(1 << 30)
    rng.seed(seed)
    kills = 6
    with shmring.Ring.create(name, 1 << 16) as ring, children() as spawn:
        c = ring.consumer(stall_timeout=0.2)
        survivor = spawn(SPAMMER.replace("sys.argv[1], int(sys.argv[2]), int(sys.argv[3])",
                                         f"{name!r}, 1, 3000"))
        survivor.expect("ready")
        errors = []

        def killer():
            try:
                for k in range(kills):
                    v = spawn(SPAMMER.replace(
                        "sys.argv[1], int(sys.argv[2]), int(sys.argv[3])",
                        f"{name!r}, {100 + k}, -1"))
                    v.expect("ready")
                    time.sleep(rng.uniform(0.0, 0.05))      # a random kill point
                    v.kill()
            except Exception as e:      # reported by the main thread
                errors.append(e)
        t = threading.Thread(target=killer)
        t.start()
        last = {}
        deadline = time.monotonic() + 90
        while last.get(1, -1) < 2999 or t.is_alive():
            assert time.monotonic() < deadline, f"consumer stuck (seed {seed})"
            try:
                with c.recv(timeout=0.5) as f:
                    pid, seq = parse(f)
            except shmring.Empty:
                continue
            assert seq == last.get(pid, -1) + 1, f"pid {pid} skipped to {seq} (seed {seed})"
            last[pid] = seq
        t.join()
        assert not errors, errors
        # Drain what the last victims committed before dying.
        while True:
            try:
                with c.recv(timeout=0.5) as f:
                    pid, seq = parse(f)
                    assert seq == last.get(pid, -1) + 1
                    last[pid] = seq
            except shmring.Empty:
                break
        assert last[1] == 2999
        st = ring.stats()
        assert st["frames_abandoned"] <= kills
        assert st["fill"] == 0, st
        c.close()


LEADER_EXITS = """
import ctypes, threading
ring = shmring.Ring.attach(NAME)

def worker():
    c = ring.consumer() if ROLE == "consumer" else None
    p = ring.producer()
    r = p.reserve(5)                    # a claim held by a live thread
    memoryview(r)[:] = b"alive"
    deadline = time.monotonic() + 10
    while open(f"/proc/{os.getpid()}/stat").read().rsplit(")", 1)[1].split()[0] != "Z":
        assert time.monotonic() < deadline, "the main thread did not exit"
        time.sleep(0.001)               # until the leader has exited
    say("ready")
    hear()
    r.commit()
    say("committed")
    hear()
    os._exit(0)

threading.Thread(target=worker).start()
ctypes.CDLL(None).pthread_exit(None)    # the main thread (the group leader) exits first
"""


@pytest.mark.timeout(60)
@pytest.mark.parametrize("role", ["producer", "consumer"])
def test_process_whose_main_thread_exited_is_alive(name, role):
    """/proc shows the leader of such a process as a zombie; its producers'
    claims must not be abandoned, nor its consumer replaced."""
    with shmring.Ring.create(name, 8192) as ring, children() as spawn:
        child = spawn(LEADER_EXITS.replace("NAME", repr(name)).replace("ROLE", repr(role)))
        child.expect("ready")
        with open(f"/proc/{child.pid}/stat") as f:
            assert f.read().rsplit(")", 1)[1].split()[0] == "Z"
        raw = Raw(ring.path)
        try:
            owner = raw.u64(layout.SegmentHeader.consumer if role == "consumer"
                            else raw.slot(raw.slot_of_pid(child.pid)))
        finally:
            raw.close()
        assert _core.alive(owner)
        if role == "consumer":
            with pytest.raises(shmring.ConsumerExists):
                ring.consumer()
        else:
            with ring.consumer(stall_timeout=0.2) as c:
                with pytest.raises(shmring.Empty):
                    c.recv(timeout=1.0)         # five stall timeouts: the claim is kept
                assert ring.stats()["frames_abandoned"] == 0
                child.tell()
                child.expect("committed")
                assert c.recv_bytes(timeout=5) == b"alive"
        child.tell()

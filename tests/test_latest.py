"""The latest frame and the drop policy: consumer.recv_latest() and
recv_latest_each(), and ring.producer(on_full="drop"), in one process and
across real producer processes.  Every frame a consumer skips, and every
frame a producer drops, is counted exactly."""
import math
import multiprocessing
import pickle
import threading

import pytest

import shmring
from shmring import layout
from shmring.testing.frames import frame_type, payload, split_type
from shmring.testing.processes import children, start_process, wait_until
from shmring.testing.rings import Raw


def sent(p, n, start=0, size=100):
    for i in range(start, start + n):
        p.send(i.to_bytes(4, "little") * (size // 4), type=i)


def counts(ring):
    s = ring.stats()
    return s["frames_received"], s["frames_skipped"], s["frames_held"]


# --- recv_latest -------------------------------------------------------------

def test_recv_latest_returns_the_newest_and_counts_the_older_as_skipped(ring):
    with ring.producer() as p, ring.consumer() as c:
        sent(p, 10)
        with c.recv_latest() as f:
            assert f.type == 9 and bytes(f) == (9).to_bytes(4, "little") * 25
            assert counts(ring) == (10, 9, 1) and c.skipped == 9
        assert ring.stats()["fill"] == 0             # the skipped frames' space is back
        with pytest.raises(shmring.Empty):
            c.recv_latest(timeout=0)
        sent(p, 1, start=10)
        with c.recv_latest(timeout=0) as f:          # one frame: nothing to skip
            assert f.type == 10
        assert counts(ring) == (11, 9, 0) and c.skipped == 9


def test_recv_latest_waits_for_a_frame(ring):
    with ring.consumer() as c:
        def later():
            wait_until(lambda: ring.stats()["consumer_waits"] > 0, 30, "the consumer to sleep")
            with ring.producer() as p:
                sent(p, 1)
        t = threading.Thread(target=later)
        t.start()
        with c.recv_latest(timeout=30) as f:
            assert f.type == 0
        t.join(30)
        with pytest.raises(shmring.Empty):
            c.recv_latest(timeout=0.05)


def test_recv_latest_leaves_frames_already_held_alone(ring):
    with ring.producer() as p, ring.consumer() as c:
        sent(p, 4)
        first = c.recv()
        with c.recv_latest() as newest:
            assert (first.type, newest.type) == (0, 3)
            assert counts(ring) == (4, 2, 2)
        assert bytes(first) == bytes(4) * 25          # still valid, still held
        assert ring.stats()["fill"] > 0
        first.release()
        assert ring.stats()["fill"] == 0


def test_recv_latest_stops_at_a_claim_still_being_written(ring):
    """Frames behind a pending claim are not reached: recv_latest returns
    the newest before it, and the rest once it commits."""
    with ring.producer() as a, ring.producer() as b, ring.consumer() as c:
        sent(a, 1, start=0)
        r = b.reserve(8, type=100)
        sent(a, 2, start=1)
        with c.recv_latest() as f:
            assert f.type == 0 and c.skipped == 0
        with pytest.raises(shmring.Empty):
            c.recv_latest(timeout=0)                 # nothing committed before the claim
        r.commit()
        with c.recv_latest() as f:
            assert f.type == 2
        assert counts(ring) == (4, 2, 0)


def test_recv_latest_skips_aborted_claims_without_counting_them(ring):
    with ring.producer() as p, ring.consumer() as c:
        sent(p, 1)
        p.reserve(50).abort()
        sent(p, 1, start=1)
        with c.recv_latest() as f:
            assert f.type == 1
        s = ring.stats()
        assert (s["frames_aborted"], s["frames_skipped"], s["frames_received"]) == (1, 1, 2)


def test_recv_latest_across_the_wrap_releases_space_for_producers(name):
    with shmring.Ring.create(name, 4096, _start=(1 << 64) - 1024) as ring, \
            ring.producer() as p, ring.consumer() as c:
        for lap in range(50):
            sent(p, 7, start=lap * 7, size=400)      # most of the ring each lap
            with c.recv_latest(timeout=0) as f:
                assert f.type == lap * 7 + 6
        s = ring.stats()
        assert (s["frames_skipped"], s["frames_received"], s["fill"]) == (300, 350, 0)


def test_recv_latest_and_the_seal(ring):
    with ring.producer() as p, ring.consumer() as c:
        sent(p, 3)
        ring.seal()
        with c.recv_latest() as f:                   # frames sent before the seal
            assert f.type == 2
        for call in (c.recv_latest, c.recv_latest_each):
            with pytest.raises(shmring.Sealed):
                call()
            with pytest.raises(shmring.Sealed):
                call(timeout=0)


@pytest.mark.timeout(60)
def test_recv_latest_waiting_on_an_empty_ring_ends_with_the_seal(ring):
    with ring.consumer() as c:
        def seal():
            wait_until(lambda: ring.stats()["consumer_waits"] > 0, 30, "the consumer to sleep")
            ring.seal()
        t = threading.Thread(target=seal)
        t.start()
        with pytest.raises(shmring.Sealed):
            c.recv_latest()
        t.join(30)


def test_a_claim_open_at_the_seal_is_the_latest_once_committed(ring):
    with ring.producer() as a, ring.producer() as b, ring.consumer() as c:
        sent(a, 1)
        r = b.reserve(4, type=50)
        ring.seal()
        with c.recv_latest() as f:
            assert f.type == 0
        r.commit()
        with c.recv_latest() as f:
            assert f.type == 50
        with pytest.raises(shmring.Sealed):
            c.recv_latest()


@pytest.mark.parametrize("timeout, error", [(-1, ValueError), (math.nan, ValueError),
                                            ("soon", ValueError), ([1], TypeError)])
def test_bad_timeouts_are_refused(ring, timeout, error):
    with ring.producer() as p, ring.consumer() as c:
        sent(p, 2)
        for call in (c.recv_latest, c.recv_latest_each):
            with pytest.raises(error):
                call(timeout)
        assert counts(ring) == (0, 0, 0)             # refused before taking anything


def test_a_closed_consumer_refuses(ring):
    c = ring.consumer()
    c.close()
    for call in (c.recv_latest, c.recv_latest_each):
        with pytest.raises(shmring.RingError, match="closed"):
            call(0)


@pytest.mark.timeout(60)
def test_recv_latest_gets_past_a_dead_producer(name):
    """A claim whose producer died stops the first call, as it stops recv();
    a later call waits out stall_timeout, skips the dead claim (abandoned,
    not skipped) and returns the newest frame behind it."""
    with shmring.Ring.create(name, 8192) as ring, ring.producer() as p, \
            ring.consumer(stall_timeout=0.2) as c, children() as spawn:
        sent(p, 1)
        victim = spawn(f"""
p = shmring.Ring.attach({name!r}).producer()
r = p.reserve(100)
say("claimed")
hear()
""")
        victim.expect("claimed")
        sent(p, 2, start=1)
        with c.recv_latest() as f:
            assert f.type == 0
        victim.kill()
        with c.recv_latest(timeout=30) as f:
            assert f.type == 2
        s = ring.stats()
        assert (s["frames_abandoned"], s["frames_skipped"], s["frames_received"]) == (1, 1, 3)


# --- recv_latest_each ---------------------------------------------------------

def test_recv_latest_each_returns_each_producers_newest_in_ring_order(ring):
    with ring.producer() as a, ring.producer() as b, ring.producer() as idle, \
            ring.consumer() as c:
        for i in range(3):
            sent(b, 1, start=100 + i)
            sent(a, 1, start=i)
        newest = c.recv_latest_each()
        assert list(newest) == [1, 0]                # b's newest was sent first
        assert [f.type for f in newest.values()] == [102, 2]
        assert all(f.producer == slot for slot, f in newest.items())
        assert counts(ring) == (6, 4, 2) and c.skipped == 4
        del newest                                   # dropping the dict releases them
        assert ring.stats()["fill"] == 0
        sent(a, 2, start=10)                         # only a sent since the last call
        newest = c.recv_latest_each(timeout=0)
        assert {slot: f.type for slot, f in newest.items()} == {0: 11}
        del newest
        with pytest.raises(shmring.Empty):
            c.recv_latest_each(timeout=0)
        assert idle.on_full == "wait"


def test_recv_latest_each_stops_at_a_pending_claim(ring):
    with ring.producer() as a, ring.producer() as b, ring.consumer() as c:
        sent(a, 2)
        r = b.reserve(8, type=100)
        sent(a, 1, start=2)
        assert {s: f.type for s, f in c.recv_latest_each().items()} == {0: 1}
        r.commit()
        assert {s: f.type for s, f in c.recv_latest_each().items()} == {1: 100, 0: 2}
        assert counts(ring) == (4, 1, 0)


def test_recv_latest_each_refuses_a_record_of_no_producer(ring):
    """A record whose slot no producer has is corruption, said clearly."""
    with ring.producer() as p, ring.consumer() as c:
        sent(p, 1)
        raw = Raw(ring.path)
        try:
            raw.put32(raw.record(0, layout.RecordHeader.slot),
                      raw.u32(raw.record(0, layout.RecordHeader.slot)) & 0xFFFF0000 | 0xFFFF)
        finally:
            raw.close()
        with pytest.raises(shmring.RingCorrupted):
            c.recv_latest_each(timeout=0)


# --- real processes -------------------------------------------------------------

PRODUCERS, FRAMES = 3, 1500


def camera(ring, producer, count):
    """Send count self-checking frames once every camera holds its slot (a
    camera that finished first would free its slot for one that started
    late, and recv_latest_each() keys by slot); the last to finish seals."""
    with ring.producer() as p:
        wait_until(lambda: ring.stats()["producers_opened"] == PRODUCERS, 60, "every camera")
        for seq in range(count):
            p.send(payload(producer, seq, 64 + seq % 700), type=frame_type(producer, seq),
                   timeout=60)
    s = ring.stats()
    if s["producers"] == 0 and s["producers_opened"] == PRODUCERS:
        ring.seal()


def each_backlog(ring, call):
    """call()'s results until the stream is over, each made once 8 frames are
    committed and not received (or the stream ended): frames to skip."""
    def ready():
        s = ring.stats()
        return s["sealed"] or s["frames_committed"] - s["frames_received"] >= 8
    while True:
        wait_until(ready, 60, "a backlog")
        try:
            yield call(timeout=60)
        except shmring.Sealed:
            return


def stream_over(ring, c, procs, returned):
    """The producers exited, and every frame they committed was returned
    (returned of them) or skipped; none is held."""
    for proc in procs:
        proc.join(60)
        assert proc.exitcode == 0
    s = ring.stats()
    assert s["frames_committed"] == PRODUCERS * FRAMES == returned + s["frames_skipped"]
    assert s["frames_skipped"] == c.skipped > 0
    assert (s["frames_held"], s["fill"]) == (0, 0)


def check(frame, last):
    """A frame intact, and newer than the last one returned from its producer."""
    producer, seq = split_type(frame.type)
    assert bytes(frame) == payload(producer, seq, len(frame)), "frame damaged"
    assert seq > last.get(producer, -1), f"producer {producer}: {seq} after {last[producer]}"
    last[producer] = seq


@pytest.mark.timeout(180)
@pytest.mark.parametrize("context", ["fork", "spawn"])
def test_recv_latest_under_several_producer_processes(name, context):
    """Never an older frame than the last from the same producer, and every
    committed frame is returned or skipped, exactly once: counted while the
    consumer holds the frame it returned last."""
    with shmring.Ring.create(name, 1 << 16, producers=8) as ring, ring.consumer() as c:
        procs = [start_process(camera, ring, i, FRAMES, context=context)
                 for i in range(PRODUCERS)]
        last, returned, held = {}, 0, None
        for frame in each_backlog(ring, c.recv_latest):
            returned += 1
            check(frame, last)
            s = ring.stats()
            assert s["frames_received"] == returned + s["frames_skipped"]
            assert s["frames_held"] == c.held == (1 if held is None else 2)
            if held is not None:
                held.release()
            held = frame
        held.release()
        stream_over(ring, c, procs, returned)
        assert max(last.values()) == FRAMES - 1     # the stream's last frame is never skipped


@pytest.mark.timeout(180)
def test_recv_latest_each_under_several_producer_processes(name):
    with shmring.Ring.create(name, 1 << 16, producers=8) as ring, ring.consumer() as c:
        procs = [start_process(camera, ring, i, FRAMES) for i in range(PRODUCERS)]
        last, returned = {}, 0
        for newest in each_backlog(ring, c.recv_latest_each):
            producers = [split_type(f.type)[0] for f in newest.values()]
            assert len(set(producers)) == len(producers)  # one frame per producer
            for slot, frame in newest.items():
                assert frame.producer == slot
                check(frame, last)
            returned += len(newest)
            assert ring.stats()["frames_received"] == returned + c.skipped
            del newest, frame
        stream_over(ring, c, procs, returned)
        assert last == {i: FRAMES - 1 for i in range(PRODUCERS)}  # nor any producer's last


# --- the drop policy --------------------------------------------------------------

def test_a_dropping_producer_drops_instead_of_waiting(ring):
    with ring.producer(on_full="drop") as p, ring.consumer() as c:
        assert p.on_full == "drop" and "on_full='drop'" in repr(p)
        went = 0
        while p.send(b"x" * 1000):
            went += 1
        assert p.send_array(bytearray(1000)) is False
        assert p.reserve(1000) is None and p.reserve_array((10, 100), "u1") is None
        assert p.send_many([b"y" * 1000] * 3) == 0  # each dropped, and it goes on
        s = ring.stats()
        assert (s["frames_committed"], s["frames_dropped"]) == (went, 7)
        assert s["producer_waits"] == 0               # it never slept
        with c.recv() as f:                           # room for one
            assert bytes(f) == b"x" * 1000
        assert p.send_many([b"z" * 1000] * 3) == 1
        assert ring.stats()["frames_dropped"] == 9


def test_a_dropping_producer_with_a_timeout_waits_that_long_first(ring):
    with ring.producer(on_full="drop") as p, ring.consumer():
        while p.send(b"x" * 1000):
            pass
        assert p.send(b"x" * 1000, timeout=0.05) is False
        s = ring.stats()
        assert s["frames_dropped"] == 2 and s["producer_waits"] >= 1


def test_a_waiting_producer_keeps_full(ring):
    """on_full="wait" (the default) raises Full, counts no drop, and its
    send() returns True."""
    with ring.producer() as p, ring.consumer():
        assert p.on_full == "wait"
        assert p.send(b"x") is True and p.send_array(bytearray(3)) is True
        with pytest.raises(shmring.Full):
            while True:
                p.send(b"x" * 1000, timeout=0)
        with pytest.raises(shmring.Full):
            p.reserve(1000, timeout=0)
        assert ring.stats()["frames_dropped"] == 0


def test_a_dropping_producer_still_raises_what_is_not_a_full_ring(ring):
    with ring.producer(on_full="drop") as p:
        with pytest.raises(shmring.FrameTooLarge):
            p.send(bytes(ring.max_frame + 1))
        ring.seal()
        with pytest.raises(shmring.Sealed):
            p.send(b"x")
        with pytest.raises(shmring.Sealed):
            p.reserve(1)
        assert ring.stats()["frames_dropped"] == 0


@pytest.mark.parametrize("on_full", ["block", "DROP", None, 1])
def test_bad_on_full_is_refused(ring, on_full):
    with pytest.raises(ValueError, match="on_full"):
        ring.producer(on_full=on_full)
    assert ring.stats()["producers_opened"] == 0


def test_a_dropping_producer_pickles_as_one(ring):
    with ring.producer(on_full="drop") as p:
        q = pickle.loads(pickle.dumps(p))
        try:
            assert q.on_full == "drop"
        finally:
            q.close()


def drop_camera(ring, producer, count, go, report):
    """Send count frames as soon as go is set, dropping those without room;
    report which went in.  The last producer to finish seals."""
    went = []
    with ring.producer(on_full="drop") as p:
        go.wait(60)
        for seq in range(count):
            if p.send(payload(producer, seq, 500), type=frame_type(producer, seq)):
                went.append(seq)
    report.put((producer, went))
    s = ring.stats()
    if s["producers"] == 0 and s["producers_opened"] == PRODUCERS:
        ring.seal()


@pytest.mark.timeout(120)
def test_drops_are_counted_exactly_under_several_producer_processes(name):
    """What send() said went in is what the consumer gets, in order, and
    each slot counts the rest as dropped."""
    ctx = multiprocessing.get_context("fork")
    go, report = ctx.Event(), ctx.SimpleQueue()
    with shmring.Ring.create(name, 1 << 14, producers=4) as ring, ring.consumer() as c:
        procs = [start_process(drop_camera, ring, i, 300, go, report) for i in range(PRODUCERS)]
        wait_until(lambda: ring.stats()["producers_opened"] == PRODUCERS, 60, "the producers")
        go.set()
        wait_until(lambda: ring.stats()["frames_dropped"] > 0, 60, "a drop")
        got = {}
        for frame in c:                              # until the last producer seals
            producer, seq = split_type(frame.type)
            assert bytes(frame) == payload(producer, seq, 500)
            got.setdefault(producer, []).append(seq)
            frame.release()
        went = dict(report.get() for _ in procs)
        for proc in procs:
            proc.join(60)
            assert proc.exitcode == 0
        assert got == {i: w for i, w in went.items() if w}
        raw = Raw(ring.path)
        try:
            per_slot = [(raw.u64(raw.slot(i, layout.Slot.frames)),
                         raw.u64(raw.slot(i, layout.Slot.dropped))) for i in range(4)]
        finally:
            raw.close()
        assert sorted(per_slot) == sorted([(0, 0)] + [(len(w), 300 - len(w))
                                                      for w in went.values()])
        s = ring.stats()
        assert s["frames_dropped"] == PRODUCERS * 300 - s["frames_committed"] > 0

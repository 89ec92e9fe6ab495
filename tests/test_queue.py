"""shmring.Queue beyond parity: real producer processes with nested
payloads, one copy in and one (or none) out, zero-copy objects and the
space they hold, bad input, corrupted records, killed consumers and
creators, and the segment's lifecycle."""
import contextlib
import gc
import multiprocessing
import os
import pickle
import queue
import signal
import struct
import time
import tracemalloc

import numpy as np
import pytest
from _queue_objects import (
    Point,
    Unpicklable,
    assert_same,
    collect_queues,  # noqa: F401 - autouse fixture
    create_and_wait,
    hold_zero_copy,
    payload,
    produce,
    put_values,
    try_get,
)
from hypothesis import given
from hypothesis import strategies as st

import shmring
from shmring import codec, segments
from shmring.errors import FrameTooLarge, RingCorrupted
from shmring.testing.processes import die_with_parent

spawn = multiprocessing.get_context("spawn")
fork = multiprocessing.get_context("fork")


def arrays_in(obj):
    if isinstance(obj, np.ndarray):
        yield obj
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from arrays_in(v)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            yield from arrays_in(v)
    elif isinstance(obj, Point):
        yield from arrays_in((obj.x, obj.y))


def sem_path(q):
    return f"/dev/shm/sem.shmring.{q.name}"


# --- many producers, real processes -------------------------------------------

@pytest.mark.parametrize("ctx", [fork, spawn], ids=["fork", "spawn"])
@pytest.mark.parametrize("zero_copy", [False, True], ids=["copy", "zero_copy"])
def test_many_producers_nested_payloads(ctx, zero_copy):
    producers, count = 3, 40
    q = shmring.Queue(capacity=1 << 21)             # wraps many times; room for 3 or more
    procs = [ctx.Process(target=produce, args=(q, i, count, 8000)) for i in range(producers)]
    for p in procs:
        p.start()
    next_seq = dict.fromkeys(range(producers), 0)
    kept = []
    for _ in range(producers * count):
        got = q.get(timeout=60, zero_copy=zero_copy)
        who, seq = got["who"]
        assert seq == next_seq[who], f"producer {who}: got {seq}, expected {next_seq[who]}"
        next_seq[who] += 1
        assert_same(got, payload(who, seq, 8000))
        arrays = list(arrays_in(got))
        assert len(arrays) == 8
        if zero_copy:
            assert not any(a.flags.writeable for a in arrays)
            kept.append(got)
            if len(kept) > 2:                   # held and released out of order, none
                del kept[seq % 2]               # for ever (a held frame pins the ring)
            assert q.stats()["frames_held"] == len(kept)
        else:
            assert all(a.flags.writeable for a in arrays)
            assert q.stats()["frames_held"] == 0
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    assert next_seq == dict.fromkeys(range(producers), count)
    assert q.stats()["tail"] > 5 * q.capacity
    del kept[:], got, arrays
    assert q.stats()["frames_held"] == 0 and q.qsize() == 0


# --- one copy in, one copy out, or none -------------------------------------------

def traced_peak(fn):
    """Bytes allocated at the peak of fn() above what was allocated before."""
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        result = fn()
        return tracemalloc.get_traced_memory()[1] - before, result
    finally:
        tracemalloc.stop()


def test_put_copies_each_buffer_once_with_no_temporary():
    """No allocation of an object's size happens in put(): the bytes go
    from the producer's arrays straight into the ring.  The measurement does
    see such a temporary: pickling a non-contiguous array the usual way
    makes one."""
    a = np.arange(1 << 20, dtype=np.uint32).reshape(1024, 1024)      # 4 MiB
    strided = a[:, ::2]
    peak, _ = traced_peak(lambda: pickle.dumps(strided, protocol=5, buffer_callback=[].append))
    assert peak >= strided.nbytes                    # numpy's own reduction: a temporary
    q = shmring.Queue(capacity=1 << 25)
    for obj in (a, strided, a.T, np.asfortranarray(a), bytes(a), bytearray(a), {"f": [a, 1.5]}):
        peak, _ = traced_peak(lambda obj=obj: q.put(obj))
        assert peak < 256 << 10, f"put of {type(obj)} allocated {peak} bytes"
        assert_same(q.get(timeout=10), obj)


def test_get_copies_once_and_zero_copy_not_at_all():
    a = np.arange(1 << 20, dtype=np.uint32)
    q = shmring.Queue(capacity=1 << 24)
    q.put({"a": a, "t": 0.5})
    peak, got = traced_peak(lambda: q.get(timeout=10))
    assert a.nbytes <= peak < a.nbytes + (256 << 10)
    assert_same(got, {"a": a, "t": 0.5})
    q.put({"a": a, "t": 0.5})
    peak, got = traced_peak(lambda: q.get(timeout=10, zero_copy=True))
    assert peak < 256 << 10
    assert_same(got, {"a": a, "t": 0.5})


# --- what get() returns -------------------------------------------------------------

def test_default_get_is_independent_of_the_ring():
    q = shmring.Queue(capacity=1 << 20)
    ro = np.arange(10.0)
    ro.flags.writeable = False
    q.put({"ro": ro, "strided": np.arange(20)[::2], "f": np.ones((3, 4), order="F")})
    got = q.get(timeout=10)
    assert q.stats()["frames_held"] == 0
    for a in got.values():
        assert a.flags.writeable and a.flags.aligned
        a[...] = 0                       # theirs to change
    assert got["f"].flags.f_contiguous
    for _ in range(100):                 # the ring's space goes round, got stays
        q.put(np.full(1000, 7))
        q.get(timeout=10)
    assert not any(a.any() for a in got.values())


def test_zero_copy_views_hold_their_frame_until_the_last_goes():
    q = shmring.Queue(capacity=1 << 16)
    q.put({"a": np.arange(100), "b": np.arange(5.0)})
    got = q.get(timeout=10, zero_copy=True)
    a, b = got["a"], got["b"]
    assert not a.flags.writeable and not b.flags.writeable
    assert q.stats()["frames_held"] == 1
    del got
    view = memoryview(b)
    del b
    assert q.stats()["frames_held"] == 1
    del a
    assert q.stats()["frames_held"] == 1
    fill = q.stats()["fill"]
    del view
    assert q.stats()["frames_held"] == 0
    assert q.stats()["fill"] < fill


def test_zero_copy_views_are_aligned_and_hold_nothing_without_buffers():
    q = shmring.Queue(capacity=1 << 20)
    dtypes = ["u1", "<i2", "<f4", "<f8", "<c16", "<M8[ns]"]
    q.put([b"odd-length prefix", *(np.ones(3 + i, dt) for i, dt in enumerate(dtypes))])
    got = q.get(timeout=10, zero_copy=True)
    for arr in got[1:]:
        assert arr.flags.aligned and arr.ctypes.data % 64 == 0
    del got, arr
    q.put((1, 2, "no buffers"))
    assert q.get(timeout=10, zero_copy=True) == (1, 2, "no buffers")
    assert q.stats()["frames_held"] == 0


class OwnBuffer:
    """A non-numpy object that pickles its data out of band itself."""

    def __init__(self, data):
        self.data = data

    def __reduce_ex__(self, protocol):
        return OwnBuffer, (pickle.PickleBuffer(self.data),)


def test_other_protocol_5_buffers():
    q = shmring.Queue(capacity=1 << 20)
    q.put(OwnBuffer(bytearray(b"own data" * 1000)))
    got = q.get(timeout=10)
    assert bytes(got.data) == b"own data" * 1000
    memoryview(got.data)[:3] = b"OWN"               # a private, writable copy
    q.put(OwnBuffer(bytearray(b"own data")))
    got = q.get(timeout=10, zero_copy=True)
    assert bytes(got.data) == b"own data" and memoryview(got.data).readonly


# --- bad input leaves the ring as it was ---------------------------------------------

def ring_state(q):
    s = q.stats()
    return s["tail"], s["frames_committed"], s["frames_aborted"]


def test_pickling_failure_leaves_the_ring_unchanged():
    q = shmring.Queue(1, capacity=1 << 20)
    before = ring_state(q)
    with pytest.raises(TypeError, match="refuses to pickle"):
        q.put([np.zeros(100_000), b"x" * 100_000, Unpicklable()])
    with pytest.raises((pickle.PicklingError, AttributeError)):
        q.put({"f": lambda: 0})
    assert ring_state(q) == before and q.qsize() == 0 and not q.full()
    q.put_nowait("next")                 # the permit was given back
    assert q.get(timeout=10) == "next"


def test_oversize_object_raises_value_error_and_changes_nothing():
    q = shmring.Queue(1, capacity=1 << 16)
    before = ring_state(q)
    with pytest.raises(ValueError) as info:
        q.put({"a": np.zeros(40_000, np.uint8)})
    assert isinstance(info.value, FrameTooLarge)
    assert "needs a 40" in str(info.value) and "capacity=131072 or more" in str(info.value)
    assert ring_state(q) == before
    q.put_nowait(np.zeros(30_000, np.uint8))        # 30 KB fits, and the permit is free
    assert q.get(timeout=10).nbytes == 30_000


def test_full_ring_times_out_and_gives_the_permit_back():
    q = shmring.Queue(5, capacity=1 << 16)
    block = np.zeros(30_000, np.uint8)   # two fit in the ring
    q.put(block)
    q.put(block)
    t0 = time.monotonic()
    with pytest.raises(queue.Full):
        q.put(block, timeout=0.2)        # maxsize has room, the ring has not
    assert time.monotonic() - t0 >= 0.19
    assert q.qsize() == 2 and not q.full()
    q.get(timeout=10)
    q.get(timeout=10)
    q.put(block, timeout=10)
    for _ in range(4):                   # 5 permits: 1 in use, 4 more
        assert not q.full()
        q.put(1, timeout=10)
    assert q.full()


# --- corrupted records ---------------------------------------------------------------

def record(count, stream_len, entries, tail=b"", magic=codec.MAGIC):
    head = struct.pack("<4sIQ", magic, count, stream_len)
    return head + b"".join(struct.pack("<QQ", *e) for e in entries) + tail


STREAM = pickle.dumps(None, protocol=5)
BAD = [
    (codec.BUFFERS, b"short", "shorter than its header"),
    (codec.BUFFERS, record(0, len(STREAM), [], STREAM, magic=b"XQ\x01\x00"), "bad magic"),
    (codec.BUFFERS, record(1 << 31, 0, [], b"\0" * 64), "do not fit"),
    (codec.BUFFERS, record(0, 1 << 40, []), "do not fit"),
    (codec.BUFFERS, record(1, len(STREAM), [(1 << 20, 8)], STREAM), "outside the record"),
    (codec.BUFFERS, record(1, len(STREAM), [(65, 8)], STREAM + b"\0" * 200), "offset 65"),
    (codec.BUFFERS, record(1, len(STREAM), [(0, 8)], STREAM + b"\0" * 200), "before the end"),
    (codec.BUFFERS, record(1, len(STREAM), [(64, 1 << 62)], STREAM + b"\0" * 200), "outside"),
    (codec.BUFFERS, record(2, len(STREAM), [(64, 64), (64, 8)], STREAM + b"\0" * 200),
     "before the end"),
    (codec.STREAM + 0x100, STREAM, "format version 2"),
    (7, STREAM, "frame type 0x7 is not a shmring.Queue record"),
]


@pytest.mark.parametrize("zero_copy", [False, True], ids=["copy", "zero_copy"])
@pytest.mark.parametrize("kind,data,message", BAD, ids=[m for _, _, m in BAD])
def test_corrupted_record_raises_and_the_queue_goes_on(kind, data, message, zero_copy):
    q = shmring.Queue(capacity=1 << 16)
    with shmring.Ring.attach(q.name) as ring, ring.producer() as p:
        p.send(data, type=kind)
    q.put("good")
    with pytest.raises(RingCorrupted, match=message):
        q.get(timeout=10, zero_copy=zero_copy)
    assert q.get(timeout=10, zero_copy=zero_copy) == "good"
    assert q.stats()["frames_held"] == 0


@given(count=st.integers(0, 6), stream_len=st.integers(0, 300),
       entries=st.lists(st.tuples(st.integers(0, 700), st.integers(0, (1 << 64) - 1)),
                        max_size=6),
       tail=st.binary(max_size=600), zero_copy=st.booleans())
def test_random_tables_never_read_out_of_bounds(count, stream_len, entries, tail, zero_copy):
    """Any header and table: an error or an object, never a crash, and the
    queue goes on.  (The stream is a valid pickle of None, so that random
    bytes are never unpickled.)"""
    q = shmring.Queue(capacity=1 << 16)
    with shmring.Ring.attach(q.name) as ring, ring.producer() as p:
        p.send(record(count, stream_len, entries, STREAM + tail), type=codec.BUFFERS)
    q.put("good")
    with contextlib.suppress(RingCorrupted, pickle.UnpicklingError, EOFError):
        assert q.get(timeout=10, zero_copy=zero_copy) is None
    assert q.get(timeout=10) == "good"


# --- processes that die ----------------------------------------------------------------

@pytest.mark.parametrize("ctx", [fork, spawn], ids=["fork", "spawn"])
def test_killed_consumer_loses_nothing_it_had_not_released(ctx):
    q = shmring.Queue(capacity=1 << 20)
    for i in range(5):
        q.put({"i": i, "a": np.full(1000, i)})
    ready = ctx.Event()
    child = ctx.Process(target=hold_zero_copy, args=(q, 2, 2, ready))
    child.start()
    assert ready.wait(60)
    assert q.qsize() == 1
    child.kill()
    child.join(30)
    # 0 and 1 were got and released; 2 and 3 were held as zero-copy objects.
    assert [q.get(timeout=30)["i"] for _ in range(3)] == [2, 3, 4]
    with pytest.raises(queue.Empty):
        q.get(timeout=0.1)


def test_a_forked_child_cannot_take_over_a_live_consumer():
    q = shmring.Queue()
    q.put(1)
    assert q.get(timeout=10) == 1
    out = fork.Queue()
    child = fork.Process(target=try_get, args=(q, out))
    child.start()
    kind, message = out.get(timeout=60)
    child.join(30)
    assert kind == "ConsumerExists" and f"process {os.getpid()} is it" in message


def test_close_keeps_the_consumer_until_zero_copy_objects_go():
    q = shmring.Queue(capacity=1 << 16)
    q.put(np.arange(10))
    q.put("second")
    held = q.get(timeout=10, zero_copy=True)
    q.close()
    other = pickle.loads(pickle.dumps(q))      # another handle, as another process would have
    with pytest.raises(shmring.ConsumerExists):
        other.get(timeout=0)
    assert held[3] == 3                         # still the same memory, still readable
    del held
    assert other.get(timeout=10) == "second"   # the first was got: it is not delivered again


# --- the segment's lifecycle ---------------------------------------------------------

def test_the_creator_removes_the_names_when_its_queue_goes():
    q = shmring.Queue(3)
    handle = pickle.loads(pickle.dumps(q))
    path, sem = q._ring.path, sem_path(q)
    assert os.path.exists(path) and os.path.exists(sem)
    del q
    gc.collect()
    assert not os.path.exists(path) and not os.path.exists(sem)
    handle.put("still mapped")                 # users keep their mapping
    assert handle.get(timeout=10) == "still mapped"
    with pytest.raises(FileNotFoundError):
        pickle.loads(pickle.dumps(handle))      # but nobody new can attach


def test_a_forked_child_does_not_remove_the_names():
    q = shmring.Queue(3)
    path = q._ring.path
    pid = os.fork()
    if pid == 0:                                # the child drops its copy and exits
        die_with_parent()
        del q
        gc.collect()
        os._exit(0)
    deadline = time.monotonic() + 30
    while os.waitpid(pid, os.WNOHANG) == (0, 0):
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert os.path.exists(path) and os.path.exists(sem_path(q))
    q.put(1)
    assert q.get(timeout=10) == 1


def test_killed_creator_leaves_a_stale_segment_that_rm_removes(name):
    ready, paths = spawn.Event(), spawn.Queue()
    child = spawn.Process(target=create_and_wait, args=(name, ready, paths))
    child.start()
    assert ready.wait(60)
    path = paths.get(timeout=30)
    os.kill(child.pid, signal.SIGKILL)
    child.join(30)
    (info,) = [r for r in segments.list_rings() if r["name"] == name]
    assert info["stale"] and not info["creator_alive"]
    assert os.path.exists(f"/dev/shm/sem.shmring.{name}")
    segments.remove_ring(name)
    assert not os.path.exists(path)
    q = shmring.Queue(2, name=name)             # the same name, and the old semaphore is replaced
    q.put(1)
    q.put(2)
    with pytest.raises(queue.Full):
        q.put_nowait(3)
    assert [q.get(timeout=10), q.get(timeout=10)] == [1, 2]


def test_stats_and_repr():
    q = shmring.Queue(4, capacity=5000, name=None)
    assert q.capacity == 8192                  # rounded up to a power of two
    q.put(1)
    s = q.stats()
    assert (s["qsize"], s["maxsize"], s["frames_held"], s["frames_committed"]) == (1, 4, 0, 1)
    assert repr(q) == f"<shmring.Queue {q.name!r} capacity=8192 maxsize=4>"
    with pytest.raises(ValueError, match="at least 4096"):
        shmring.Queue(capacity=100)


# --- get_latest ----------------------------------------------------------------------

@pytest.mark.parametrize("zero_copy", [False, True], ids=["copy", "zero_copy"])
def test_get_latest_returns_the_newest_and_discards_the_rest(zero_copy):
    q = shmring.Queue()
    for i in range(5):
        q.put({"reading": i, "frame": np.full((100, 100), i, np.uint16)})
    got = q.get_latest(timeout=10, zero_copy=zero_copy)
    assert got["reading"] == 4 and (got["frame"] == 4).all()
    assert got["frame"].flags.writeable is not zero_copy
    s = q.stats()
    assert (s["frames_skipped"], s["qsize"], s["frames_held"]) == (4, 0, int(zero_copy))
    del got
    with pytest.raises(queue.Empty):
        q.get_latest(timeout=0.05)
    with pytest.raises(queue.Empty):
        q.get_latest(False)
    q.put("after")
    assert q.get_latest(False) == "after" and q.stats()["frames_skipped"] == 4


def test_get_latest_gives_back_a_place_for_each_object_it_discards():
    q = shmring.Queue(3)
    for i in range(3):
        q.put(i)
    assert q.full()
    assert q.get_latest(timeout=10) == 2
    for i in range(3):                   # all three places are free again
        q.put_nowait(10 + i)
    with pytest.raises(queue.Full):
        q.put_nowait(13)
    assert [q.get(timeout=10) for _ in range(3)] == [10, 11, 12]


def test_get_latest_from_a_producer_process_never_goes_back():
    q = shmring.Queue()
    proc = fork.Process(target=put_values, args=(q, range(2000)))
    proc.start()
    got = [q.get_latest(timeout=30)]
    while got[-1] != 1999:
        got.append(q.get_latest(timeout=30))
    proc.join(30)
    assert proc.exitcode == 0
    assert got == sorted(set(got))       # each newer than the one before
    s = q.stats()
    assert s["frames_committed"] == 2000 == len(got) + s["frames_skipped"] and s["qsize"] == 0

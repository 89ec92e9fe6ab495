"""shmring.Queue against multiprocessing.Queue: one list of behaviour cases,
run against both.  Where they differ by design, a test_difference_* test
names the difference and checks each side of it (docs/queue.md has the
table)."""
import multiprocessing
import pickle
import queue
import threading
import time

import numpy as np
import pytest
from _queue_objects import (
    Point,
    Unpicklable,
    assert_same,
    collect_queues,  # noqa: F401 - autouse fixture
    pool_init,
    pool_task,
    put_one,
    put_values,
    try_get,
)

import shmring

CONTEXTS = ["fork", "spawn", "forkserver"]


def make_mp(maxsize=0, ctx=multiprocessing):
    """An mp.Queue must come from the context of the processes that use it
    (Python 3.11 passes a fork context's semaphore to a spawned process as a
    bare pointer); a shmring.Queue works with any."""
    return ctx.Queue(maxsize)


def make_shmring(maxsize=0, ctx=None):
    return shmring.Queue(maxsize, capacity=1 << 20)


IMPLS = {"mp": make_mp, "shmring": make_shmring}


@pytest.fixture(params=list(IMPLS))
def make(request):
    """Makes queues of one implementation; closes them after the test."""
    made = []

    def make(maxsize=0, ctx=multiprocessing):
        q = IMPLS[request.param](maxsize, ctx)
        made.append(q)
        return q

    yield make
    for q in made:
        q.close()
        q.join_thread()


def eventually(condition, timeout=10.0):
    """Wait for condition() with a deadline (mp.Queue's feeder thread writes
    after put() returns)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met within the deadline"
        time.sleep(0.001)


def raises_exactly(exc_type, fn, *args, **kwargs):
    with pytest.raises(exc_type) as info:
        fn(*args, **kwargs)
    assert type(info.value) is exc_type
    return info.value


def _fail_on_load():
    raise RuntimeError("this object refuses to unpickle")


class FailsOnLoad:
    def __reduce__(self):
        return _fail_on_load, ()


# --- the shared cases ---------------------------------------------------------

def case_objects_round_trip(make):
    q = make()
    objects = [None, 1, -2.5, "text", b"bytes", bytearray(b"ba"), [1, (2, 3)], {"k": {"v": 1}},
               np.arange(6).reshape(2, 3), np.float32(2.5), Point(1, [2]), b"x" * 100_000]
    for obj in objects:
        q.put(obj)
    for obj in objects:
        assert_same(q.get(timeout=10), obj)


def case_order_from_one_process(make):
    q = make()
    for i in range(300):
        q.put(i)
    assert [q.get(timeout=10) for _ in range(300)] == list(range(300))


def case_get_nowait_on_empty_raises_queue_empty(make):
    q = make()
    raises_exactly(queue.Empty, q.get_nowait)
    raises_exactly(queue.Empty, q.get, False)


def case_get_without_block_ignores_timeout(make):
    q = make()
    t0 = time.monotonic()
    raises_exactly(queue.Empty, q.get, False, 30)
    assert time.monotonic() - t0 < 10


def case_get_timeout_waits_then_raises(make):
    q = make()
    t0 = time.monotonic()
    raises_exactly(queue.Empty, q.get, timeout=0.2)
    assert time.monotonic() - t0 >= 0.19


def case_negative_timeout_means_no_wait(make):
    q = make(1)
    t0 = time.monotonic()
    raises_exactly(queue.Empty, q.get, timeout=-1)
    q.put("a", timeout=-1)
    raises_exactly(queue.Full, q.put, "b", timeout=-1)
    assert time.monotonic() - t0 < 10
    assert q.get(timeout=10) == "a"


def case_maxsize_bounds_puts(make):
    q = make(2)
    q.put(1)
    q.put(2)
    assert q.full()
    raises_exactly(queue.Full, q.put_nowait, 3)
    raises_exactly(queue.Full, q.put, 3, False)
    t0 = time.monotonic()
    raises_exactly(queue.Full, q.put, 3, timeout=0.2)
    assert time.monotonic() - t0 >= 0.19
    assert q.get(timeout=10) == 1
    assert not q.full()
    q.put_nowait(3)
    assert [q.get(timeout=10), q.get(timeout=10)] == [2, 3]


def case_put_waits_for_a_get_on_a_full_queue(make):
    q = make(1)
    q.put("first")
    got = []
    taker = threading.Timer(0.1, lambda: got.append(q.get(timeout=10)))
    taker.start()
    q.put("second", timeout=30)     # returns once the timer thread took "first"
    taker.join(30)
    assert got == ["first"] and q.get(timeout=10) == "second"


def case_without_maxsize_never_full(make):
    q = make()
    for i in range(50):
        q.put(i)
    assert not q.full()
    for _ in range(50):
        q.get(timeout=10)


def case_qsize_and_empty(make):
    q = make()
    assert q.empty() and q.qsize() == 0
    for i in range(3):
        q.put(i)
    eventually(lambda: not q.empty())
    assert q.qsize() == 3
    for _ in range(3):
        q.get(timeout=10)
    assert q.qsize() == 0
    eventually(q.empty)


def case_closed_queue_refuses_put_and_get(make):
    q = make()
    q.close()
    raises_exactly(ValueError, q.put, 1)
    raises_exactly(ValueError, q.get)
    raises_exactly(ValueError, q.get_nowait)
    q.join_thread()


def case_join_thread_needs_close(make):
    q = make()
    q.put(1)
    raises_exactly(AssertionError, q.join_thread)
    q.cancel_join_thread()
    assert q.get(timeout=10) == 1


def case_threads_put_concurrently(make):
    q = make()
    threads = [threading.Thread(target=lambda t=t: [q.put((t, i)) for i in range(200)])
               for t in range(4)]
    for t in threads:
        t.start()
    got = [q.get(timeout=10) for _ in range(800)]
    for t in threads:
        t.join(30)
    for t in range(4):
        assert [i for who, i in got if who == t] == list(range(200))


def case_threads_get_concurrently(make):
    q = make()
    got, lock = [], threading.Lock()

    def take():
        for _ in range(100):
            item = q.get(timeout=30)
            with lock:
                got.append(item)

    threads = [threading.Thread(target=take) for _ in range(3)]
    for t in threads:
        t.start()
    for i in range(300):
        q.put(i)
    for t in threads:
        t.join(60)
    assert sorted(got) == list(range(300))


def case_blocked_get_wakes_on_put(make):
    q = make()
    threading.Timer(0.1, q.put, ("late",)).start()
    assert q.get(timeout=30) == "late"


def case_unpickling_error_raises_from_get_and_queue_goes_on(make):
    q = make()
    q.put(FailsOnLoad())
    q.put("next")
    with pytest.raises(RuntimeError, match="refuses to unpickle"):
        q.get(timeout=10)
    assert q.get(timeout=10) == "next"


CASES = [v for k, v in sorted(globals().items()) if k.startswith("case_")]


@pytest.mark.parametrize("case", CASES, ids=[c.__name__[5:] for c in CASES])
def test_same_behaviour(make, case):
    case(make)


@pytest.mark.parametrize("method", CONTEXTS)
def test_producers_under_each_start_method(make, method):
    ctx = multiprocessing.get_context(method)
    q = make(4, ctx)
    procs = [ctx.Process(target=put_values, args=(q, [(i, j) for j in range(5)]))
             for i in range(3)]
    for p in procs:
        p.start()
    got = [q.get(timeout=60) for _ in range(15)]
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    for i in range(3):
        assert [j for who, j in got if who == i] == list(range(5))


@pytest.mark.parametrize("method", CONTEXTS)
def test_pool_initializer(make, method):
    ctx = multiprocessing.get_context(method)
    q = make(0, ctx)
    with ctx.Pool(2, initializer=pool_init, initargs=(q,)) as pool:
        assert pool.map_async(pool_task, range(6), chunksize=1).get(60) == list(range(6))
        # (before the pool's exit terminates its workers: see the difference below)
        assert sorted(q.get(timeout=30) for _ in range(6)) == [("pool", i) for i in range(6)]


# --- the differences, by design -----------------------------------------------

def test_difference_unpicklable_object_raises_at_put():
    """mp.Queue pickles in its feeder thread: put() succeeds, the error is
    printed there and the object never arrives.  shmring.Queue pickles in
    put(), which raises, and the queue is unchanged."""
    mq = make_mp()
    mq.put(Unpicklable())
    raises_exactly(queue.Empty, mq.get, timeout=0.5)
    mq.close()
    mq.join_thread()
    sq = make_shmring()
    with pytest.raises(TypeError, match="refuses to pickle"):
        sq.put(Unpicklable())
    assert sq.qsize() == 0 and sq.stats()["frames_committed"] == 0


def test_difference_objects_are_pickled_when_put():
    """mp.Queue may send an object mutated after put() (its feeder pickles it
    later); shmring.Queue sends it as it was at put()."""
    sq = make_shmring()
    obj = [1]
    sq.put(obj)
    obj.append(2)
    assert sq.get(timeout=10) == [1]


def test_difference_get_right_after_put():
    """After put() returns, shmring.Queue's get_nowait() in the same process
    finds the object; mp.Queue's may not yet (its feeder writes later)."""
    sq = make_shmring()
    for i in range(100):
        sq.put(i)
        assert sq.get_nowait() == i


def test_difference_full_ring_blocks_put():
    """mp.Queue without maxsize never blocks put() (its feeder thread buffers
    in the producer's memory); shmring.Queue's put waits for room in its
    ring, then raises queue.Full."""
    block = np.zeros(100_000, np.uint8)
    mq = make_mp()
    for _ in range(30):
        mq.put_nowait(block)
    for _ in range(30):
        mq.get(timeout=30)
    mq.close()
    mq.join_thread()
    sq = make_shmring()                 # 1 MiB: room for 10 of them
    for _ in range(10):
        sq.put_nowait(block)
    raises_exactly(queue.Full, sq.put_nowait, block)
    raises_exactly(queue.Full, sq.put, block, timeout=0.05)
    sq.get(timeout=10)
    sq.get(timeout=10)
    sq.put_nowait(block)


def test_difference_oversize_object_raises_value_error():
    """mp.Queue has no size limit; shmring.Queue refuses an object larger
    than half its ring with a ValueError that says what capacity would do."""
    sq = make_shmring()
    with pytest.raises(ValueError, match=r"capacity=4194304 or more"):
        sq.put(np.zeros(1 << 20, np.uint8))
    assert sq.stats()["frames_committed"] == 0


def test_difference_one_consumer_process():
    """mp.Queue lets several processes get(); shmring.Queue has one consumer
    and tells a second one so at once (never a hang)."""
    ctx = multiprocessing.get_context("spawn")
    for make in (make_mp, make_shmring):
        q = make(0, ctx)
        q.put("for the parent")
        assert q.get(timeout=10) == "for the parent"      # the parent is a consumer now
        q.put("for the child")
        out = ctx.Queue()
        child = ctx.Process(target=try_get, args=(q, out))
        t0 = time.monotonic()
        child.start()
        kind, detail = out.get(timeout=60)
        child.join(30)
        if make is make_mp:
            assert (kind, detail) == ("got", "for the child")
        else:
            assert kind == "ConsumerExists" and "one consumer" in detail
            assert time.monotonic() - t0 < 30
            assert q.get(timeout=10) == "for the child"
        q.close()


def test_difference_pickled_outside_process_start():
    """mp.Queue can be passed to a process only when it starts; a
    shmring.Queue pickles by name anywhere, even through another queue."""
    mq = make_mp()
    with pytest.raises(RuntimeError, match="inheritance"):
        pickle.dumps(mq)
    mq.close()
    mq.join_thread()
    carrier, sq = make_shmring(), make_shmring()
    carrier.put(sq)
    handle = carrier.get(timeout=10)
    assert handle is not sq and handle.name == sq.name
    ctx = multiprocessing.get_context("spawn")
    child = ctx.Process(target=put_one, args=(handle, "through a handle"))
    child.start()
    assert sq.get(timeout=60) == "through a handle"
    child.join(30)


def test_difference_terminated_producers_lose_nothing_put():
    """A Pool's exit terminates its workers: objects still in an mp.Queue
    feeder thread are lost then.  shmring.Queue's put() has written the
    object before it returns."""
    ctx = multiprocessing.get_context("fork")
    q = make_shmring()
    with ctx.Pool(2, initializer=pool_init, initargs=(q,)) as pool:
        assert pool.map_async(pool_task, range(20), chunksize=1).get(60) == list(range(20))
    assert sorted(q.get(timeout=30) for _ in range(20)) == [("pool", i) for i in range(20)]


def test_difference_no_feeder_to_join_at_exit():
    """A process that put() more than a pipe holds cannot exit before a
    reader drains mp.Queue (its feeder thread is joined at exit).  A
    shmring.Queue producer has nothing to flush and exits at once."""
    ctx = multiprocessing.get_context("fork")
    block = np.zeros(1 << 18, np.uint8)
    for make in (make_mp, make_shmring):
        q = make()
        child = ctx.Process(target=put_values, args=(q, [block] * 3))
        child.start()
        child.join(2 if make is make_mp else 60)
        assert child.is_alive() == (make is make_mp)
        for _ in range(3):
            assert_same(q.get(timeout=30), block)
        child.join(60)
        assert child.exitcode == 0
        q.close()

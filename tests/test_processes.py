"""Real producer processes on rings small enough to wrap thousands of times."""
import multiprocessing
import os
import time

import pytest

import shmring
from shmring.testing import processes
from shmring.testing.frames import InOrder, send_frames


def drain(consumer, max_frame, total, procs, timeout=60):
    frames = InOrder(max_frame)
    for _ in range(total):
        with consumer.recv(timeout=timeout) as frame:
            frames.check(frame)
    with pytest.raises(shmring.Empty):
        consumer.recv(timeout=0)
    for proc in procs:
        proc.join(timeout)
        assert proc.exitcode == 0
    return frames.next_seq


@pytest.mark.parametrize("context", ["fork", "spawn"])
def test_many_producers_wrap_thousands_of_times(name, context):
    producers, count = 3, 1500
    with shmring.Ring.create(name, 8192) as ring:
        max_frame = ring.max_frame
        with ring.consumer() as consumer:
            procs = [processes.start_process(send_frames, ring, i, count, context=context)
                     for i in range(producers)]
            next_seq = drain(consumer, max_frame, producers * count, procs)
        assert next_seq == {i: count for i in range(producers)}
        stats = ring.stats()
        assert stats["frames_received"] == stats["frames_committed"] == producers * count
        assert stats["tail"] // ring.capacity > 1000          # wrapped that often
        assert stats["producers"] == 0 and stats["fill"] == 0


def send_with_pickled_producer(producer, n):
    for i in range(n):
        producer.send(b"p%d" % i, type=i)
    producer.close()


def test_producer_pickles_under_spawn(name):
    with shmring.Ring.create(name, 4096) as ring, ring.consumer() as consumer:
        producer = ring.producer()
        proc = processes.start_process(send_with_pickled_producer, producer, 50,
                                       context="spawn")
        got = [consumer.recv_bytes(timeout=30) for _ in range(50)]
        proc.join(30)
        assert proc.exitcode == 0
        assert got == [b"p%d" % i for i in range(50)]
        producer.send(b"parent's own producer still works")
        assert consumer.recv_bytes(0) == b"parent's own producer still works"


def blocked_consumer(ring, ready):
    with ring.consumer() as c:
        ready.set()
        assert c.recv_bytes(timeout=30) == b"no one waits"
        assert c.recv_bytes(timeout=30) == b"wake up"


def test_blocked_consumer_wakes_and_producer_only_wakes_waiters(name):
    with shmring.Ring.create(name, 4096) as ring, ring.producer() as p:
        p.send(b"no one waits")
        assert ring.stats()["wakeups_to_consumer"] == 0
        ready = multiprocessing.get_context("spawn").Event()
        proc = processes.start_process(blocked_consumer, ring, ready, context="spawn")
        assert ready.wait(30)
        with pytest.raises(shmring.ConsumerExists):
            ring.consumer()
        # The child gets "no one waits" first and then sleeps in recv.
        deadline = time.monotonic() + 30
        while ring.stats()["consumer_waits"] == 0:
            assert proc.is_alive() and time.monotonic() < deadline
            os.sched_yield()
        p.send(b"wake up")
        proc.join(30)
        assert proc.exitcode == 0
        assert ring.stats()["wakeups_to_consumer"] >= 1


def test_forked_child_producer_gets_its_own_slot(name):
    with shmring.Ring.create(name, 4096) as ring, ring.consumer() as c:
        p = ring.producer()

        def child():
            p.send(b"from child")
            assert ring.stats()["producers"] == 2
        pid = processes.fork(child)
        assert processes.reap(pid, time.monotonic() + 30) == 0
        p.send(b"from parent")
        assert [c.recv_bytes(0), c.recv_bytes(0)] == [b"from child", b"from parent"]


@pytest.mark.timeout(60)
def test_a_reused_pid_answers_for_the_child_that_has_it_now():
    """A long lab run forks thousands of processes, and pids are reused: a
    status recorded for an earlier child must not answer for a live child
    with the same pid (it made a running producer look SIGKILLed)."""
    pid = processes.fork(time.sleep, 30)
    processes._reaped[pid] = 0              # as if an earlier child with this pid had exited
    try:
        assert processes.reap(pid, 0) is None
    finally:
        processes.kill_all([pid])
    assert processes.reap(pid, 0) == -9


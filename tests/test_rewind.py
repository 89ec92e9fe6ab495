"""The rewind (docs/design.md, "Rewind"): a claim pads to the end of a lap
and reuses the lap's start only while the consumer waits for a record,
holding nothing, so the working set stays small when the consumer keeps up
and a burst still gets the whole ring when it does not."""
import asyncio
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

import shmring
from shmring import _core, layout
from shmring.testing.processes import wait_until
from shmring.testing.rings import Raw

MiB = 1 << 20
U64 = (1 << 64) - 1


def _address(frame):
    """Where a frame's payload lies in this process's mapping."""
    a = frame.array()
    try:
        return a.__array_interface__["data"][0]
    finally:
        del a


def _waiting_at_tail(ring, raw):
    """Whether the consumer announced that it waits for the record at tail."""
    return raw.u64(layout.SegmentHeader.consumer_waiting_at) == (ring.stats()["tail"] + 1) & U64


async def _until(pred, timeout, what):
    """pred() polled between the other tasks' steps, with a deadline."""
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0)


@pytest.mark.parametrize("rewind, how", [(True, "block"), (False, "block"), (True, "drop"),
                                         (True, "await")])
def test_rewind_keeps_the_working_set_where_the_consumer_keeps_up(name, rewind, how):
    """1 MiB frames through a 16 MiB ring, each sent while the consumer waits
    for it (in another thread, or another task) and released before the next
    is received: with rewinding they stay within a few MiB (a claim past
    1 MiB, or a quarter of the ring in a lab build, pads to the end of the
    lap once the lap's start is free), without it they walk the ring.  The
    same for a dropping producer (which drops nothing here) and for an
    awaiting producer and consumer."""
    on_full = "drop" if how == "drop" else "wait"
    with shmring.Ring.create(name, 16 * MiB) as ring, \
            ring.producer(rewind=rewind, on_full=on_full) as p, ring.consumer() as c:
        assert p.rewind is rewind and p.on_full == on_full
        raw = Raw(ring.path)
        ends = []

        def check(i, f):
            with f:
                ends.append(_address(f))
                ends.append(ends[-1] + len(f))
                assert bytes(f) == bytes([i]) * MiB

        if how == "await":
            async def consume():
                for i in range(40):
                    check(i, await c.arecv(timeout=30))

            async def produce():
                for i in range(40):
                    await _until(lambda: _waiting_at_tail(ring, raw), 30, "the consumer")
                    await p.asend(bytes([i]) * MiB)

            async def both():
                await asyncio.gather(consume(), produce())
            asyncio.run(both())
        else:
            with ThreadPoolExecutor(1) as pool:
                got = pool.submit(lambda: [check(i, c.recv(timeout=30)) for i in range(40)])
                for i in range(40):
                    wait_until(lambda: _waiting_at_tail(ring, raw) or got.done(), 30,
                               "the consumer waiting at tail")
                    assert p.send(bytes([i]) * MiB, timeout=0) is True
                got.result()
        spread = max(ends) - ends[0]
        laps = ring.stats()["tail"] // ring.capacity
        if rewind:
            least = ring.capacity // 4 if _core.lab_enabled() else MiB
            assert spread <= least + 2 * MiB + 1024 and laps >= 5
        else:
            assert spread > 15 * MiB and laps == 40 * (MiB + 64) // ring.capacity
        stats = ring.stats()
        assert stats["fill"] == 0 and stats["frames_received"] == 40
        assert stats["frames_dropped"] == 0
        raw.close()


def test_no_rewind_while_the_consumer_holds_a_frame(name):
    """A frame held at the middle of the ring while 14 MiB more stream past,
    each sent while the consumer waits for it: a rewind to the ring's start
    would leave only the 8 MiB in front of the held frame until it is
    released (Full here), so none happens while the consumer holds one."""
    with shmring.Ring.create(name, 16 * MiB, _start=8 * MiB) as ring, ring.consumer() as c:
        raw = Raw(ring.path)
        with ring.producer(rewind=False) as q:
            q.send(b"kept", timeout=0)
        kept = c.recv(0)
        tail = ring.stats()["tail"]

        def receive():
            for i in range(28):
                with c.recv(timeout=30) as f:
                    assert bytes(f) == bytes([i]) * (MiB // 2)

        with ring.producer() as p, ThreadPoolExecutor(1) as pool:
            got = pool.submit(receive)
            for i in range(28):
                wait_until(lambda: _waiting_at_tail(ring, raw) or got.done(), 30,
                           "the consumer waiting at tail")
                p.send(bytes([i]) * (MiB // 2), timeout=0)
            got.result()
        assert bytes(kept) == b"kept"
        assert ring.stats()["tail"] - tail < ring.capacity     # no padding to a lap's end
        kept.release()
        assert ring.stats()["fill"] == 0
        raw.close()


@pytest.mark.parametrize("before", ["nothing", "recv timed out", "arecv timed out",
                                    "recv waited for a frame"])
def test_a_burst_gets_the_whole_ring_while_the_consumer_is_not_receiving(name, before):
    """head = tail three quarters into a 4 MiB ring, the consumer holding
    nothing: a producer that sends before the consumer receives again (a
    single-threaded program, a Queue's put) must get the whole ring, not the
    lap's start only.  So must it after the consumer's last wait timed out,
    or after a rewind while the consumer waited, which it passed at once."""
    record = layout.record_size(64 * 1024)
    with shmring.Ring.create(name, 4 * MiB, _start=3 * MiB) as ring, ring.consumer() as c, \
            ring.producer() as p:
        with ring.producer(rewind=False) as q:
            q.send(b"moved", timeout=0)
            assert c.recv_bytes(0) == b"moved"
        if before == "recv timed out":
            with pytest.raises(shmring.Empty):
                c.recv(timeout=0.001)
        elif before == "arecv timed out":
            with pytest.raises(shmring.Empty):
                asyncio.run(c.arecv(timeout=0.001))
        elif before == "recv waited for a frame":
            raw = Raw(ring.path)
            with ThreadPoolExecutor(1) as pool:
                got = pool.submit(c.recv_bytes, timeout=30)
                wait_until(lambda: _waiting_at_tail(ring, raw) or got.done(), 30,
                           "the consumer waiting at tail")
                p.send(b"rewound", timeout=0)
                assert got.result() == b"rewound"
            raw.close()
            assert ring.stats()["tail"] % ring.capacity == layout.record_size(7)  # at a lap's start
        sent = 0
        with pytest.raises(shmring.Full):
            while True:
                p.send(bytes(64 * 1024), timeout=0)
                sent += 1
        assert sent * record > ring.capacity - 2 * record     # one for the wrap, one that did not fit
        assert ring.stats()["frames_held"] == 0


def test_a_rewind_while_the_consumer_waits_behind_the_tail(name):
    """The pipeline a large frame makes: the consumer, woken for one record,
    has not run yet when the producer claims the next.  It still waits, for a
    record behind the tail, so the claim rewinds, and the consumer then takes
    the record it waited for, passes the padding and takes the rewound one."""
    with shmring.Ring.create(name, 4 * MiB, _start=3 * MiB) as ring, ring.consumer() as c:
        raw = Raw(ring.path)
        with ring.producer(rewind=False) as q, ring.producer() as p, \
                ThreadPoolExecutor(1) as pool:
            got = pool.submit(lambda: [c.recv_bytes(timeout=30) for _ in range(2)])
            wait_until(lambda: _waiting_at_tail(ring, raw) or got.done(), 30,
                       "the consumer waiting at tail")
            with q.reserve(5) as r:             # claimed where the consumer waits
                memoryview(r)[:] = b"first"
                p.send(b"rewound", timeout=0)   # the claim after it, behind the wait
                assert ring.stats()["frames_rewound"] == 1
            assert got.result() == [b"first", b"rewound"]
        assert ring.stats()["fill"] == 0
        assert ring.stats()["tail"] % ring.capacity == layout.record_size(7)   # at a lap's start
        raw.close()


def test_producer_rewind_survives_pickling_and_fork(ring):
    import pickle
    with ring.producer(rewind=False) as p, ring.producer(rewind=False, on_full="drop") as d:
        q = pickle.loads(pickle.dumps(p))
        e = pickle.loads(pickle.dumps(d))
        try:
            assert q.rewind is False and q is not p and q.on_full == "wait"
            assert e.rewind is False and e.on_full == "drop"
        finally:
            q.close()
            e.close()

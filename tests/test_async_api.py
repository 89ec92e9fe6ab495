"""The awaitable API in one process under asyncio: the same results, timeouts
and errors as the blocking calls, one waiter at a time, blocking and awaiting
calls mixed on one consumer, and the doorbell rung only for an armed waiter."""
import asyncio
import math

import numpy as np
import pytest

import shmring

LONG = 60.0     # a stall_timeout the test never reaches: only a doorbell can wake the waiter


def run(coro, timeout=30):
    """Run coro on a fresh asyncio loop, with a deadline."""
    return asyncio.run(asyncio.wait_for(coro, timeout))


async def until(predicate, what, timeout=10.0):
    """Let the loop run until predicate() holds; fail after timeout."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        assert loop.time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.001)


def fill(p, size=1000):
    """Send frames until the ring is full; how many went in."""
    n = 0
    while True:
        try:
            p.send(n.to_bytes(4, "little") * (size // 4), timeout=0)
        except shmring.Full:
            return n
        n += 1


def test_receives_return_what_the_blocking_ones_do(ring):
    with ring.producer() as p, ring.consumer() as c:
        async def main():
            p.send(b"one", type=7)
            f = await c.arecv()
            assert (bytes(f), f.type) == (b"one", 7)
            f.release()
            p.send(b"two")
            assert await c.arecv_bytes() == b"two"
            for i in range(5):
                p.send(b"%d" % i)
            frames = await c.arecv_many(3)
            assert [bytes(f) for f in frames] == [b"0", b"1", b"2"]
            del frames
            assert await c.arecv_bytes_many(10) == [b"3", b"4"]
            p.send_array(np.arange(6, dtype=np.int32).reshape(2, 3))
            with await c.arecv() as f:
                assert f.array().tolist() == [[0, 1, 2], [3, 4, 5]]
        run(main())
        assert c.held == 0 and ring.stats()["fill"] == 0


def test_timeouts_are_those_of_the_blocking_calls(ring):
    with ring.producer() as p, ring.consumer() as c:
        async def main():
            with pytest.raises(shmring.Empty):
                await c.arecv(timeout=0)
            with pytest.raises(TimeoutError):
                await c.arecv_bytes(timeout=0.05)
            assert await c.arecv_many(4, timeout=0) == []
            assert await c.arecv_bytes_many(4, timeout=0.02) == []
            for bad in (-1, math.nan):
                with pytest.raises(ValueError, match="timeout"):
                    await c.arecv(timeout=bad)
                with pytest.raises(ValueError, match="timeout"):
                    await p.asend(b"x", timeout=bad)
            with pytest.raises(ValueError, match="max_frames"):
                await c.arecv_many(0)
            n = fill(p)
            with pytest.raises(shmring.Full):
                await p.asend(b"x" * 1000, timeout=0)
            with pytest.raises(TimeoutError):
                await p.asend(b"x" * 1000, timeout=0.05)
            with pytest.raises(shmring.Full):
                async with p.areserve(1000, timeout=0.02):
                    pass
            assert await p.asend_many([b"y" * 1000] * 3, timeout=0.02) == 0
            return n
        n = run(main())
        assert len(c.recv_bytes_many(n + 1)) == n   # nothing extra went in


def test_send_errors_are_those_of_the_blocking_calls(ring):
    with ring.producer() as p, ring.consumer() as c:
        async def main():
            with pytest.raises(shmring.FrameTooLarge):
                await p.asend(b"x" * (ring.max_frame + 1))
            with pytest.raises(TypeError, match="bytes-like"):
                await p.asend("text")
            with pytest.raises(ValueError, match="C-contiguous"):
                await p.asend(memoryview(np.zeros((4, 4))[:, 1]))
            with pytest.raises(ValueError, match="type"):
                await p.asend(b"x", type=-1)
            with pytest.raises(ValueError, match="nbytes"):
                p.areserve(-1)
            with pytest.raises(shmring.FrameTooLarge):
                await p.asend_array(np.zeros(ring.max_frame + 1, np.uint8))
        run(main())
        with pytest.raises(shmring.Empty):
            c.recv(timeout=0)               # nothing was written


def test_asend_forms_deliver_in_order(ring):
    with ring.producer() as p, ring.consumer() as c:
        async def main():
            await p.asend(b"a", type=1)
            assert await p.asend_many([b"b", bytearray(b"c")], type=2) == 2
            await p.asend_array(np.arange(12, dtype=np.float32).reshape(3, 4)[:, ::2])
            async with p.areserve(3, type=3) as r:
                memoryview(r)[:] = b"res"
            with pytest.raises(RuntimeError):
                async with p.areserve(9) as r:
                    memoryview(r)[:] = b"aborted!!"
                    raise RuntimeError("the body failed")
        run(main())
        got = c.recv_many(10, timeout=0)
        assert [(bytes(f), f.type) for f in got[:3]] == [(b"a", 1), (b"b", 2), (b"c", 2)]
        assert got[3].array().tolist() == [[0, 2], [4, 6], [8, 10]]
        assert (bytes(got[4]), got[4].type) == (b"res", 3)
        assert len(got) == 5 and ring.stats()["frames_aborted"] == 1


def test_async_for_iterates(ring):
    with ring.producer() as p, ring.consumer(stall_timeout=LONG) as c:
        async def main():
            async def later():
                await until(lambda: ring.stats()["consumer_waits"] > 0, "the consumer to await")
                for i in range(3):
                    p.send(b"%d" % i)
            task = asyncio.ensure_future(later())
            got = []
            async for frame in c:
                got.append(bytes(frame))
                frame.release()
                if len(got) == 3:
                    break
            await task
            return got
        assert run(main()) == [b"0", b"1", b"2"]


def test_one_waiter_at_a_time(ring):
    with ring.producer() as p, ring.consumer(stall_timeout=LONG) as c:
        async def main():
            first = asyncio.ensure_future(c.arecv())
            await until(lambda: ring.stats()["consumer_waits"] > 0, "the first to await")
            with pytest.raises(shmring.RingError, match="one waiting at a time"):
                await c.arecv()
            for receive in (c.recv, c.recv_latest, c.recv_latest_each):
                with pytest.raises(shmring.RingError, match="one waiting at a time"):
                    receive(timeout=0)
            with pytest.raises(shmring.RingError, match="awaiting"):
                c.close()
            p.send(b"for the first")
            with await first as f:      # the task keeps its result: release it by hand
                assert bytes(f) == b"for the first"
            n = fill(p)
            one = asyncio.ensure_future(p.asend(b"z" * 1000))
            await until(lambda: ring.stats()["producer_waits"] > 0, "the producer to await")
            with pytest.raises(shmring.RingError, match="each task its own producer"):
                await p.asend(b"z" * 1000)
            with pytest.raises(shmring.RingError, match="awaiting"):
                p.close()
            for _ in range(n):
                c.recv(timeout=0).release()
            await one
        run(main())


def test_blocking_and_awaiting_calls_mix_on_one_consumer_and_producer(ring):
    with ring.producer() as p, ring.consumer() as c:
        async def main():
            held = []
            for i in range(20):
                if i % 2:
                    await p.asend(b"%d" % i)
                else:
                    p.send(b"%d" % i)
            for i in range(0, 20, 4):
                held.append(c.recv(timeout=0))
                held.append(await c.arecv())
                assert c.recv_bytes(timeout=0) == b"%d" % (i + 2)
                assert await c.arecv_bytes() == b"%d" % (i + 3)
            assert [bytes(f) for f in held] == [b"%d" % i for i in range(20) if i % 4 < 2]
            for f in held:          # released while no call is in progress, out of order
                f.release()
        run(main())
        assert c.held == 0 and ring.stats()["fill"] == 0


def test_frames_released_by_other_tasks_while_one_awaits(ring):
    """The guard is not held across an await: other tasks release their frames
    while the consumer awaits, and that room lets a full ring move again."""
    with ring.producer() as p, ring.consumer(stall_timeout=LONG) as c:
        async def main():
            n = fill(p)
            frames = c.recv_many(n, timeout=0)
            waiter = asyncio.ensure_future(c.arecv_bytes())
            await until(lambda: ring.stats()["consumer_waits"] > 0, "the consumer to await")
            for f in frames:
                f.release()         # not refused, not queued: the ring has room again
            assert ring.stats()["fill"] == 0
            p.send(b"after the release", timeout=0)
            return await waiter
        assert run(main()) == b"after the release"


def test_a_busy_ring_rings_no_doorbell(ring):
    """Nobody armed: no system call.  One armed waiter: one ring."""
    with ring.producer() as p, ring.consumer(stall_timeout=LONG) as c:
        async def main():
            for _ in range(200):
                await p.asend(b"x")
                assert await c.arecv_bytes() == b"x"
            assert ring.stats()["doorbell_rings"] == 0      # a frame was always there
            waiter = asyncio.ensure_future(c.arecv_bytes())
            await until(lambda: ring.stats()["consumer_waits"] > 0, "the consumer to await")
            for _ in range(10):
                p.send(b"y")
            assert await waiter == b"y"
            assert ring.stats()["doorbell_rings"] == 1      # only the first commit won the flag
        run(main())


def test_a_consumer_reopened_in_the_same_process_is_still_rung(ring):
    """Its new doorbell has the old one's name; the producer's socket, still
    connected to the old one, must notice and connect to the new one."""
    with ring.producer() as p:
        for i in range(3):
            with ring.consumer(stall_timeout=LONG) as c:
                waits = ring.stats()["consumer_waits"]

                async def main(c=c, waits=waits, i=i):
                    waiter = asyncio.ensure_future(c.arecv_bytes())
                    await until(lambda: ring.stats()["consumer_waits"] > waits, "an await")
                    p.send(b"%d" % i)
                    return await waiter
                assert run(main(), timeout=10) == b"%d" % i
        assert ring.stats()["doorbell_rings"] == 3


def test_a_dropping_producer_awaits_room_only_as_long_as_asked(ring):
    """on_full="drop": by default an awaiting send does not wait either; with
    a timeout it awaits room that long.  A frame that finds none is dropped
    and counted once, however often the await looked."""
    with ring.producer(on_full="drop") as p, ring.consumer(stall_timeout=LONG) as c:
        async def main():
            with ring.producer() as filler:
                n = fill(filler)
            assert await p.asend(b"x" * 1000) is False
            assert await p.asend_array(np.zeros(250, np.int32)) is False
            async with p.areserve(1000) as r:
                assert r is None
            assert ring.stats()["frames_dropped"] == 3 and ring.stats()["producer_waits"] == 0
            assert await p.asend(b"x" * 1000, timeout=0.3) is False    # awaited, then dropped
            assert ring.stats()["frames_dropped"] == 4 and ring.stats()["producer_waits"] > 0
            assert await p.asend_many([b"y" * 1000] * 3) == 0          # each dropped, none waits
            assert ring.stats()["frames_dropped"] == 7
            waiter = asyncio.ensure_future(p.asend(b"room" * 250, timeout=LONG))
            await until(lambda: ring.stats()["producer_waits"] > 1, "the producer to await")
            c.recv(timeout=0).release()                    # room: the release rings it
            assert await waiter is True
            return n
        n = run(main())
        assert ring.stats()["frames_dropped"] == 7
        got = [c.recv_bytes(timeout=0) for _ in range(n)]
        assert got[-1] == b"room" * 250

"""Cancellation at every await point, on schedules Hypothesis chooses: an
awaiting receive cancelled before it starts, while its doorbell is armed,
or after the doorbell rang but before the task resumed; an awaiting send
cancelled while it awaits room, and a reservation cancelled inside its
`async with`.  Whatever the schedule, no frame is lost or delivered twice,
and a cancelled send delivers nothing."""
import asyncio
import contextlib

import anyio
import pytest
from hypothesis import given
from hypothesis import strategies as st

import shmring
from shmring.testing.processes import children
from shmring.testing.rings import ring_name

LONG = 60.0

PRODUCER = """
ring = shmring.Ring.attach(NAME)
p = ring.producer()
seq = 0
say("ready")
while True:
    k = int(hear())
    for _ in range(k):
        p.send(b"%d" % seq, timeout=10)
        seq += 1
    say("sent", seq)
"""

CONSUMER = """
ring = shmring.Ring.attach(NAME)
c = ring.consumer()
say("ready")
while True:
    k = int(hear())
    took = []
    while len(took) < k:
        try:
            took.append(c.recv_bytes(timeout=0).decode())
        except shmring.Empty:
            break
    say("took", *took)
"""

RECEIVES = ["arecv", "arecv_bytes", "arecv_many", "arecv_bytes_many"]
receive_steps = st.lists(st.one_of(
    st.tuples(st.just("send"), st.integers(0, 4)),
    # (how, loop turns before the cue, frames the producer sends on the cue, turns after it)
    st.tuples(st.sampled_from(RECEIVES), st.integers(0, 3), st.integers(0, 2),
              st.integers(0, 3))), max_size=10)


def contents(got):
    items = got if isinstance(got, list) else [got]
    return [int(bytes(x)) for x in items]


@contextlib.contextmanager
def ring_and_child(script):
    """A fresh ring, and a child running script on it that has said "ready";
    the ring's segment and doorbells are removed afterwards."""
    with ring_name("cancel") as name, shmring.Ring.create(name, 4096) as ring, \
            children() as spawn:
        child = spawn(script.replace("NAME", repr(name)))
        child.expect("ready")
        yield ring, child


async def turns(n):
    for _ in range(n):
        await asyncio.sleep(0)


@pytest.mark.timeout(300)
@given(receive_steps)
def test_cancelled_receives_lose_no_frame(steps):
    with ring_and_child(PRODUCER) as (ring, producer):
        c = ring.consumer(stall_timeout=LONG)

        def send(k):
            producer.tell(str(k))
            return int(producer.expect("sent").split()[1])

        async def main():
            got, sent = [], 0
            for step in steps:
                if step[0] == "send":
                    sent = send(step[1])
                    continue
                how, before, cue, after = step
                args = (3,) if how.endswith("many") else ()
                task = asyncio.ensure_future(getattr(c, how)(*args))
                await turns(before)
                if cue:
                    sent = send(cue)
                await turns(after)
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    got += contents(await task)     # done before the cancel landed
                del task
            while len(got) < sent:
                got += contents(await asyncio.wait_for(c.arecv_bytes_many(100), 10))
            assert await c.arecv_many(1, timeout=0) == []
            return got, sent
        got, sent = asyncio.run(main())
        assert got == list(range(sent))
        assert ring.stats()["fill"] == 0
        c.close()


send_steps = st.lists(st.one_of(
    st.tuples(st.just("take"), st.integers(0, 4)),
    # (how, turns before the cue, frames the consumer takes on the cue, turns after it)
    st.tuples(st.sampled_from(["asend", "areserve"]), st.integers(0, 3), st.integers(0, 2),
              st.integers(0, 3))), max_size=12)


@pytest.mark.timeout(300)
@given(send_steps)
def test_cancelled_sends_deliver_nothing_and_lose_nothing(steps):
    with ring_and_child(CONSUMER) as (ring, consumer):
        p = ring.producer()
        taken = []

        def take(k):
            consumer.tell(str(k))
            taken.extend(int(x) for x in consumer.expect("took").split()[1:])

        async def reserve_and_fill(seq):
            async with p.areserve(900) as r:
                with memoryview(r) as view:
                    view[:] = b"%d" % seq + b" " * (900 - len(b"%d" % seq))
                await turns(2)              # a cancel here aborts the frame

        async def main():
            done = []
            for seq, step in enumerate(steps):
                if step[0] == "take":
                    take(step[1])
                    continue
                how, before, cue, after = step
                frame = b"%d" % seq + b" " * 890
                task = asyncio.ensure_future(
                    p.asend(frame) if how == "asend" else reserve_and_fill(seq))
                await turns(before)
                if cue:
                    take(cue)
                await turns(after)
                task.cancel()
                try:
                    await task
                    done.append(seq)
                except asyncio.CancelledError:
                    pass
            return done
        done = asyncio.run(main())
        take(len(steps) + 10)
        assert taken == done                # exactly the sends that completed, in order
        stats = ring.stats()
        assert stats["fill"] == 0 and stats["frames_committed"] == len(done)
        p.close()


@pytest.mark.timeout(60)
@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_cancel_scopes_lose_no_frame(name, backend):
    """anyio's cancel scopes (a timeout, an explicit cancel) around awaits
    that are armed, and around one whose doorbell already rang."""
    with shmring.Ring.create(name, 4096) as ring, ring.producer() as p, \
            ring.consumer(stall_timeout=LONG) as c:
        async def main():
            got = []
            with anyio.move_on_after(0.05):
                got.append(await c.arecv_bytes())       # nothing comes: cancelled
            with anyio.CancelScope() as scope:
                async with anyio.create_task_group() as tg:
                    async def wait():
                        got.append(await c.arecv_bytes())
                    tg.start_soon(wait)
                    while ring.stats()["consumer_waits"] < 2:
                        await anyio.sleep(0.001)
                    p.send(b"0")                        # rings the armed doorbell
                    scope.cancel()                      # before the waiter runs again
            p.send(b"1")
            got += await c.arecv_bytes_many(10)
            got += await c.arecv_bytes_many(10, timeout=0)
            return got
        got = anyio.run(main, backend=backend)
        assert got == [b"0", b"1"]
        assert ring.stats()["fill"] == 0

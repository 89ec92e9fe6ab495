"""Awaiting consumers and producers against real processes: many producers to
an awaiting consumer on a ring that wraps thousands of times, an awaiting
producer woken by the consumer's release, and the dead: a consumer that dies
while producers await, a producer that dies while the consumer awaits, and
waiters that die with their doorbell armed."""
import signal

import anyio
import pytest
from _awaiting import AWAIT_A_FRAME

import shmring
from shmring.testing.frames import InOrder, asend_frames, send_frames
from shmring.testing.processes import children, start_process, wait_until

LONG = 60.0     # a stall_timeout no test reaches: only a doorbell wakes the consumer
BACKENDS = ["asyncio", "trio"]


def awaited_drain(consumer, max_frame, total, backend, timeout=60):
    """Receive total frames with `async for` on anyio's backend, checking each."""
    in_order = InOrder(max_frame)

    async def main():
        with anyio.fail_after(timeout):
            async for frame in consumer:
                with frame:
                    in_order.check(frame)
                if sum(in_order.next_seq.values()) == total:
                    break
            with pytest.raises(shmring.Empty):
                await consumer.arecv(timeout=0)
    anyio.run(main, backend=backend)
    return in_order.next_seq


@pytest.mark.timeout(120)
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("senders", ["blocking", "awaiting", "both"])
def test_many_producers_to_an_awaiting_consumer(name, backend, senders):
    producers, count = 3, 700
    with shmring.Ring.create(name, 8192) as ring:
        max_frame = ring.max_frame
        with ring.consumer(stall_timeout=LONG) as consumer:
            procs = []
            for i in range(producers):
                awaiting = senders == "awaiting" or (senders == "both" and i % 2)
                target, args = (asend_frames, (ring, i, count, BACKENDS[i % 2])) \
                    if awaiting else (send_frames, (ring, i, count))
                procs.append(start_process(target, *args, context="spawn"))
            next_seq = awaited_drain(consumer, max_frame, producers * count, backend)
            for proc in procs:
                proc.join(30)
                assert proc.exitcode == 0
        assert next_seq == {i: count for i in range(producers)}    # in order, none lost or twice
        stats = ring.stats()
        assert stats["frames_received"] == stats["frames_committed"] == producers * count
        assert stats["tail"] // ring.capacity > 200         # wrapped that often
        assert stats["consumer_waits"] > 0 and stats["doorbell_rings"] > 0
        if senders != "blocking":
            assert stats["producer_waits"] > 0              # they awaited room too
        assert stats["fill"] == 0


AWAITING_PRODUCER = """
import asyncio
ring = shmring.Ring.attach(NAME)
p = ring.producer()
n = 0
while True:
    try:
        p.send(n.to_bytes(4, "little") * 250, timeout=0)
    except shmring.Full:
        break
    n += 1
say("full", n)
async def main():
    await p.asend(b"woken" * 200, timeout=30)
asyncio.run(main())
say("sent")
hear()
"""


@pytest.mark.timeout(60)
def test_awaiting_producer_on_a_full_ring_is_woken_by_the_release(name):
    with shmring.Ring.create(name, 8192) as ring, children() as spawn_child:
        c = ring.consumer()
        child = spawn_child(AWAITING_PRODUCER.replace("NAME", repr(name)))
        n = int(child.expect("full").split()[1])
        wait_until(lambda: ring.stats()["producer_waits"] > 0, 10, "the producer to await")
        rings = ring.stats()["doorbell_rings"]
        c.recv(timeout=0).release()         # room for exactly one more
        child.expect("sent", timeout=10)
        stats = ring.stats()
        assert stats["doorbell_rings"] == rings + 1      # the release rang it, once
        assert stats["producer_waits"] == 1              # armed once: no polling while it waited
        for i in range(1, n):
            assert c.recv_bytes(timeout=0) == i.to_bytes(4, "little") * 250
        assert c.recv_bytes(timeout=0) == b"woken" * 200
        child.tell()
        c.close()


CONSUMER_THEN_DIE = """
ring = shmring.Ring.attach(NAME)
c = ring.consumer()
say("ready")
hear()
"""


@pytest.mark.timeout(60)
@pytest.mark.parametrize("backend", BACKENDS)
def test_dead_consumer_reaches_producers_that_await_room(name, backend):
    with shmring.Ring.create(name, 8192) as ring, children() as spawn_child:
        consumer = spawn_child(CONSUMER_THEN_DIE.replace("NAME", repr(name)))
        consumer.expect("ready")
        producers = [ring.producer(), ring.producer()]
        while True:
            try:
                producers[0].send(b"x" * 1000, timeout=0)
            except shmring.Full:
                break
        gone = []

        async def await_room(p):
            try:
                await p.asend(b"y" * 1000, timeout=30)
            except shmring.ConsumerGone:
                gone.append(p)

        async def main():
            with anyio.fail_after(30):
                async with anyio.create_task_group() as tg:
                    for p in producers:
                        tg.start_soon(await_room, p)
                    while ring.stats()["producer_waits"] < 2:
                        await anyio.sleep(0.005)
                    consumer.kill()
        anyio.run(main, backend=backend)
        assert sorted(map(id, gone)) == sorted(map(id, producers))     # both, in either order
        for p in producers:
            p.close()


BUSY_THEN_DIE = """
ring = shmring.Ring.attach(NAME)
p = ring.producer()
r = p.reserve(100)          # a claim that will never be committed
say("claimed")
hear()
"""


@pytest.mark.timeout(60)
@pytest.mark.parametrize("backend", BACKENDS)
def test_dead_producer_while_the_consumer_awaits(name, backend):
    """A producer dies inside a claim while the consumer awaits; the next
    producer's commit rings, and the consumer skips the dead claim once its
    stall_timeout has passed."""
    with shmring.Ring.create(name, 8192) as ring, children() as spawn_child:
        c = ring.consumer(stall_timeout=0.3)

        async def main():
            with anyio.fail_after(30):
                async with anyio.create_task_group() as tg:
                    got = []

                    async def receive():
                        got.append(await c.arecv_bytes())
                    tg.start_soon(receive)
                    while ring.stats()["consumer_waits"] == 0:
                        await anyio.sleep(0.005)
                    doomed = spawn_child(BUSY_THEN_DIE.replace("NAME", repr(name)))
                    doomed.expect("claimed")
                    doomed.kill()
                    with ring.producer() as p:
                        p.send(b"after the dead claim")
            return got
        assert anyio.run(main, backend=backend) == [b"after the dead claim"]
        assert ring.stats()["frames_abandoned"] == 1
        c.close()


AWAIT_ROOM_THEN_WAIT = """
import asyncio
ring = shmring.Ring.attach(NAME)
p = ring.producer()
while True:
    try:
        p.send(b"x" * 1000, timeout=0)
    except shmring.Full:
        break
async def main():
    task = asyncio.ensure_future(p.asend(b"y" * 1000))
    while ring.stats()["producer_waits"] == 0:
        await asyncio.sleep(0.001)
    say("armed")
    await task
asyncio.run(main())
"""


@pytest.mark.timeout(60)
@pytest.mark.parametrize("role", ["consumer", "producer"])
def test_a_dead_waiter_costs_one_wasted_ring(name, role):
    """A waiter killed with its doorbell armed: the first publisher wins the
    flag and rings a dead socket (the error is ignored); nobody after it
    makes a system call for it."""
    with shmring.Ring.create(name, 8192) as ring, children() as spawn_child:
        script = AWAIT_A_FRAME if role == "consumer" else AWAIT_ROOM_THEN_WAIT
        waiter = spawn_child(script.replace("NAME", repr(name)))
        waiter.expect("armed")
        waiter.signal(signal.SIGKILL)
        waiter.wait()
        if role == "consumer":
            with ring.producer() as p:
                for _ in range(50):
                    p.send(b"z")
        else:
            with ring.consumer() as c:
                for _ in range(7):
                    c.recv(timeout=1).release()
        assert ring.stats()["doorbell_rings"] == 1

"""The seal and the awaitable API: the seal rings every armed doorbell, so an
awaiting consumer with every frame received gets Sealed (and `async for`
ends), and a producer awaiting room gets Sealed, under asyncio and trio,
sealed in this process or in another.  The waiters here have no watchdog
that would wake them before the test's deadline: only the seal's ring can."""
import select

import anyio
import pytest

import shmring
from shmring.testing.processes import children

LONG = 60.0     # a stall_timeout the test never reaches
BACKENDS = ["asyncio", "trio"]

SEAL_ON_CUE = """
ring = shmring.Ring.attach(NAME)
say("ready")
hear()
ring.seal()
say("sealed")
hear()
"""


def fill(p, size=1000):
    """Send frames until the ring is full; how many went in."""
    n = 0
    while True:
        try:
            p.send(b"%04d" % n + b"x" * (size - 4), timeout=0)
        except shmring.Full:
            return n
        n += 1


def readable(fd):
    return select.select([fd], [], [], 0)[0] == [fd]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("backend", BACKENDS)
def test_async_for_ends_at_a_seal_from_another_process(ring, backend):
    with children() as spawn, ring.producer() as p, \
            ring.consumer(stall_timeout=LONG) as c:
        sealer = spawn(SEAL_ON_CUE.replace("NAME", repr(ring.name)))
        sealer.expect("ready")
        p.send(b"first")
        p.send(b"second")

        async def main():
            got = []
            with anyio.fail_after(30):
                async with anyio.create_task_group() as tg:
                    async def receive_all():
                        async for frame in c:
                            with frame:
                                got.append(bytes(frame))
                    tg.start_soon(receive_all)
                    while ring.stats()["consumer_waits"] == 0:     # both taken, doorbell armed
                        await anyio.sleep(0.001)
                    sealer.tell()
            return got
        assert anyio.run(main, backend=backend) == [b"first", b"second"]
        sealer.expect("sealed")
        assert ring.stats()["doorbell_rings"] == 1          # the seal rang it
        sealer.tell()


@pytest.mark.timeout(60)
@pytest.mark.parametrize("backend", BACKENDS)
def test_every_awaiting_receive_raises_sealed_once_drained(ring, backend):
    with ring.producer() as p, ring.consumer(stall_timeout=LONG) as c:
        async def main():
            with anyio.fail_after(30):
                async with anyio.create_task_group() as tg:
                    async def await_one():
                        with pytest.raises(shmring.Sealed, match="every frame"):
                            await c.arecv()
                    tg.start_soon(await_one)
                    while ring.stats()["consumer_waits"] == 0:
                        await anyio.sleep(0.001)
                    ring.seal()             # this very process rings the doorbell
                for receive in (c.arecv(), c.arecv_bytes(), c.arecv_many(4),
                                c.arecv_bytes_many(4, timeout=0), c.arecv(timeout=0)):
                    with pytest.raises(shmring.Sealed):
                        await receive
        anyio.run(main, backend=backend)
        assert ring.stats()["doorbell_rings"] == 1
        with pytest.raises(shmring.Sealed):
            p.send(b"late")


@pytest.mark.timeout(60)
def test_frames_sent_before_the_seal_come_before_sealed(ring):
    with ring.producer() as p, ring.consumer() as c:
        for i in range(3):
            p.send(b"%d" % i)
        ring.seal()

        async def main():
            assert await c.arecv_bytes() == b"0"
            assert await c.arecv_bytes_many(10) == [b"1", b"2"]
            with pytest.raises(shmring.Sealed):
                await c.arecv_bytes_many(10)
            assert [bytes(f) async for f in c] == []
        anyio.run(main)
        assert ring.stats()["doorbell_rings"] == 0          # nobody was armed: no ring


@pytest.mark.timeout(60)
@pytest.mark.parametrize("backend", BACKENDS)
def test_a_producer_awaiting_room_gets_sealed(ring, backend):
    with ring.producer() as p, ring.producer() as other:
        c = ring.consumer()
        fill(p)

        async def main():
            with anyio.fail_after(30):
                async with anyio.create_task_group() as tg:
                    async def await_room():
                        with pytest.raises(shmring.Sealed, match="takes no new frames"):
                            await p.asend(b"y" * 1000)
                    tg.start_soon(await_room)
                    while ring.stats()["producer_waits"] == 0:
                        await anyio.sleep(0.001)
                    rings = ring.stats()["doorbell_rings"]
                    ring.seal()
                    assert ring.stats()["doorbell_rings"] == rings + 1     # rung by the seal
            with pytest.raises(shmring.Sealed, match="0 frame"):
                await other.asend_many([b"a", b"b"])
            with pytest.raises(shmring.Sealed):
                async with other.areserve(10):
                    pass
        anyio.run(main, backend=backend)
        c.close()


@pytest.mark.timeout(60)
def test_the_seal_rings_doorbells_armed_through_fileno(ring):
    """The doorbell API for other loops: a consumer armed on an empty ring and
    a producer armed on a full one (full of frames the consumer holds); after
    the seal both descriptors are readable, and arm() says to try again at
    once, which raises Sealed."""
    with ring.producer() as p, ring.consumer(stall_timeout=LONG) as c:
        consumer_fd, producer_fd = c.fileno(), p.fileno()
        fill(p)
        held = c.recv_many(1000, timeout=0)
        with pytest.raises(shmring.Empty):
            c.recv(timeout=0)
        assert c.arm() > 0 and p.arm(1000) > 0
        assert not readable(consumer_fd) and not readable(producer_fd)
        ring.seal()
        assert readable(consumer_fd) and readable(producer_fd)
        assert c.drain() == 1 and p.drain() == 1
        assert ring.stats()["doorbell_rings"] == 2
        assert p.arm(1000) == 0.0                           # sealed: send, and get Sealed
        with pytest.raises(shmring.Sealed):
            p.send(b"z", timeout=0)
        for f in held:
            f.release()
        assert c.arm() == 0.0                               # sealed and drained: nothing armed
        with pytest.raises(shmring.Sealed):
            c.recv(timeout=0)
        assert c.drain() == 0 and not readable(consumer_fd)

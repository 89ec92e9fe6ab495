"""Doorbells over their life: fork, stale doorbells of dead owners, long
names, Ctrl-C, an idle awaiting consumer, and a ring that was lost (a
publisher killed between winning the flag and ringing).  `shmring ls` and
`rm` with doorbells: tests/test_cli.py."""
import asyncio
import os
import signal
import time

import pytest
from _awaiting import AWAIT_A_FRAME

import shmring
from shmring import _ring, layout, segments
from shmring.testing.processes import children, wait_until
from shmring.testing.rings import Raw


def bell_files(ring):
    return sorted(b["path"] for b in _ring.doorbells(os.path.dirname(ring.path), ring.name))


FORK_WHILE_AWAITING = """
import asyncio
ring = shmring.Ring.attach(NAME)
c = ring.consumer(stall_timeout=60)
p = ring.producer()
p.fileno()
async def main():
    waiter = asyncio.ensure_future(c.arecv_bytes())    # registered with this loop
    while ring.stats()["consumer_waits"] == 0:
        await asyncio.sleep(0.001)
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            try:
                c.fileno()
                code = 2                    # the parent's consumer must be refused
            except shmring.RingError:
                pass
            p.fileno()
            if len(shmring._ring.doorbells(os.path.dirname(ring.path), ring.name)) != 3:
                code = 3                    # the child must bind a doorbell of its own
            else:
                asyncio.set_event_loop(None)
                asyncio.run(p.asend(b"from the child"))    # a loop of its own
                p.close()
                code = 0 if code == 1 else code
        finally:
            os._exit(code if code != 1 else 0)
    _, status = os.waitpid(pid, 0)
    say("child", os.waitstatus_to_exitcode(status))
    say("got", await asyncio.wait_for(waiter, 20))     # woken through its own loop
asyncio.run(main())
say("bells", len(shmring._ring.doorbells(os.path.dirname(ring.path), ring.name)))
hear()
"""


@pytest.mark.timeout(60)
def test_a_forked_child_inherits_no_doorbell_and_no_loop_registration(name):
    with shmring.Ring.create(name, 8192), children() as spawn:
        proc = spawn(FORK_WHILE_AWAITING.replace("NAME", repr(name)))
        assert proc.expect("child", timeout=20) == "child 0"
        assert proc.expect("got", timeout=20) == "got b'from the child'"
        # The parent's two doorbells are still there; the child removed its own.
        assert proc.expect("bells") == "bells 2"
        proc.tell()


@pytest.mark.timeout(60)
def test_a_new_consumer_removes_stale_doorbells_of_dead_owners(name):
    with shmring.Ring.create(name, 8192) as ring, children() as spawn:
        dead = spawn(AWAIT_A_FRAME.replace("NAME", repr(name)))
        dead.expect("armed")
        dead.kill()
        with ring.producer() as live:
            live.fileno()                   # a live producer's doorbell is kept
            assert len(bell_files(ring)) == 3
            with ring.consumer() as c:
                assert [b["role"] for b in _ring.doorbells(os.path.dirname(ring.path),
                                                             ring.name)] == ["producer"]
                c.fileno()
                assert len(bell_files(ring)) == 2
            assert len(bell_files(ring)) == 1          # close removes the consumer's own
        assert bell_files(ring) == []


@pytest.mark.timeout(30)
def test_long_names_and_directories_get_doorbells_that_fit(tmp_path, monkeypatch):
    """A socket address holds 108 bytes: a long ring name is cut and hashed, and
    a long directory is reached through /proc/self/fd."""
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    deep.mkdir(parents=True)
    monkeypatch.setenv("SHMRING_DIR", str(deep))
    names = ["n" * 200, "n" * 199 + "m"]
    rings = [shmring.Ring.create(n, 4096) for n in names]
    try:
        consumers = [r.consumer(stall_timeout=60) for r in rings]
        for r, c in zip(rings, consumers):
            with r.producer() as p:
                async def main(r=r, c=c, p=p):
                    waiter = asyncio.ensure_future(c.arecv_bytes())
                    while r.stats()["consumer_waits"] == 0:
                        await asyncio.sleep(0.001)
                    p.send(r.name[-1].encode())
                    return await asyncio.wait_for(waiter, 10)
                assert asyncio.run(main()) == r.name[-1].encode()
        prefixes = {b["prefix"] for b in _ring.doorbells(str(deep))}
        assert len(prefixes) == 2 and all(len(x) <= 49 for x in prefixes)
        assert {r["name"]: len(r["doorbells"]) for r in segments.list_rings()} == {
            n: 1 for n in names}
    finally:
        for r in rings:
            r.unlink()


AWAIT_FOREVER = """
import asyncio
ring = shmring.Ring.attach(NAME)
c = ring.consumer(stall_timeout=60)
def await_one(timeout=None):
    if LIBRARY == "trio":
        import trio
        return trio.run(lambda: c.arecv_bytes(timeout=timeout))
    return asyncio.run(c.arecv_bytes(timeout=timeout))
say("awaiting")
try:
    await_one()
    say("returned")
except KeyboardInterrupt:
    say("interrupted", time.monotonic())
hear()
say("got", await_one(timeout=5).decode())
"""


@pytest.mark.timeout(30)
@pytest.mark.parametrize("library", ["asyncio", "trio"])
def test_ctrl_c_interrupts_a_loop_awaiting_a_frame(name, library):
    with shmring.Ring.create(name, 8192) as ring, children() as spawn:
        child = spawn(AWAIT_FOREVER.replace("NAME", repr(name)).replace("LIBRARY", repr(library)))
        child.expect("awaiting")
        wait_until(lambda: ring.stats()["consumer_waits"] > 0, 10, "the consumer to await")
        sent = time.monotonic()
        child.signal(signal.SIGINT)
        line = child.expect("interrupted", timeout=5)
        assert float(line.split()[1]) - sent < 1.0
        raw = Raw(ring.path)
        try:
            assert raw.u32(layout.SegmentHeader.data_bell) == 0        # the cancel took the flag back
        finally:
            raw.close()
        with ring.producer() as p:
            p.send(b"after ctrl-c")
            assert ring.stats()["doorbell_rings"] == 0      # no armed flag cost it a ring
            child.tell()
            assert child.expect("got") == "got after ctrl-c"


IDLE = """
import threading
ring = shmring.Ring.attach(NAME)
c = ring.consumer()
async def idle():
    threads = []
    async def count_threads():
        threads.append(threading.active_count())
    async def await_one_second():
        try:
            await c.arecv(timeout=1.0)
        except shmring.Empty:
            pass
    cpu, wall = time.process_time(), time.monotonic()
    if LIBRARY == "trio":
        import trio
        async with trio.open_nursery() as n:
            n.start_soon(count_threads)
            await await_one_second()
    else:
        import asyncio
        asyncio.ensure_future(count_threads())
        await await_one_second()
    say("idle", time.process_time() - cpu, time.monotonic() - wall, threads[0])
if LIBRARY == "trio":
    import trio
    trio.run(idle)
else:
    import asyncio
    asyncio.run(idle())
"""


@pytest.mark.timeout(30)
@pytest.mark.parametrize("library", ["asyncio", "trio"])
def test_an_idle_awaiting_consumer_uses_no_cpu_and_no_thread(name, library):
    with shmring.Ring.create(name, 8192), children() as spawn:
        child = spawn(IDLE.replace("NAME", repr(name)).replace("LIBRARY", repr(library)))
        _, cpu, wall, threads = child.expect("idle", timeout=20).split()
        assert float(wall) >= 1.0               # it really waited the whole second
        assert float(cpu) < 0.010               # and used under 10 ms of CPU doing so
        assert threads == "1"                   # no helper thread


@pytest.mark.timeout(30)
def test_a_lost_ring_delays_the_consumer_by_stall_timeout_at_most(ring):
    """A producer killed after winning the flag and before ringing: nobody else
    rings, and the awaiting consumer looks at the ring again after
    stall_timeout.  Here the test plays that producer: it takes the flag."""
    with ring.producer() as p, ring.consumer(stall_timeout=0.3) as c:
        raw = Raw(ring.path)

        async def main():
            waiter = asyncio.ensure_future(c.arecv_bytes())
            while ring.stats()["consumer_waits"] == 0:
                await asyncio.sleep(0.001)
            assert raw.u32(layout.SegmentHeader.data_bell) != 0        # armed, with its doorbell's id
            raw.put32(layout.SegmentHeader.data_bell, 0)       # won by a producer that then died
            p.send(b"committed, never rung")
            started = time.monotonic()
            got = await asyncio.wait_for(waiter, 10)
            return got, time.monotonic() - started
        try:
            got, waited = asyncio.run(main())
        finally:
            raw.close()
        assert got == b"committed, never rung"
        assert ring.stats()["doorbell_rings"] == 0
        assert waited < 0.3 + 5                 # the watchdog, not the deadline, woke it


@pytest.mark.timeout(60)
def test_unlink_removes_the_doorbells_of_dead_owners(name):
    with shmring.Ring.create(name, 8192) as ring, children() as spawn, \
            ring.producer() as live:
        dead = spawn(AWAIT_A_FRAME.replace("NAME", repr(name)))
        dead.expect("armed")
        dead.kill()
        live.fileno()
        assert len(bell_files(ring)) == 3
        ring.unlink()
        assert [b["pid"] for b in _ring.doorbells(os.path.dirname(ring.path), ring.name)] \
            == [os.getpid()]                        # the live producer's stays, until it closes
    assert bell_files(ring) == []

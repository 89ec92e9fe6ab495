"""The doorbell API for event loops that are neither asyncio nor trio
(fileno, arm, drain), driven by a plain `selectors` loop against a real
process.  The selector waits far longer than any watchdog, so it returns
early only because the other process rang the doorbell."""
import selectors

import pytest

import shmring
from shmring import layout
from shmring.testing.processes import children
from shmring.testing.rings import Raw

SEND_ON_CUE = """
ring = shmring.Ring.attach(NAME)
p = ring.producer()
say("ready")
hear()
p.send(b"rung")
say("sent")
hear()
"""

RELEASE_ON_CUE = """
ring = shmring.Ring.attach(NAME)
c = ring.consumer()
say("ready")
hear()
c.recv(timeout=5).release()
say("released")
hear()
"""


def flag(ring, offset):
    raw = Raw(ring.path)
    try:
        return raw.u32(offset)
    finally:
        raw.close()


@pytest.mark.timeout(60)
def test_a_selector_loop_awaits_a_frame(name):
    with shmring.Ring.create(name, 8192) as ring, children() as spawn, \
            ring.consumer() as c, selectors.DefaultSelector() as sel:
        child = spawn(SEND_ON_CUE.replace("NAME", repr(name)))
        child.expect("ready")
        sel.register(c.fileno(), selectors.EVENT_READ)
        with pytest.raises(shmring.Empty):
            c.recv(timeout=0)
        wait = c.arm()
        assert 0 < wait <= 1.0                      # at most stall_timeout
        assert flag(ring, layout.SegmentHeader.data_bell) != 0     # armed, with the doorbell's id
        assert sel.select(timeout=0) == []          # nothing rang yet
        child.tell()
        child.expect("sent")
        assert len(sel.select(timeout=30)) == 1     # the producer rang
        assert c.drain() == 1
        assert c.recv_bytes(timeout=0) == b"rung"
        assert ring.stats()["doorbell_rings"] == 1
        child.tell()


@pytest.mark.timeout(60)
def test_arm_says_when_a_frame_is_ready_and_drain_disarms(ring):
    with ring.producer() as p, ring.consumer() as c:
        p.send(b"already here")
        assert c.arm() == 0.0                       # do not wait: receive it
        assert flag(ring, layout.SegmentHeader.data_bell) == 0     # and nothing is left armed
        assert c.recv_bytes(timeout=0) == b"already here"
        assert c.arm() > 0
        assert c.drain() == 0                       # stopped waiting: disarmed
        assert flag(ring, layout.SegmentHeader.data_bell) == 0
        p.send(b"no ring for this")
        assert ring.stats()["doorbell_rings"] == 0
        assert p.arm(100) == 0.0                    # room now
        assert flag(ring, layout.slot_offset(0) + layout.Slot.bell) == 0     # slot 0's: nothing armed


@pytest.mark.timeout(60)
def test_a_selector_loop_awaits_room(name):
    with shmring.Ring.create(name, 8192) as ring, children() as spawn, \
            ring.producer() as p, selectors.DefaultSelector() as sel:
        child = spawn(RELEASE_ON_CUE.replace("NAME", repr(name)))
        child.expect("ready")
        frame = b"f" * 1000
        n = 0
        while True:
            try:
                p.send(frame, timeout=0)
            except shmring.Full:
                break
            n += 1
        sel.register(p.fileno(), selectors.EVENT_READ)
        wait = p.arm(len(frame))
        assert 0 < wait <= 1.0
        assert sel.select(timeout=0) == []
        child.tell()
        child.expect("released")
        assert len(sel.select(timeout=30)) == 1     # the consumer's release rang
        assert p.drain() == 1
        p.send(frame, timeout=0)                    # and there is room
        assert ring.stats()["doorbell_rings"] == 1
        child.tell()


@pytest.mark.timeout(60)
def test_arm_raises_consumer_gone(name):
    with shmring.Ring.create(name, 8192) as ring, children() as spawn, ring.producer() as p:
        child = spawn(RELEASE_ON_CUE.replace("NAME", repr(name)))
        child.expect("ready")
        while True:
            try:
                p.send(b"x" * 1000, timeout=0)
            except shmring.Full:
                break
        child.kill()                                # reaped: its owner word is dead
        with pytest.raises(shmring.ConsumerGone):
            p.arm(1000)

"""Ctrl-C: SIGINT interrupts a blocked recv() or send() promptly, and the ring
stays consistent afterwards.  The blocked call runs in a child process; the
test sends the real signal."""
import signal
import time

import pytest

import shmring
from shmring.testing.processes import children, wait_until

BLOCKED_CONSUMER = """
ring = shmring.Ring.attach(NAME)
c = ring.consumer()
try:
    say("blocking")
    c.recv()                    # nothing will come: waits forever
    say("returned")
except KeyboardInterrupt:
    say("interrupted", time.monotonic())
hear()
# Still a working consumer: the frame sent now arrives.
say("got", c.recv_bytes(timeout=5).decode())
"""


@pytest.mark.timeout(30)
def test_sigint_interrupts_blocked_recv(name):
    with shmring.Ring.create(name, 8192) as ring, children() as spawn:
        child = spawn(BLOCKED_CONSUMER.replace("NAME", repr(name)))
        child.expect("blocking")
        # Asleep in the futex: it has announced itself as a waiter.
        wait_until(lambda: ring.stats()["consumer_waits"] > 0, 5, "the consumer to sleep")
        sent = time.monotonic()
        child.signal(signal.SIGINT)
        line = child.expect("interrupted", timeout=5)
        assert float(line.split()[1]) - sent < 1.0
        with ring.producer() as p:
            p.send(b"after ctrl-c")
        child.tell()
        assert child.expect("got") == "got after ctrl-c"


BLOCKED_PRODUCER = """
ring = shmring.Ring.attach(NAME)
p = ring.producer()
n = 0
try:
    while True:
        p.send(n.to_bytes(4, "little") * 250, timeout=0)
        n += 1
except shmring.Full:
    pass
try:
    say("blocking", n)
    p.send(b"never" * 200)      # the ring stays full: waits forever
    say("returned")
except KeyboardInterrupt:
    say("interrupted", time.monotonic())
# The producer is still usable, its slot and the ring intact.
hear()
p.send(b"after ctrl-c", timeout=5)
say("sent")
hear()
"""


@pytest.mark.timeout(30)
def test_sigint_interrupts_producer_blocked_on_full_ring(name):
    with shmring.Ring.create(name, 8192) as ring, children() as spawn:
        c = ring.consumer()         # alive, but not reading
        child = spawn(BLOCKED_PRODUCER.replace("NAME", repr(name)))
        n = int(child.expect("blocking").split()[1])
        wait_until(lambda: ring.stats()["producer_waits"] > 0, 5, "the producer to sleep")
        sent = time.monotonic()
        child.signal(signal.SIGINT)
        line = child.expect("interrupted", timeout=5)
        assert float(line.split()[1]) - sent < 1.0
        # Consistent: exactly the n frames before the blocked one, in order.
        for i in range(n):
            assert c.recv_bytes(timeout=1) == i.to_bytes(4, "little") * 250
        with pytest.raises(shmring.Empty):
            c.recv(timeout=0.05)
        child.tell()
        child.expect("sent")
        assert c.recv_bytes(timeout=5) == b"after ctrl-c"
        st = ring.stats()
        assert st["fill"] == 0 and st["frames_abandoned"] == 0
        child.tell()
        c.close()


class Interrupted(Exception):
    pass


@pytest.mark.timeout(30)
def test_frames_dropped_during_an_interrupted_wait_are_released(name):
    """A frame dropped on another thread while recv() waits is queued for
    that recv(); when the wait ends with an exception (Ctrl-C, here a signal
    handler raising), the frame must still go back to the ring."""
    import os
    import threading

    def interrupt(signum, frame):
        raise Interrupted()

    previous = signal.signal(signal.SIGUSR1, interrupt)
    try:
        with shmring.Ring.create(name, 8192) as ring, ring.producer() as p, \
                ring.consumer() as c:
            p.send(b"x" * 1000)
            box = [c.recv(0)]

            def dropper():
                wait_until(lambda: ring.stats()["consumer_waits"] > 0, 10, "recv() to sleep")
                box.pop()                       # the last reference: dropped here
                os.kill(os.getpid(), signal.SIGUSR1)
            thread = threading.Thread(target=dropper)
            thread.start()
            with pytest.raises(Interrupted):
                c.recv(timeout=20)
            thread.join(10)
            assert c.held == 0
            assert ring.stats()["fill"] == 0
            p.send(b"y" * 4000, timeout=0)      # a frame of max_frame fits again
            assert c.recv_bytes(0) == b"y" * 4000
    finally:
        signal.signal(signal.SIGUSR1, previous)

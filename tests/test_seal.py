"""End of stream: ring.seal().  Producers are refused from then on, frames
already committed or claimed are still delivered, and the consumer's
iteration ends once it has them all."""
import os
import subprocess
import sys
import threading

import pytest

import shmring
from shmring import segments
from shmring.testing.processes import children, python_path, wait_until


def test_seal_refuses_producers_and_ends_iteration(ring):
    with ring.producer() as p, ring.consumer() as c:
        p.send(b"a", type=1)
        p.send(b"b", type=2)
        assert not ring.sealed and not ring.stats()["sealed"]
        ring.seal()
        assert ring.sealed and ring.stats()["sealed"]
        ring.seal()                                     # again: nothing changes
        for send in (lambda: p.send(b"c"), lambda: p.reserve(10),
                     lambda: p.send_array([1, 2]), lambda: p.reserve_array((2,), "u1")):
            with pytest.raises(shmring.Sealed, match="takes no new frames"):
                send()
        with pytest.raises(shmring.Sealed, match="0 frame"):
            p.send_many([b"x"] * 2)                     # none sent: the seal came first
        assert [(f.type, bytes(f)) for f in c] == [(1, b"a"), (2, b"b")]
        with pytest.raises(shmring.Sealed, match="every frame in it was delivered"):
            c.recv(timeout=0)
        with pytest.raises(shmring.Sealed):
            c.recv_bytes()                              # no timeout: it does not wait
        with pytest.raises(shmring.Sealed):
            c.recv_many(5)
        assert list(c) == []
        s = ring.stats()
        assert (s["frames_committed"], s["frames_received"], s["fill"]) == (2, 2, 0)


def test_send_many_reports_what_it_sent_before_the_seal(ring):
    sealer = threading.Event()

    def frames():
        yield b"one"
        yield b"two"
        ring.seal()
        sealer.set()
        yield b"three"

    with ring.producer() as p, ring.consumer() as c:
        with pytest.raises(shmring.Sealed, match="2 frame.* before the seal"):
            p.send_many(frames())
        assert sealer.is_set()
        assert c.recv_bytes_many(10) == [b"one", b"two"]
        with pytest.raises(shmring.Sealed):
            c.recv_bytes_many(10)


def test_a_claim_open_at_the_seal_is_delivered(ring):
    with ring.producer() as p, ring.consumer() as c:
        r = p.reserve(5, type=7)
        ring.seal()
        with pytest.raises(shmring.Empty):
            c.recv(timeout=0)               # claimed, not committed: the stream is not over
        memoryview(r)[:] = b"after"
        r.commit()
        with c.recv(timeout=0) as f:
            assert (f.type, bytes(f)) == (7, b"after")
        with pytest.raises(shmring.Sealed):
            c.recv(timeout=0)


def test_an_aborted_claim_is_skipped_at_the_end(ring):
    with ring.producer() as p, ring.consumer() as c:
        p.send(b"kept")
        r = p.reserve(5)
        ring.seal()
        r.abort()
        assert [bytes(f) for f in c] == [b"kept"]


def test_recv_many_keeps_its_batch_when_the_stream_ends(ring):
    with ring.producer() as p, ring.consumer() as c:
        for i in range(3):
            p.send(b"%d" % i)
        ring.seal()
        batch = c.recv_many(10, timeout=0)
        assert [bytes(f) for f in batch] == [b"0", b"1", b"2"]
        for f in batch:
            f.release()
        with pytest.raises(shmring.Sealed):
            c.recv_many(10, timeout=0)


SEAL_FROM_CHILD = """
ring = shmring.Ring.attach(NAME)
hear()
ring.seal()
say("sealed")
hear()
"""


@pytest.mark.timeout(60)
def test_seal_from_another_process_wakes_a_waiting_consumer_and_survives_its_death(name):
    with shmring.Ring.create(name, 1 << 14) as ring, ring.consumer() as c, \
            children() as spawn:
        sealer = spawn(SEAL_FROM_CHILD.replace("NAME", repr(name)))
        with ring.producer() as p:
            p.send(b"last")
        result = []
        reader = threading.Thread(target=lambda: result.extend(bytes(f) for f in c))
        reader.start()                      # drains "last", then sleeps in recv
        wait_until(lambda: ring.stats()["consumer_waits"] > 0, 10, "the consumer to sleep")
        sealer.tell()
        sealer.expect("sealed")
        reader.join(10)
        assert not reader.is_alive() and result == [b"last"]
        assert ring.stats()["wakeups_to_consumer"] >= 1
        sealer.kill()
        again = shmring.Ring.attach(name)
        assert again.sealed
        with again.producer() as p, pytest.raises(shmring.Sealed):
            p.send(b"late")
        assert segments.read_ring(ring.path)["sealed"]


WAIT_FOR_ROOM = """
ring = shmring.Ring.attach(NAME)
with ring.producer() as p:
    p.send(b"x" * 1900)
    p.send(b"x" * 1900)
    say("full")
    try:
        p.send(b"x" * 1900)
    except shmring.Sealed as e:
        say("refused", e)
"""


@pytest.mark.timeout(60)
def test_seal_refuses_a_producer_waiting_for_room(name):
    with shmring.Ring.create(name, 4096) as ring, ring.consumer(), children() as spawn:
        child = spawn(WAIT_FOR_ROOM.replace("NAME", repr(name)))
        child.expect("full")
        wait_until(lambda: ring.stats()["producer_waits"] > 0, 10, "the producer to sleep")
        ring.seal()
        assert "takes no new frames" in child.expect("refused")
        assert child.wait() == 0
        assert ring.stats()["wakeups_to_producers"] >= 1


def test_info_and_ls_show_the_seal(name, tmp_path):
    with shmring.Ring.create(name, 8192) as ring:
        def cli(*args):
            out = subprocess.run([sys.executable, "-m", "shmring", *args], capture_output=True,
                                 text=True, timeout=60, env=dict(os.environ, PYTHONPATH=python_path()))
            assert out.returncode == 0, out.stderr
            return out.stdout
        assert "sealed               False" in cli("info", name)
        ring.seal()
        assert "sealed               True" in cli("info", name)
        line = next(ln for ln in cli("ls").splitlines() if ln.startswith(name))
        assert line.endswith("live, sealed")


def test_stats_let_a_consumer_see_that_every_producer_is_gone(ring):
    """The third pattern of docs/usage.md: a consumer that expected two
    producers seals the ring itself once both have come and gone."""
    with ring.consumer() as c:
        assert (ring.stats()["producers"], ring.stats()["producers_opened"]) == (0, 0)
        for i in range(2):
            with ring.producer() as p:
                p.send(b"%d" % i)
                assert ring.stats()["producers"] == 1
        s = ring.stats()
        assert (s["producers"], s["producers_opened"]) == (0, 2)
        ring.seal()
        assert [bytes(f) for f in c] == [b"0", b"1"]

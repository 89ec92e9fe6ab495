"""The bridge end to end: real producer, `shmring bridge send`, `shmring
bridge recv` and consumer processes, over loopback TCP, between two rings."""
import contextlib
import os
import signal
import sys
import uuid

import pytest
from _bridge import (
    bridges,
    check,
    drain,
    in_order,
    join,
    receive,
    receive_while,
    receiver,
    rss,
    start_producers,
    stop,
)

import shmring
from shmring.testing.processes import Child, wait_until

EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs",
                        "examples")

MiB = 1 << 20


@pytest.fixture
def ring():
    """Makes rings with unique names; all are removed afterwards."""
    made = []

    def make(capacity=MiB, **kw):
        r = shmring.Ring.create(f"test-bridge-{uuid.uuid4().hex[:12]}", capacity, **kw)
        made.append(r)
        return r
    yield make
    for r in made:
        with contextlib.suppress(FileNotFoundError):
            r.unlink()


def test_many_producers_arrive_in_order_with_type_dtype_and_shape(ring):
    a, b = ring(), ring()
    producers, count = 3, 200
    with bridges() as start, b.consumer() as far:
        recv, endpoint = receiver(start, b.name)
        send = start("send", a.name, endpoint)
        procs = start_producers(a, count, producers)
        got = receive(far, producers * count, a.max_frame)
        join(procs)
        assert stop(send) == 0
        send.wait_for(r"ended after 600 frames; the receiver has them all")
        recv.wait_for(r"stream [0-9a-f]{16} from 127.0.0.1 ended after 600 frames")
        assert stop(recv, signal.SIGINT) == 0
    assert in_order(got) == {p: list(range(count)) for p in range(producers)}
    assert a.stats()["frames_received"] == producers * count


def test_two_senders_into_one_receiver(ring):
    a1, a2, b = ring(), ring(), ring()
    count = 150
    with bridges() as start, b.consumer() as far:
        recv, endpoint = receiver(start, b.name)
        senders = [start("send", a.name, endpoint) for a in (a1, a2)]
        procs = start_producers(a1, count, 1, first=0) + start_producers(a2, count, 1, first=1)
        got = receive(far, 2 * count, a1.max_frame)
        join(procs)
        for s in senders:
            assert stop(s) == 0
        assert stop(recv) == 0
    assert in_order(got) == {0: list(range(count)), 1: list(range(count))}
    assert recv.log().count(" started") == 2 and recv.log().count("ended after 150 frames") == 2


def test_back_pressure_blocks_producers_drops_nothing_and_bounds_memory(ring):
    """A far consumer that stops: the remote ring fills, the receiver stops
    reading, ZeroMQ stops the sender, the local ring fills and the producer
    waits.  Longer than the sender's heartbeat timeout, without a reconnect."""
    size, count = 256 * 1024, 400                   # 100 MiB in all
    a, b = ring(2 * MiB), ring(2 * MiB)
    with bridges() as start:
        recv, endpoint = receiver(start, b.name, "--stats", "0.2")   # buffer: b's capacity
        before = rss(recv.proc.pid)
        send = start("send", a.name, endpoint, "--hwm", "4", "--heartbeat", "1")
        procs = start_producers(a, count, 1, size=size)
        send.wait_for(r"receiver connected")
        wait_stalled(a, b)              # nobody reads b
        mark = send.mark()
        first = a.stats()["producer_waits"]
        recv.wait_for(r"frames \d+", start=recv.mark())     # alive while stalled
        # Stalled for more than twice the sender's heartbeat timeout: no reconnect.
        with pytest.raises(AssertionError, match="no line matching"):
            send.wait_for(r"disconnected|NOT connected", timeout=2.5, start=mark)
        assert a.stats()["producer_waits"] > first
        assert procs[0].is_alive()
        grown = rss(recv.proc.pid) - before
        assert grown < b.capacity + 8 * MiB, \
            f"the receiver grew by {grown / MiB:.0f} MiB while stalled"
        with b.consumer() as far:
            got = receive(far, count, a.max_frame, size=size)
        join(procs)
        assert stop(send) == 0
        recv.wait_for(r"frames 400, [\d.]+ GB/s, drops 0, gaps 0 \(0 frames lost\), malformed 0")
        assert stop(recv) == 0
    assert in_order(got) == {0: list(range(count))}
    assert a.stats()["frames_aborted"] == 0 and b.stats()["frames_aborted"] == 0


def wait_stalled(a, b):
    """Until the producer into a has waited for room and b is mostly full."""
    wait_until(lambda: a.stats()["producer_waits"] and b.stats()["fill"] > b.capacity // 2,
               30, "a stalled pipeline")


def test_drop_when_full_counts_the_drops_and_keeps_order(ring):
    size, count = 64 * 1024, 200
    a, b = ring(4 * MiB), ring(MiB)                # b holds 15 of them
    with bridges() as start:
        recv, endpoint = receiver(start, b.name, "--drop-when-full", "--stats", "0.1")
        send = start("send", a.name, endpoint)
        procs = start_producers(a, count, 1, size=size)
        join(procs)
        m = recv.wait_for(r"frames (\d+), [\d.]+ GB/s, drops (\d+), gaps 0 \(0 frames lost\)",
                          until=lambda m: int(m.group(1)) + int(m.group(2)) >= count)
        kept, dropped = int(m.group(1)), int(m.group(2))
        assert kept + dropped == count and dropped > 0 and kept >= 15
        recv.wait_for(r"ring .* is full: dropping frames")
        with b.consumer() as far:
            got = drain(far, a.max_frame, size=size)
        assert stop(send) == 0 and stop(recv) == 0
    seqs = in_order(got)[0]
    assert len(seqs) == kept and seqs == sorted(set(seqs))


def test_receiver_killed_and_restarted(ring):
    """In-flight frames are lost; the new receiver reports where the stream
    joined it; nothing is repeated or reordered."""
    size, count = 128 * 1024, 300
    a, b = ring(4 * MiB), ring(4 * MiB)
    with bridges() as start, b.consumer() as far:
        first, endpoint = receiver(start, b.name)
        send = start("send", a.name, endpoint, "--hwm", "8")
        procs = start_producers(a, count, 1, size=size)
        got = receive(far, 50, a.max_frame, size=size)
        first.kill()
        got += drain(far, a.max_frame, size=size)     # what the dead one wrote
        second, _ = receiver(start, b.name, endpoint=endpoint)
        joined = int(second.wait_for(r"joins at sequence (\d+)").group(1))
        while got[-1][1] != count - 1:
            got += receive(far, 1, a.max_frame, size=size)
        join(procs)
        assert stop(send) == 0
        second.wait_for(r"ended after 300 frames")
        got += drain(far, a.max_frame, size=size)
        assert stop(second) == 0
    seqs = in_order(got)[0]
    assert seqs == sorted(set(seqs)), "repeated or reordered"
    before = [s for s in seqs if s < joined]
    assert seqs[len(before):] == list(range(joined, count))
    lost = set(range(joined)) - set(before)
    assert lost == set(range(before[-1] + 1, joined)), "lost frames other than in flight"
    # In flight: ZeroMQ's queues on both sides and the kernel's socket buffers.
    assert len(lost) * size <= 8 * size + b.capacity + 16 * MiB


def test_sender_killed_a_new_sender_delivers_what_it_held(ring):
    size, count = 128 * 1024, 300
    a, b = ring(4 * MiB), ring(4 * MiB)
    with bridges() as start, b.consumer() as far:
        recv, endpoint = receiver(start, b.name)
        first = start("send", a.name, endpoint)
        procs = start_producers(a, count, 1, size=size)
        got = receive(far, 50, a.max_frame, size=size)
        first.kill()
        second = start("send", a.name, endpoint)
        while len({seq for _, seq in got}) < count:
            got += receive(far, 1, a.max_frame, size=size)
        join(procs)
        assert stop(second) == 0
        recv.wait_for(r"ended after \d+ frames")
        got += drain(far, a.max_frame, size=size)
        assert stop(recv) == 0
    seqs = in_order(got)[0]
    assert set(seqs) == set(range(count)), "lost frames"
    # Order holds within each sender; the second one starts again from the
    # first frame the first one had not released: those may come twice.
    rewinds = [i for i in range(1, len(seqs)) if seqs[i] <= seqs[i - 1]]
    assert len(rewinds) <= 1, f"reordered: {seqs}"
    if rewinds:
        repeated = rewinds[0] - seqs.index(seqs[rewinds[0]])
        assert seqs[rewinds[0] - repeated:rewinds[0]] == seqs[rewinds[0]:rewinds[0] + repeated]
        assert repeated * (size + 64) <= a.capacity, "more repeats than the ring held"
    else:
        assert seqs == list(range(count))
    assert recv.log().count(" started") == 2


@pytest.mark.parametrize("how", ["SIGTERM", "SIGINT"])
def test_orderly_shutdown_delivers_everything_taken(ring, how):
    """Stop the sender while frames are queued in ZeroMQ behind a stalled
    far consumer: they all arrive, the rest stay in the local ring."""
    size, count = 256 * 1024, 100
    a, b = ring(4 * MiB), ring(2 * MiB)
    with bridges() as start:
        recv, endpoint = receiver(start, b.name)
        send = start("send", a.name, endpoint, "--stats", "0.1")
        procs = start_producers(a, count, 1, size=size)
        wait_stalled(a, b)
        taken = int(send.wait_for(r"frames (\d+), [\d.]+ GB/s, in ZeroMQ [1-9]",
                                  start=send.mark()).group(1))
        send.signal(getattr(signal, how))
        with b.consumer() as far:
            got = receive_while(far, lambda: send.proc.poll() is None, a.max_frame, size=size)
        assert send.wait() == 0
        sent = int(send.wait_for(r"ended after (\d+) frames; the receiver has them all").group(1))
        with a.consumer() as near:
            left = receive(near, count - sent, a.max_frame, size=size)
        join(procs)
        assert stop(recv) == 0
    assert len(got) == sent >= taken
    assert in_order(got + left) == {0: list(range(count))}


def test_close_from_python_delivers_everything_taken(ring):
    size, count, forwarded = 256 * 1024, 60, 40
    a, b = ring(32 * MiB), ring(2 * MiB)           # a holds them all, b 7
    with bridges() as start:
        recv, endpoint = receiver(start, b.name)
        join(start_producers(a, count, 1, size=size))
        sender = Child(f"""
            import shmring.bridge
            s = shmring.bridge.Sender({a.name!r}, {endpoint!r})
            s.run(frames={forwarded})
            say("ran")
            say("confirmed", s.close(timeout=20))
            """)
        try:
            sender.expect("ran", timeout=20)        # handed to ZeroMQ; b is full
            with b.consumer() as far:
                got = receive(far, forwarded, a.max_frame, size=size)
                sender.expect("confirmed True", timeout=20)
            assert sender.wait() == 0
        finally:
            sender.close()
        with a.consumer() as near:
            left = drain(near, a.max_frame, size=size)
        assert stop(recv) == 0
    assert [seq for _, seq in got] == list(range(forwarded))
    assert [seq for _, seq in left] == list(range(forwarded, count))


def test_a_frame_too_large_for_the_far_ring_breaks_the_connection_and_is_counted(ring):
    """ZeroMQ refuses a message over the receiving ring's max_frame (it
    bounds the receiver's memory): the sender reconnects and the receiver
    counts and logs the gap, however many frames were in flight with it."""
    a, b = ring(4 * MiB), ring(MiB)
    with bridges() as start, b.consumer() as far, a.producer() as p:
        recv, endpoint = receiver(start, b.name, "--stats", "0.1")
        send = start("send", a.name, endpoint)
        for seq in range(10):
            p.send(bytes([seq]) * 1000, type=seq)
        got = [f.type for f in (far.recv(timeout=20) for _ in range(10))]
        mark = send.mark()
        p.send(bytes(b.max_frame + 1), type=10)
        send.wait_for("receiver disconnected", start=mark)
        send.wait_for("receiver connected", start=mark)
        for seq in range(11, 20):
            p.send(bytes([seq]) * 1000, type=seq)
        got += [f.type for f in (far.recv(timeout=20) for _ in range(9))]
        recv.wait_for(r"stream [0-9a-f]{16} from 127.0.0.1: 1 frame\(s\) lost, sequence 10 to 10")
        recv.wait_for(r"gaps 1 \(1 frames lost\)")
        assert stop(send) == 0 and stop(recv) == 0
    assert got == list(range(10)) + list(range(11, 20))


def test_send_and_recv_refuse_a_missing_ring_unless_create(ring):
    missing = f"test-bridge-{uuid.uuid4().hex[:12]}"
    with bridges() as start:
        r = start("recv", "127.0.0.1:0", missing)
        assert r.wait() == 1
        assert f"ring {missing!r} does not exist: create it first, or pass --create" in r.log()
        r, endpoint = receiver(start, missing, "--create", str(MiB))
        try:
            created = shmring.Ring.attach(missing)
            assert created.capacity == MiB
            assert stop(r) == 0
        finally:
            os.unlink(created.path)


def test_check_helper_sees_a_wrong_frame(ring):
    """check() is what the tests above rest on: a frame that is not what its
    type says must fail it."""
    r = ring()
    with r.producer() as p, r.consumer() as c:
        p.send(b"not a test frame", type=5)
        with c.recv(0) as f, pytest.raises(AssertionError):
            check(f, r.max_frame)


def test_the_two_host_example_runs_as_two_loopback_processes():
    example = [sys.executable, os.path.join(EXAMPLES, "bridge_video.py")]
    with bridges() as start:
        receive = start(argv=[*example, "receive", "--listen", "127.0.0.1:0", "--frames", "40"])
        endpoint = receive.wait_for(r"listening on (\S+)").group(1)
        send = start(argv=[*example, "send", endpoint, "--frames", "40"])
        assert send.wait(60) == 0, send.log()
        assert send.log().endswith("sent 40 frames; host B has them all")
        receive.wait_for(r"received 40 frames of \(1080, 1920, 4\), in order")
        assert stop(receive, signal.SIGINT) == 0, receive.log()

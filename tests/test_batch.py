"""send_many, recv_many and recv_bytes_many, across real processes."""
import pytest

import shmring
from shmring.testing.processes import start_process


def frames(n, start=0, tag=b""):
    return [tag + i.to_bytes(4, "little") * (1 + i % 7) for i in range(start, start + n)]


def produce(ring, n, batch, tag):
    with ring.producer() as p:
        for start in range(0, n, batch):
            count = min(batch, n - start)
            assert p.send_many(frames(count, start, tag), type=7) == count


def test_send_many_then_recv_many_in_order(ring):
    with ring.producer() as p, ring.consumer() as c:
        assert p.send_many(frames(10), type=3) == 10
        got = c.recv_many(4)
        assert [bytes(f) for f in got] == frames(4)
        assert all(f.type == 3 for f in got)
        for f in got:
            f.release()
        rest = c.recv_many(100, timeout=0)
        assert [bytes(f) for f in rest] == frames(6, 4)
        del rest                        # dropping the list releases the frames
        assert c.held == 0
        assert ring.stats()["fill"] == 0


def test_recv_many_times_out_with_empty_list(ring):
    with ring.consumer() as c:
        assert c.recv_many(8, timeout=0) == []
        assert c.recv_many(8, timeout=0.05) == []
        assert c.recv_bytes_many(8, timeout=0.05) == []
        with pytest.raises(ValueError):
            c.recv_many(0)


def test_send_many_returns_partial_count_when_full(ring):
    big = b"x" * 8000
    with ring.producer() as p, ring.consumer() as c:
        sent = p.send_many([big] * 100, timeout=0.05)
        assert 0 < sent < 100
        assert len(c.recv_bytes_many(1000, timeout=0)) == sent
        assert c.held == 0


def test_send_many_rejects_non_buffers_and_keeps_earlier_frames(ring):
    with ring.producer() as p, ring.consumer() as c:
        with pytest.raises(TypeError):
            p.send_many([b"ok", "not bytes"])
        assert c.recv_bytes_many(10, timeout=0) == [b"ok"]
        with pytest.raises(shmring.FrameTooLarge):
            p.send_many([b"y" * (ring.max_frame + 1)])


def test_batches_across_processes(ring):
    """Two producer processes send 20,000 frames each in batches through a
    64 KiB ring, so they wait for space; every frame arrives once, and each
    producer's frames arrive in its order."""
    n = 20000
    with ring.consumer() as c:
        procs = [start_process(produce, ring, n, 97, tag) for tag in (b"A", b"B")]
        got = []
        while len(got) < 2 * n:
            batch = c.recv_bytes_many(500, timeout=30)
            assert batch, "producers stalled"
            got.extend(batch)
        for proc in procs:
            proc.join(30)
            assert proc.exitcode == 0
        assert c.recv_many(10, timeout=0) == []
    for tag in (b"A", b"B"):
        assert [f for f in got if f[:1] == tag] == frames(n, 0, tag)


def test_recv_many_zero_copy_views(ring):
    with ring.producer() as p, ring.consumer() as c:
        p.send_many([b"abc", b"defg"])
        a, b = c.recv_many(2)
        assert bytes(memoryview(a)) == b"abc" and len(b) == 4
        view = memoryview(b)
        with pytest.raises(BufferError):
            b.release()
        view.release()
        b.release()
        a.release()
        assert c.held == 0

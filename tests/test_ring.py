"""The Python API in one process: create/attach, send/reserve/recv, timeouts,
release rules, arrays and errors."""
import os
import stat

import numpy as np
import pytest

import shmring
from shmring import _ring, layout


def test_create_attach_properties(name):
    with shmring.Ring.create(name, 8192, max_frame=1000) as ring:
        assert ring.name == name
        assert ring.capacity == 8192
        assert ring.max_frame == 1000
        assert ring.path == os.path.join(_ring.segment_dir(), "shmring." + name)
        assert stat.S_IMODE(os.stat(ring.path).st_mode) == 0o600
        other = shmring.Ring.attach(name)
        assert (other.capacity, other.max_frame) == (8192, 1000)
        with ring.producer() as p:
            p.send(b"via creator")
        with other.consumer() as c:
            assert c.recv_bytes(timeout=0) == b"via creator"
    assert ring.closed
    with pytest.raises(shmring.RingError):
        ring.producer()


def test_default_max_frame_is_half_the_ring(name):
    with shmring.Ring.create(name, 1 << 16) as ring:
        assert ring.max_frame == (1 << 16) // 2 - 64


@pytest.mark.parametrize("capacity", [0, 100, 4095, 6000, 1 << 13 | 1])
def test_bad_capacity(name, capacity):
    with pytest.raises(ValueError, match="power of two"):
        shmring.Ring.create(name, capacity)
    assert not os.path.exists(_ring.segment_path(name))


@pytest.mark.parametrize("bad", ["", "a/b", "../x", ".hidden", "x" * 201, "sp ace", 7])
def test_bad_name(bad):
    with pytest.raises(ValueError, match="bad ring name"):
        shmring.Ring.create(bad, 4096)


def test_bad_max_frame(name):
    with pytest.raises(ValueError, match="max_frame"):
        shmring.Ring.create(name, 4096, max_frame=4096)


def test_create_existing_and_attach_missing(name):
    with shmring.Ring.create(name, 4096), pytest.raises(FileExistsError):
        shmring.Ring.create(name, 4096)
    os.unlink(_ring.segment_path(name))
    with pytest.raises(FileNotFoundError):
        shmring.Ring.attach(name)


def test_unlink_keeps_open_mappings(name):
    ring = shmring.Ring.create(name, 4096)
    p, c = ring.producer(), ring.consumer()
    ring.unlink()
    assert not os.path.exists(ring.path)
    p.send(b"still works")
    assert c.recv_bytes(0) == b"still works"


@pytest.mark.parametrize("data", [b"bytes", bytearray(b"bytearray"), memoryview(b"mv"),
                                  np.arange(10, dtype=np.int16), b""])
def test_send_buffers(ring, data):
    with ring.producer() as p, ring.consumer() as c:
        p.send(data, type=3)
        with c.recv(timeout=1) as f:
            assert f.type == 3
            assert bytes(f) == bytes(memoryview(data).cast("B"))
            assert len(f) == memoryview(data).nbytes


def test_send_rejects_non_contiguous(ring):
    with ring.producer() as p, ring.consumer() as c:
        with pytest.raises(ValueError, match="C-contiguous"):
            p.send(np.arange(10)[::2])
        with pytest.raises(shmring.Empty):
            c.recv(0)


@pytest.mark.parametrize("type", [-1, 2**32 - 1, 2**40, 1.5])
def test_bad_type(ring, type):
    with ring.producer() as p:
        with pytest.raises((ValueError, TypeError, OverflowError)):
            p.send(b"x", type=type)
        p.send(b"x", type=2**32 - 2)


def test_frame_too_large_writes_nothing(ring):
    with ring.producer() as p, ring.consumer() as c:
        with pytest.raises(shmring.FrameTooLarge) as info:
            p.send(bytes(ring.max_frame + 1))
        assert isinstance(info.value, ValueError)
        with pytest.raises(shmring.FrameTooLarge):
            p.reserve(ring.max_frame + 1)
        before = ring.stats()
        assert before["tail"] == before["head"]
        p.send(bytes(ring.max_frame))
        assert len(c.recv(0)) == ring.max_frame


def test_empty_timeouts(ring):
    with ring.consumer() as c:
        for timeout in (0, 0.0, 0.05):
            with pytest.raises(shmring.Empty) as info:
                c.recv(timeout=timeout)
            assert isinstance(info.value, TimeoutError)
        with pytest.raises(ValueError, match="timeout"):
            c.recv(timeout=-1)
        assert ring.stats()["consumer_waits"] >= 1


def fill(producer, nbytes):
    """Send frames until the ring refuses; returns how many fit."""
    sent = 0
    while True:
        try:
            producer.send(bytes(nbytes), timeout=0)
        except shmring.Full:
            return sent
        sent += 1


def test_full_timeouts_and_space_returns(ring):
    with ring.producer() as p, ring.consumer() as c:
        sent = fill(p, 1000)
        assert sent == ring.capacity // 1088       # 64-byte header, 64-byte alignment
        for timeout in (0, 0.05):
            with pytest.raises(shmring.Full) as info:
                p.send(b"x" * 1000, timeout=timeout)
            assert isinstance(info.value, TimeoutError)
        held = [c.recv(), c.recv()]                 # space stays in use while held
        assert ring.stats()["frames_held"] == 2
        with pytest.raises(shmring.Full, match=rf"{sent * 1088} of {ring.capacity} bytes in use; "
                           "the consumer holds 2 frame.s. unreleased"):
            p.send(b"x" * 1000, timeout=0)
        held.pop().release()
        assert ring.stats()["frames_held"] == 1
        del held                                    # a dropped frame is released too
        assert ring.stats()["frames_held"] == 0
        p.send(b"y" * 1000, timeout=0)
        got = [c.recv_bytes(0) for _ in range(sent - 1)]
        assert got[-1] == b"y" * 1000


def test_zero_length_frames(ring):
    with ring.producer() as p, ring.consumer() as c:
        for i in range(3 * ring.capacity // 64):
            p.send(b"", type=i)
            with c.recv(0) as f:
                assert (len(f), f.type, bytes(f)) == (0, i, b"")
                assert f.array().shape == (0,)


def test_exact_wrap(name):
    """A frame that ends exactly at the end of the data area, the next one
    starting at offset 0, and one that needs padding."""
    with shmring.Ring.create(name, 4096) as ring, ring.producer(rewind=False) as p, \
            ring.consumer() as c:
        for size in (1984, 1984 - 64, 0):            # 2048 + 1984 + 64 = 4096 exactly
            p.send(bytes([size % 251]) * size)
            assert c.recv_bytes(0) == bytes([size % 251]) * size
        assert ring.stats()["tail"] == 4096
        # a starts at offset 0, b ends at offset 3136, c needs 960 bytes of padding
        for data in (b"a" * 1000, b"b" * 1984, b"c" * 1984):
            p.send(data, timeout=0)
            assert c.recv_bytes(0) == data
        assert ring.stats()["tail"] == 4096 + 1088 + 2048 + 960 + 2048


@pytest.mark.parametrize("start", [0, 2**32 - 4096, 2**64 - 3 * 4096])
def test_positions_near_overflow(name, start):
    with shmring.Ring.create(name, 4096, _start=start) as ring:
        with ring.producer() as p, ring.consumer() as c:
            for i in range(200):
                n = (i * 389) % (ring.max_frame + 1)
                p.send(bytes([i % 256]) * n, type=i)
                f = c.recv(0)
                assert (f.type, bytes(f)) == (i, bytes([i % 256]) * n)
                f.release()
        assert ring.stats()["tail"] != start


def test_reserve_commit_and_abort(ring):
    with ring.producer() as p, ring.consumer() as c:
        with p.reserve(5, type=1) as r:
            memoryview(r)[:] = b"hello"
        assert r.committed
        with pytest.raises(RuntimeError), p.reserve(5, type=2) as r:
            memoryview(r)[:] = b"WRONG"
            raise RuntimeError("caller failed")
        r = p.reserve(3, type=3)
        r.abort()
        r = p.reserve(3, type=4)
        memoryview(r)[:] = b"end"
        r.commit()
        with pytest.raises(shmring.RingError):
            r.commit()
        assert [(f.type, bytes(f)) for f in (c.recv(0), c.recv(0))] == \
            [(1, b"hello"), (4, b"end")]
        with pytest.raises(shmring.Empty):
            c.recv(0)
        assert ring.stats()["frames_aborted"] == 2


def test_reserve_refuses_commit_with_live_view(ring):
    with ring.producer() as p, ring.consumer() as c:
        r = p.reserve(4)
        view = memoryview(r)
        view[:] = b"abcd"
        with pytest.raises(BufferError):
            r.commit()
        view.release()
        r.commit()
        assert c.recv_bytes(0) == b"abcd"
        with pytest.raises(ValueError):
            memoryview(r)


def test_one_reservation_at_a_time(ring):
    with ring.producer() as p:
        r = p.reserve(10)
        with pytest.raises(shmring.RingError, match="open reservation"):
            p.send(b"x")
        r.abort()
        p.send(b"x")


def test_dropped_reservation_aborts(ring):
    with ring.producer() as p, ring.consumer() as c:
        p.reserve(10)                     # never committed, garbage at once
        p.send(b"after")
        assert c.recv_bytes(0) == b"after"


def test_frame_is_read_only_and_unusable_after_release(ring):
    with ring.producer() as p, ring.consumer() as c:
        p.send(b"data")
        f = c.recv(0)
        view = memoryview(f)
        assert view.readonly
        with pytest.raises(TypeError):
            view[0] = 1
        with pytest.raises(BufferError):
            f.release()
        view.release()
        f.release()
        assert f.released
        for use in (memoryview, len, bytes, lambda f: f.array()):
            with pytest.raises(ValueError, match="released"):
                use(f)
        f.release()                      # twice is harmless


def test_out_of_order_release(name):
    with shmring.Ring.create(name, 4096) as ring, ring.producer() as p, ring.consumer() as c:
        frame = 1024 - layout.RECORD_HEADER     # four records fill the ring
        for i in range(4):
            p.send(bytes([i]) * frame, timeout=0)
        with pytest.raises(shmring.Full):
            p.send(bytes(frame), timeout=0)
        frames = [c.recv(0) for _ in range(4)]
        assert c.held == 4
        for i in (2, 1, 3):               # head cannot move past frame 0
            frames[i].release()
            with pytest.raises(shmring.Full):
                p.send(bytes(frame), timeout=0)
        assert bytes(frames[0]) == bytes(frame)
        frames[0].release()               # now the whole prefix is free
        assert ring.stats()["fill"] == 0
        for _ in range(4):
            p.send(bytes([9]) * frame, timeout=0)
        assert c.held == 0


def test_dropped_frame_is_released(ring):
    with ring.producer() as p, ring.consumer() as c:
        for _ in range(3 * ring.capacity // layout.record_size(1024)):
            p.send(bytes(1024), timeout=0)
            c.recv(0)                     # never released explicitly
        assert ring.stats()["fill"] == 0


@pytest.mark.parametrize("dtype", ["u1", "<i4", ">i8", "<f2", "<f8", "<c16", "?", "<M8[ns]", "S5"])
@pytest.mark.parametrize("shape", [(), (0,), (7,), (3, 4), (2, 3, 1, 2)])
def test_arrays_keep_dtype_and_shape(ring, dtype, shape):
    arr = (np.arange(int(np.prod(shape)), dtype=np.int64) % 100).astype(dtype).reshape(shape)
    with ring.producer() as p, ring.consumer() as c:
        p.send_array(arr, type=9)
        f = c.recv(0)
        got = f.array()
        assert (got.dtype, got.shape, f.type) == (arr.dtype, arr.shape, 9)
        np.testing.assert_array_equal(got, arr)
        assert not got.flags.writeable
        assert got.ctypes.data % 64 == 0
        del got
        f.release()


def test_send_array_any_strides_and_reserve_array(ring):
    base = np.arange(60, dtype=np.float32).reshape(6, 10)
    with ring.producer() as p, ring.consumer() as c:
        p.send_array(base[::2, ::3])
        with p.reserve_array((2, 2), np.uint16) as r:
            r.array()[...] = [[1, 2], [3, 4]]
        np.testing.assert_array_equal(c.recv(0).array(), base[::2, ::3])
        np.testing.assert_array_equal(c.recv(0).array(), [[1, 2], [3, 4]])
        p.send(b"\x01\x02")
        assert c.recv(0).array().tolist() == [1, 2]


@pytest.mark.parametrize("bad", [np.array([object()]), np.zeros(2, dtype="i4,f8"),
                                 np.zeros((1,) * 9)])
def test_send_array_rejects(ring, bad):
    with ring.producer() as p, pytest.raises(ValueError):
        p.send_array(bad)


def test_one_consumer(ring):
    c = ring.consumer()
    with pytest.raises(shmring.ConsumerExists):
        ring.consumer()
    with pytest.raises(shmring.ConsumerExists):
        shmring.Ring.attach(ring.name).consumer()
    c.close()
    ring.consumer().close()


def test_recv_bytes_and_iteration(ring):
    with ring.producer() as p, ring.consumer() as c:
        for i in range(5):
            p.send(b"%d" % i, type=i)
        assert c.recv_bytes() == b"0"
        got = []
        for frame in c:
            got.append((frame.type, bytes(frame)))
            frame.release()
            if frame.type == 4:
                break
        assert got == [(i, b"%d" % i) for i in range(1, 5)]


def test_stats(ring):
    with ring.producer() as p, ring.consumer() as c:
        p.send(b"x" * 100)
        p.send(b"y" * 50)
        s = ring.stats()
        assert (s["frames_committed"], s["bytes_committed"], s["producers"]) == (2, 150, 1)
        assert s["fill"] == 192 + 128 and s["consumer_pid"] == os.getpid()
        c.recv().release()
        s = ring.stats()
        assert (s["frames_received"], s["bytes_received"], s["fill"]) == (1, 100, 128)


def test_producer_slots_run_out(name):
    with shmring.Ring.create(name, 4096, producers=2) as ring:
        a, b = ring.producer(), ring.producer()
        with pytest.raises(shmring.RingError, match="slots"):
            ring.producer()
        a.close()
        ring.producer()
        b.close()


def test_consumer_and_ring_are_not_misused(ring):
    import pickle
    with ring.consumer() as c, pytest.raises(TypeError):
        pickle.dumps(c)
    with pytest.raises(TypeError):
        shmring.Ring()
    c.close()
    with pytest.raises(shmring.RingError, match="closed"):
        c.recv(0)


def test_reservation_dies_with_its_producer(ring):
    with ring.consumer() as c:
        p = ring.producer()
        r = p.reserve(8)
        view = memoryview(r)
        with pytest.raises(BufferError):
            p.close()                     # a live view could write into reused space
        view.release()
        p.close()                         # aborts the claim
        with pytest.raises(shmring.RingError, match="no longer open"):
            r.commit()
        with ring.producer() as q:
            stale = q.reserve(4)
            stale.abort()
            fresh = q.reserve(4)          # the stale object must not commit this one
            with pytest.raises(shmring.RingError):
                stale.commit()
            memoryview(fresh)[:] = b"real"
            fresh.commit()
        assert c.recv_bytes(0) == b"real"
        with pytest.raises(shmring.Empty):
            c.recv(0)


def test_owner_liveness():
    import sys

    from shmring import _core
    from shmring.testing import processes
    assert _core.alive(os.getpid())       # start time unknown: judged by the pid
    child = processes.popen([sys.executable, "-c", "pass"])
    child.wait(30)
    assert not _core.alive(child.pid)
    assert not _core.alive(0)


def test_frame_dropped_while_another_thread_waits_is_released(ring):
    import threading
    import time
    with ring.producer() as p, ring.consumer() as c:
        p.send(b"x" * 1000)
        frame = c.recv(0)
        got = []
        reader = threading.Thread(target=lambda: got.append(bytes(c.recv(timeout=30))))
        reader.start()
        deadline = time.monotonic() + 30
        while ring.stats()["consumer_waits"] == 0:    # the reader sleeps in recv()
            assert time.monotonic() < deadline
            time.sleep(0.001)
        del frame                                     # dropped on this thread meanwhile
        p.send(b"y")
        reader.join(30)
        assert got == [b"y"]
        assert ring.stats()["fill"] == 0


def test_closed_producers_reservation_gives_no_view(ring):
    """After close() the claim is gone and the space may be a later frame's:
    no new view, array or commit may reach it."""
    with ring.consumer() as c:
        p = ring.producer()
        r = p.reserve(8)
        p.close()
        for use in (memoryview, lambda r: r.array(), lambda r: r.commit()):
            with pytest.raises(shmring.RingError, match="no longer open"):
                use(r)
        with ring.producer() as q:
            q.send(b"another producer's frame")
        with pytest.raises(shmring.RingError):
            memoryview(r)
        assert c.recv_bytes(0) == b"another producer's frame"


@pytest.mark.parametrize("opener", [lambda r: r.producer(spin=-1), lambda r: r.consumer(spin=-1),
                                    lambda r: r.consumer(stall_timeout=-1)])
def test_bad_argument_takes_no_slot(name, opener):
    """Arguments are validated before the slot or consumer word is taken,
    even while the exception (and its traceback) is alive."""
    with shmring.Ring.create(name, 4096, producers=1) as ring:
        with pytest.raises(ValueError) as info:
            opener(ring)
        assert info.value is not None
        ring.producer().close()
        ring.consumer().close()


@pytest.mark.parametrize("bad", [-1, -0.5, float("nan"), float("-inf")])
def test_negative_or_nan_timeout_is_a_value_error(ring, bad):
    with ring.producer() as p, ring.consumer() as c:
        calls = [lambda: p.send(b"x", timeout=bad), lambda: p.reserve(1, timeout=bad),
                 lambda: p.send_many([b"x"], timeout=bad),
                 lambda: p.reserve_array(1, "u1", timeout=bad),
                 lambda: c.recv(timeout=bad), lambda: c.recv_bytes(timeout=bad),
                 lambda: c.recv_many(2, timeout=bad), lambda: c.recv_bytes_many(2, timeout=bad)]
        for call in calls:
            with pytest.raises(ValueError, match="timeout"):
                call()
        assert ring.stats()["tail"] == ring.stats()["head"]      # nothing was claimed


def test_infinite_timeout_waits_for_a_frame(ring):
    import threading
    with ring.producer() as p, ring.consumer() as c:
        got = []
        reader = threading.Thread(target=lambda: got.append(c.recv_bytes(timeout=float("inf"))))
        reader.start()
        p.send(b"late")
        reader.join(30)
        assert got == [b"late"]


def test_unpickling_leaves_the_segment_directory_alone(tmp_path, monkeypatch):
    import pickle
    import uuid
    monkeypatch.setenv("SHMRING_DIR", str(tmp_path))
    ring = shmring.Ring.create(f"test-{uuid.uuid4().hex[:12]}", 4096)
    data = pickle.dumps(ring)
    monkeypatch.delenv("SHMRING_DIR")
    try:
        other = pickle.loads(data)
        assert other.path == ring.path
        assert "SHMRING_DIR" not in os.environ
        assert _ring.segment_dir() == "/dev/shm"
    finally:
        ring.unlink()


def test_with_block_keeps_the_frame_for_its_views(ring):
    """The obvious numpy consumer: the array outlives the block.  No error;
    the space comes back when the last view dies."""
    with ring.producer() as p, ring.consumer() as c:
        p.send_array(np.arange(100, dtype=np.int64))
        with c.recv(0) as f:
            a = f.array()
            b = memoryview(f)
        assert ring.stats()["fill"] > 0 and c.held == 1
        del a
        assert ring.stats()["fill"] > 0             # b still views the frame
        b.release()
        assert ring.stats()["fill"] == 0 and c.held == 0
        del f
        assert ring.stats()["fill"] == 0


def test_last_view_dying_during_a_recv_is_released_when_it_ends(ring):
    import threading
    import time
    with ring.producer() as p, ring.consumer() as c:
        p.send(b"x" * 100)
        with c.recv(0) as f:
            view = memoryview(f)
        del f
        got = []
        reader = threading.Thread(target=lambda: got.append(c.recv_bytes(timeout=30)))
        reader.start()
        deadline = time.monotonic() + 30
        while ring.stats()["consumer_waits"] == 0:    # the reader sleeps in recv()
            assert time.monotonic() < deadline
            time.sleep(0.001)
        view.release()                                # the last view dies meanwhile
        p.send(b"y")
        reader.join(30)
        assert got == [b"y"] and c.held == 0 and ring.stats()["fill"] == 0


def test_recv_releases_the_frame_it_is_given(ring):
    with ring.producer() as p, ring.consumer() as c:
        for i in range(3):
            p.send(bytes([i]) * 100)
        f = c.recv(0)
        g = c.recv(0, release=f)
        assert f.released and not g.released and bytes(g) == bytes([1]) * 100
        assert c.held == 1
        g = c.recv(0, release=g)
        assert c.held == 1 and bytes(g) == bytes([2]) * 100
        with pytest.raises(shmring.Empty):
            c.recv(0, release=g)          # released first, then the wait ran out
        assert g.released and c.held == 0 and ring.stats()["fill"] == 0
        p.send(b"again")
        with c.recv(0, release=g) as h:   # an already released frame: nothing to do
            assert bytes(h) == b"again"


def test_recv_release_follows_release_rules(ring, name):
    with ring.producer() as p, ring.consumer() as c:
        p.send(b"one")
        p.send(b"two")
        f = c.recv(0)
        view = memoryview(f)
        with pytest.raises(BufferError):
            c.recv(0, release=f)          # as f.release(): nothing received
        assert not f.released and c.held == 1
        view.release()
        with pytest.raises(TypeError):
            c.recv(0, release=b"not a frame")
        with shmring.Ring.create(name + "-other", 1 << 16) as other:
            try:
                with other.producer() as q, other.consumer() as d:
                    q.send(b"elsewhere")
                    foreign = d.recv(0)
                    with pytest.raises(ValueError, match="this consumer"):
                        c.recv(0, release=foreign)
                    foreign.release()
            finally:
                other.unlink()
        assert not f.released and c.held == 1
        assert bytes(c.recv(0, release=f)) == b"two"


@pytest.mark.parametrize("target", [bytearray(100), np.zeros(100, np.uint8), memoryview(bytearray(100))])
def test_recv_into(ring, target):
    with ring.producer() as p, ring.consumer() as c:
        p.send(b"abc", type=7)
        p.send(b"")
        assert c.recv_into(target, timeout=0) == 3
        assert bytes(memoryview(target)[:3]) == b"abc" and c.held == 0
        assert c.recv_into(target) == 0
        assert ring.stats()["fill"] == 0 and ring.stats()["frames_received"] == 2
        with pytest.raises(shmring.Empty):
            c.recv_into(target, timeout=0)


def test_recv_into_keeps_a_frame_too_long_for_the_buffer(ring):
    with ring.producer() as p, ring.consumer() as c:
        p.send(b"x" * 200)
        p.send(b"next")
        before = ring.stats()
        with pytest.raises(ValueError, match="200 bytes.*stays in the ring"):
            c.recv_into(bytearray(199), timeout=0)
        after = ring.stats()
        assert c.held == 0 and after["fill"] == before["fill"]
        assert after["frames_received"] == before["frames_received"] == 0
        assert after["bytes_received"] == 0 and after["frames_held"] == 0
        out = bytearray(200)
        assert c.recv_into(out, timeout=0) == 200 and out == b"x" * 200
        assert c.recv_bytes(timeout=0) == b"next"
        assert ring.stats()["fill"] == 0


@pytest.mark.parametrize("bad", [b"read-only", memoryview(bytearray(8))[::2], "text"])
def test_recv_into_needs_a_writable_contiguous_buffer(ring, bad):
    with ring.producer() as p, ring.consumer() as c:
        p.send(b"kept")
        with pytest.raises((ValueError, TypeError)):
            c.recv_into(bad, timeout=0)
        assert c.recv_bytes(timeout=0) == b"kept"

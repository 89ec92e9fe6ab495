"""Producers that copy with streaming (non-temporal) stores: every byte and
every frame boundary must come out as with memcpy, and the copies that
should stream must.  Release builds stream copies of 1 MiB and up; debug+lab
builds stream every aligned copy of 64 B and up."""
import pickle

import numpy as np
import pytest

import shmring
from shmring import _core
from shmring._ring import NONTEMPORAL_MIN
from shmring.testing.frames import InOrder, payload, send_frames
from shmring.testing.processes import start_process

MiB = 1 << 20
THRESHOLD = NONTEMPORAL_MIN                 # None: this CPU has no streaming stores
M = THRESHOLD or MiB
SIZES = [0, 1, 15, 63, 64, 65, 4095, M - 1, M, M + 1, M + 63, 3 * M + 17]


def streams(n):
    return THRESHOLD is not None and n >= THRESHOLD


def unaligned(data):
    """data at an odd address, so the copy's loads cannot assume alignment."""
    buf = bytearray(len(data) + 1)
    buf[1:] = data
    return memoryview(buf)[1:]


@pytest.mark.parametrize("size", SIZES)
def test_send_copies_every_byte(name, size):
    data = payload(1, size, size)
    with shmring.Ring.create(name, 8 * MiB) as ring, \
            ring.producer(nontemporal=True) as p, ring.consumer() as c:
        before = _core.streamed_copies()
        p.send(unaligned(data), type=7)
        assert (_core.streamed_copies() > before) == streams(size)
        p.send(b"next")             # the frame after starts where it should
        with c.recv(0) as frame:
            assert frame.type == 7 and bytes(frame) == data
        assert c.recv_bytes(0) == b"next"


def test_send_many_copies_every_byte(name):
    frames = [payload(2, n, n) for n in SIZES]
    with shmring.Ring.create(name, 16 * MiB) as ring, \
            ring.producer(nontemporal=True) as p, ring.consumer() as c:
        before = _core.streamed_copies()
        assert p.send_many([unaligned(f) for f in frames]) == len(frames)
        assert _core.streamed_copies() - before == sum(map(streams, SIZES))
        assert c.recv_bytes_many(len(frames)) == frames


def test_a_plain_producer_never_streams(name):
    with shmring.Ring.create(name, 8 * MiB) as ring, ring.producer() as p, \
            ring.consumer() as c:
        before = _core.streamed_copies()
        p.send(bytes(3 * M))
        p.send_many([bytes(M)] * 2)
        p.send_array(np.zeros(M, np.uint8))
        assert _core.streamed_copies() == before
        assert [len(c.recv_bytes(0)) for _ in range(4)] == [3 * M, M, M, M]


@pytest.mark.parametrize("strided", [False, True], ids=["contiguous", "strided"])
def test_send_array_copies_every_element(name, strided):
    base = np.arange(2 * (M // 4 + 3), dtype=np.float32).reshape(2, -1)
    arr = base[:, ::2] if strided else base
    with shmring.Ring.create(name, 8 * MiB) as ring, \
            ring.producer(nontemporal=True) as p, ring.consumer() as c:
        before = _core.streamed_copies()
        p.send_array(arr, type=3)
        assert (_core.streamed_copies() > before) == (streams(arr.nbytes) and not strided)
        with c.recv(0) as frame:
            got = frame.array()
            assert frame.type == 3 and got.dtype == arr.dtype
            np.testing.assert_array_equal(got, arr)
            del got


def test_the_setting_is_visible_and_survives_pickling(name):
    with shmring.Ring.create(name, MiB) as ring, ring.producer() as plain, \
            ring.producer(nontemporal=True) as streaming:
        assert not plain.nontemporal and streaming.nontemporal
        with pickle.loads(pickle.dumps(streaming)) as copy:
            assert copy.nontemporal and copy is not streaming


def test_streaming_producers_in_processes_never_tear_a_frame(name):
    producers, count = 3, 40
    with shmring.Ring.create(name, 4 * MiB) as ring, ring.consumer() as consumer:
        procs = [start_process(send_frames, ring, i, count, nontemporal=True)
                 for i in range(producers)]
        frames = InOrder(ring.max_frame)
        for _ in range(producers * count):
            with consumer.recv(timeout=60) as frame:
                frames.check(frame)
        for proc in procs:
            proc.join(60)
            assert proc.exitcode == 0
        assert frames.next_seq == {i: count for i in range(producers)}

"""The bridge's parts that need no network: the header codec, the dtype
rules it shares with the ring, endpoints, Frame.producer and Frame.layout,
and the message when pyzmq is missing."""
import subprocess
import sys

import numpy as np
import pytest
from _bridge import HEADER, REFUSED_DTYPES, header

import shmring
from shmring.bridge import address, wire
from shmring.testing.rings import Raw

ACCEPTED_DTYPES = [b"|u1", b"<f2", b">f4", b"<i8", b"<c16", b"|b1", b"<M8[ms]", b">m8[s]",
                   b"|S5", b"<U3", b"|V10", b"|S240"]


def test_header_packs_as_the_docs_say_and_round_trips(ring):
    with ring.producer() as p, ring.consumer() as c:
        p.send(b"abc", type=7)
        p.send_array(np.zeros((2, 3), "<f4"), type=8)
        raw, arr = c.recv(0), c.recv(0)
    got = wire.data(5, 6, raw.type, raw.producer, len(raw), raw.layout)
    assert len(got) == HEADER.size == 75
    assert got == header(type=7, stream=5, seq=6, length=3)
    assert wire.decode(got) == wire.Header(wire.DATA, 5, 6, 7, 0, 3)
    got = wire.data(5, 7, arr.type, arr.producer, len(arr), arr.layout)
    assert got == header(type=8, ndim=2, stream=5, seq=7, length=24, dtype=b"<f4", shape=(2, 3))
    assert wire.decode(got) == wire.Header(wire.DATA, 5, 7, 8, 0, 24, np.dtype("<f4"), (2, 3))
    assert wire.end(5, 9) == header(kind=2, ndim=0, stream=5, seq=9)
    assert wire.decode(wire.end(5, 9, wire.END_ACK)) == wire.Header(wire.END_ACK, 5, 9)


@pytest.mark.parametrize("bad, reason", [
    (header()[:-1], "header of 74 bytes"),
    (header(version=2), "bridge protocol version 2"),
    (header(kind=0), "unknown message kind 0"),
    (header(type=2**32 - 1), "frame type 2**32 - 1 is reserved"),
    (header(producer=0xFFFF), "producer slot 65535 out of range"),
    (header(dtype=b"|u1"), "a bytes frame with a dtype or shape"),
    (header(ndim=9, dtype=b"|u1", shape=(1,) * 8), "an array of 9 dimensions"),
    (header(ndim=1, dtype=b"|u1", shape=(1, 1)), "dimensions beyond ndim"),
    (header(ndim=1, dtype=b"<u2", shape=(3,), length=5), "length 5 does not hold uint16 (3,)"),
    (header(ndim=1, dtype=b"|O8", shape=(1,), length=8), "an unreadable dtype b'|O8'"),
    (header(ndim=1, dtype=b"<U0", shape=(1,)), "a forbidden dtype <U0"),
    (header(kind=2, ndim=0, length=1), "an end-of-stream header with non-zero frame fields"),
])
def test_each_field_is_checked(bad, reason):
    with pytest.raises(shmring.MalformedMessage, match=reason.replace("*", r"\*")
                       .replace("(", r"\(").replace(")", r"\)")):
        wire.decode(bad)
    assert issubclass(shmring.MalformedMessage, (ValueError, shmring.RingError))


@pytest.mark.parametrize("code", REFUSED_DTYPES + ACCEPTED_DTYPES)
def test_the_wire_refuses_exactly_the_dtypes_a_ring_refuses(ring, code):
    """A record whose header carries `code` (written in place, as a hostile
    producer would) against a bridge header carrying it."""
    length = 240
    with ring.producer() as p, ring.consumer() as c:
        with p.reserve_array((length,), "|u1"):
            pass
        itemsize = np.dtype(code.rstrip(b"\0").decode()).itemsize \
            if code in ACCEPTED_DTYPES else 1
        raw = Raw(ring.path)
        raw.m[raw.record(0, 24):raw.record(0, 32)] = code.ljust(8, b"\0")
        raw.m[raw.record(0, 32):raw.record(0, 36)] = (length // itemsize).to_bytes(4, "little")
        with c.recv(0) as f:
            try:
                _ = f.layout
                ring_refuses = False
            except shmring.RingCorrupted:
                ring_refuses = True
        raw.close()
    try:
        wire.decode(header(ndim=1, dtype=code, shape=(length // itemsize,), length=length))
        wire_refuses = False
    except shmring.MalformedMessage:
        wire_refuses = True
    assert ring_refuses == wire_refuses == (code in REFUSED_DTYPES)


@pytest.mark.parametrize("text, bind, connect", [
    ("5555", "tcp://127.0.0.1:5555", "tcp://127.0.0.1:5555"),
    ("hostb:5555", "tcp://hostb:5555", "tcp://hostb:5555"),
    ("0.0.0.0:5555", "tcp://0.0.0.0:5555", "tcp://0.0.0.0:5555"),
    ("[::1]:5555", "tcp://[::1]:5555", "tcp://[::1]:5555"),
    ("tcp://10.0.0.2:7", "tcp://10.0.0.2:7", "tcp://10.0.0.2:7"),
])
def test_endpoints_default_to_loopback(text, bind, connect):
    assert address.endpoint(text) == bind == connect


@pytest.mark.parametrize("bad", ["", "host", "host:", "host:65536", "a b:1", "-1"])
def test_bad_endpoints_are_refused(bad):
    with pytest.raises(ValueError, match="bad endpoint"):
        address.endpoint(bad)


def test_frame_producer_is_the_slot_and_layout_needs_a_live_frame(ring):
    with ring.producer() as p0, ring.producer() as p1, ring.consumer() as c:
        p1.send(b"x")
        p0.send_array(np.arange(3, dtype=">i2"))
        f1, f0 = c.recv(0), c.recv(0)
        slots = [int(repr(p).split("slot=")[1].split()[0]) for p in (p0, p1)]
        assert [f0.producer, f1.producer] == slots and slots[0] != slots[1]
        assert (f1.layout, f0.layout) == (None, (np.dtype(">i2"), (3,)))
        f0.release()
        with pytest.raises(ValueError, match="released"):
            _ = f0.layout
        with pytest.raises(ValueError, match="released"):
            _ = f0.producer


def test_without_pyzmq_the_bridge_says_what_to_install():
    code = ("import sys; sys.modules['zmq'] = None\n"
            "from shmring.cli import main\n"
            "try:\n    import shmring.bridge\nexcept ImportError as e:\n    print(e)\n"
            "sys.exit(main(['bridge', 'recv', '5555', 'r']))\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=60)
    assert result.stdout == "shmring.bridge needs pyzmq: pip install 'shmring[bridge]'\n"
    assert result.returncode == 1
    assert "shmring bridge: shmring.bridge needs pyzmq: pip install 'shmring[bridge]'" \
        in result.stderr

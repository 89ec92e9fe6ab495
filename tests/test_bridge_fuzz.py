"""Malformed messages against a live `shmring bridge recv` (Hypothesis):
each is counted and dropped, the valid frames sent around them arrive
intact and in order, and the receiver lives on.

The test packs headers itself, from the layout docs/bridge.md gives, so a
fault in the bridge's own encoder cannot hide one in its decoder."""
import contextlib
import secrets
import uuid

import numpy as np
import pytest
import zmq
from _bridge import (
    DATA,
    END,
    END_ACK,
    HEADER,
    RAW,
    REFUSED_DTYPES,
    bridges,
    header,
    receiver,
    stop,
)
from hypothesis import given
from hypothesis import strategies as st

import shmring

DTYPES = ["|u1", "<f4", ">i8", "<c16", "|b1", "<M8[us]", "|S5", "<U2"]


@st.composite
def frames(draw):
    """(type, payload bytes, array or None) of a valid frame."""
    type = draw(st.integers(0, 2**32 - 2))
    if draw(st.booleans()):
        return type, draw(st.binary(max_size=3000)), None
    dt = np.dtype(draw(st.sampled_from(DTYPES)))
    shape = tuple(draw(st.lists(st.integers(0, 5), max_size=3)))
    arr = (np.arange(int(np.prod(shape))) % 7).astype(dt).reshape(shape)
    return type, arr.tobytes(), arr


def data_fields(stream, seq, frame):
    type, payload, arr = frame
    f = {"kind": DATA, "type": type, "producer": 3, "stream": stream, "seq": seq,
         "length": len(payload)}
    if arr is not None:
        f.update(ndim=arr.ndim, dtype=arr.dtype.str.encode(), shape=arr.shape)
    return f


# Each mutation turns a valid message (its header fields and payload) into
# one that is malformed by construction: (draw, fields, payload) -> parts.
def short_header(draw, f, payload):
    return [header(**f)[:draw(st.integers(0, HEADER.size - 1))], payload]


def long_header(draw, f, payload):
    return [header(**f) + draw(st.binary(min_size=1, max_size=8)), payload]


def bad_version(draw, f, payload):
    return [header(**f, version=draw(st.sampled_from([0, 2, 255]))), payload]


def bad_kind(draw, f, payload):
    return [header(**{**f, "kind": draw(st.sampled_from([0, END, END_ACK, 4, 255]))}), payload]


def reserved_type(draw, f, payload):
    return [header(**{**f, "type": 2**32 - 1}), payload]


def bad_producer(draw, f, payload):
    return [header(**{**f, "producer": draw(st.sampled_from([0xFFFF, 2**32 - 1]))}), payload]


def bad_ndim(draw, f, payload):
    return [header(**{**f, "ndim": draw(st.integers(9, 254))}), payload]


def refused_dtype(draw, f, payload):
    if "dtype" not in f:
        f = {**f, "ndim": 1, "shape": (len(payload),)}
    return [header(**{**f, "dtype": draw(st.sampled_from(REFUSED_DTYPES))}), payload]


def raw_with_layout(draw, f, payload):
    extra = draw(st.sampled_from([{"dtype": b"|u1"}, {"shape": (1,)}]))
    return [header(**{**f, "ndim": RAW, **extra}), payload]


def dims_beyond_ndim(draw, f, payload):
    ndim = len(f.get("shape", ()))
    return [header(**{**f, "ndim": ndim, "dtype": f.get("dtype", b"|u1"),
                      "shape": (*f.get("shape", ()), 1)}), payload]


def length_not_shape(draw, f, payload):
    if "dtype" not in f:
        f = {**f, "ndim": 1, "dtype": b"|u1", "shape": (len(payload),)}
    return [header(**{**f, "length": len(payload) + 1}), payload + b"x"]


def payload_short(draw, f, payload):
    return [header(**{**f, "length": f["length"] + 1}), payload]


def payload_long(draw, f, payload):
    return [header(**f), payload + draw(st.binary(min_size=1, max_size=9))]


def no_payload(draw, f, payload):
    return [header(**f)]


def extra_part(draw, f, payload):
    return [header(**f), payload, draw(st.binary(max_size=20))]


def end_with_payload(draw, f, payload):
    return [header(kind=END, ndim=0, stream=f["stream"], seq=f["seq"]), payload]


def end_with_fields(draw, f, payload):
    return [header(kind=END, ndim=0, stream=f["stream"], seq=f["seq"], type=1)]


def repeated_seq(draw, f, payload):
    if not f["seq"]:
        return reserved_type(draw, f, payload)
    return [header(**{**f, "seq": f["seq"] - 1}), payload]


def too_large(draw, f, payload):
    return [header(**{**f, "ndim": RAW, "dtype": b"", "shape": (), "length": 1 << 40}), payload]


def garbage(draw, f, payload):
    first = draw(st.binary(max_size=200).filter(lambda b: len(b) != HEADER.size))
    return [first, *draw(st.lists(st.binary(max_size=50), max_size=2))]


MUTATIONS = [short_header, long_header, bad_version, bad_kind, reserved_type, bad_producer,
             bad_ndim, refused_dtype, raw_with_layout, dims_beyond_ndim, length_not_shape,
             payload_short, payload_long, no_payload, extra_part, end_with_payload,
             end_with_fields, repeated_seq, too_large, garbage]


@st.composite
def streams(draw):
    """A stream's messages: [(parts, the valid frame or None)], and how many
    are valid."""
    stream = secrets.randbits(64)
    out, seq = [], 0
    for frame, mutation in draw(st.lists(st.tuples(frames(), st.none() | st.sampled_from(MUTATIONS)),
                                         min_size=1, max_size=12)):
        f = data_fields(stream, seq, frame)
        if mutation is None:
            out.append(([header(**f), frame[1]], frame))
            seq += 1
        else:
            out.append((mutation(draw, f, frame[1]), None))
    return stream, out, seq


def test_malformed_messages_are_counted_and_dropped_without_harm():
    name = f"test-bridge-fuzz-{uuid.uuid4().hex[:12]}"
    ring = shmring.Ring.create(name, 1 << 20)
    ctx = zmq.Context()
    sent_bad = 0
    try:
        with bridges() as start, ring.consumer() as far:
            recv, endpoint = receiver(start, name, "--stats", "0.05")
            sock = ctx.socket(zmq.DEALER)
            sock.sndtimeo = sock.rcvtimeo = 5000
            sock.linger = 0
            sock.connect(endpoint)

            @given(streams())
            def one_stream(case):
                nonlocal sent_bad
                stream, messages, valid = case
                for parts, _ in messages:
                    sock.send_multipart(parts)
                sock.send(header(kind=END, ndim=0, stream=stream, seq=valid))
                # The confirmation comes after everything before END was handled.
                ack = sock.recv()
                assert ack == header(kind=END_ACK, ndim=0, stream=stream, seq=valid)
                for _, frame in messages:
                    if frame is None:
                        continue
                    type, payload, arr = frame
                    with far.recv(timeout=0) as f:
                        assert (f.type, bytes(f)) == (type, payload)
                        if arr is None:
                            assert f.layout is None
                        else:
                            assert f.layout == (arr.dtype, arr.shape)
                            assert np.array_equal(f.array(), arr)
                with pytest.raises(shmring.Empty):
                    far.recv(timeout=0)
                sent_bad += sum(frame is None for _, frame in messages)
                recv.wait_for(r"drops 0, gaps 0 \(0 frames lost\), malformed (\d+)",
                              until=lambda m: int(m.group(1)) == sent_bad,
                              start=recv.mark())

            one_stream()
            assert recv.proc.poll() is None
            recv.wait_for(r"dropped a malformed message from 127.0.0.1: ")
            assert stop(recv) == 0
    finally:
        ctx.destroy(linger=0)
        with contextlib.suppress(FileNotFoundError):
            ring.unlink()

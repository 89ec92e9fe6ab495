"""The bridge's one message header, packed with struct.

Every message is a ZeroMQ multipart message: this header, then for a DATA
message the frame's payload as the second and last part.  The sender fills
the header from the ring's Frame; the receiver treats every field as
untrusted and refuses what the ring itself would refuse.

    version  B   VERSION; anything else is refused
    kind     B   DATA, END (the sender's last message) or END_ACK (the reply)
    ndim     B   rank of the array, or RAW for a frame sent as bytes
    type     I   the frame's type, 0 .. 2**32 - 2
    producer I   the producer's slot in the sender's ring
    stream   Q   random per Sender: which sender's sequence this is
    seq      Q   the sender's sequence number: 0, 1, 2 ... per stream
    length   Q   payload bytes
    dtype    8s  numpy dtype.str, NUL padded (zero for RAW)
    shape    8I  dimensions, zero beyond ndim

All little-endian, 75 bytes.  END carries the stream's next seq (how many
DATA messages came before it); END_ACK repeats END's stream and seq.
Everything else in END and END_ACK is zero.
"""
import struct
from typing import Any, NamedTuple, Optional

from shmring._ring import dtype_from_code
from shmring.errors import MalformedMessage

VERSION = 1
DATA, END, END_ACK = 1, 2, 3
RAW = 0xFF
MAX_NDIM = 8
HEADER = struct.Struct("<BBBIIQQQ8s8I")
_ZERO_SHAPE = (0,) * MAX_NDIM


class Header(NamedTuple):
    kind: int
    stream: int
    seq: int
    type: int = 0
    producer: int = 0
    length: int = 0
    dtype: Optional[object] = None      # numpy dtype, None for RAW
    shape: Optional[tuple[int, ...]] = None     # None for RAW


def data(stream, seq, type, producer, length, layout):
    """A DATA header; layout is Frame.layout: (dtype, shape) or None."""
    if layout is None:
        return HEADER.pack(VERSION, DATA, RAW, type, producer, stream, seq, length, b"",
                           *_ZERO_SHAPE)
    dt, shape = layout
    return HEADER.pack(VERSION, DATA, len(shape), type, producer, stream, seq, length,
                       dt.str.encode("ascii"), *shape, *_ZERO_SHAPE[len(shape):])


def end(stream, seq, kind=END):
    return HEADER.pack(VERSION, kind, 0, 0, 0, stream, seq, 0, b"", *_ZERO_SHAPE)


_DTYPES: dict[bytes, Any] = {}        # code -> dtype, for the few codes a stream names


def _dtype(code: bytes) -> Any:
    """dtype_from_code(code), remembered (at most 256 codes)."""
    dt = _DTYPES.get(code)
    if dt is None:
        dt = dtype_from_code(code)
        if len(_DTYPES) < 256:
            _DTYPES[code] = dt
    return dt


def decode(raw):
    """The Header in raw (bytes or a buffer), or MalformedMessage saying
    which field is wrong."""
    if len(raw) != HEADER.size:
        raise MalformedMessage(f"header of {len(raw)} bytes, not {HEADER.size}")
    version, kind, ndim, type, producer, stream, seq, length, code, *shape = HEADER.unpack(raw)
    if version != VERSION:
        raise MalformedMessage(f"bridge protocol version {version}; this shmring speaks {VERSION}")
    if kind in (END, END_ACK):
        if ndim or type or producer or length or any(code) or any(shape):
            raise MalformedMessage("an end-of-stream header with non-zero frame fields")
        return Header(kind, stream, seq)
    if kind != DATA:
        raise MalformedMessage(f"unknown message kind {kind}")
    if type == 0xFFFFFFFF:
        raise MalformedMessage("frame type 2**32 - 1 is reserved")
    if producer >= 0xFFFF:
        raise MalformedMessage(f"producer slot {producer} out of range")
    if ndim == RAW:
        if any(code) or any(shape):
            raise MalformedMessage("a bytes frame with a dtype or shape")
        return Header(DATA, stream, seq, type, producer, length)
    if ndim > MAX_NDIM:
        raise MalformedMessage(f"an array of {ndim} dimensions (at most {MAX_NDIM})")
    if any(shape[ndim:]):
        raise MalformedMessage("dimensions beyond ndim")
    try:
        dt = _dtype(code)
    except ValueError as e:
        raise MalformedMessage(f"{e}: the ring refuses it") from None
    nbytes = dt.itemsize
    for n in shape[:ndim]:
        nbytes *= n
    if nbytes != length:
        raise MalformedMessage(f"length {length} does not hold {dt} {tuple(shape[:ndim])}")
    return Header(DATA, stream, seq, type, producer, length, dt, tuple(shape[:ndim]))

"""How shmring.Queue writes an object into one ring record and reads it back.

An object is pickled with protocol 5.  Its buffers (numpy arrays, and
anything else that pickles through pickle.PickleBuffer) are not copied by
pickling: they leave the stream out of band, and are copied once, straight
from the producer's memory into the record.  bytes and bytearray objects of
64 KiB or more stay in the stream, but the pickler hands them to its file
by reference, so they too are copied once.  Only then is the record's size
known: it is reserved and filled, in one piece.

The frame's type says what its payload is:

    STREAM      a pickle stream and nothing else (an object without buffers)
    BUFFERS     a record:
        0           magic b"SQ", format version, 0; buffer count n (u32); stream length (u64)
        16          n entries: offset and length (u64 each) of buffer i in the record
        16 + 16n    the pickle stream
        ...         each buffer at a 64-byte aligned offset, in stream order

Both types carry the format version (a reader of another version refuses
the frame).  Records start on a cache line, so every buffer's address is
64-byte aligned and a dtype view of it is aligned.  The reader treats the
header as untrusted: every offset and length is checked against the record
before anything is sliced (RingCorrupted otherwise).  The pickle stream
itself is trusted as multiprocessing trusts it: unpickling runs code named
by the producer, which is why segments are private to their user (mode
0o600).
"""
from __future__ import annotations

import pickle
import struct
import sys
from typing import TYPE_CHECKING, Any, Literal

from shmring.errors import RingCorrupted

if TYPE_CHECKING:
    from shmring._ring import Frame

VERSION = 1
STREAM = 0x53510000 | VERSION << 8 | 1   # frame types: "SQ", the version, the kind
BUFFERS = 0x53510000 | VERSION << 8 | 2
MAGIC = b"SQ" + bytes([VERSION, 0])
HEADER = struct.Struct("<4sIQ")
ENTRY = struct.Struct("<QQ")
ALIGN = 64
_NOTHING = bytearray()              # what an array's PickleBuffer points at (see reducer_override)


def _array(buf: Any, dtype: Any, shape: tuple[int, ...], order: Literal["C", "F"]) -> Any:
    """Rebuild an array on the buffer get() supplies: a private copy, or a
    read-only view of the frame (zero_copy)."""
    import numpy as np
    return np.frombuffer(buf, dtype).reshape(shape, order=order)


class _Sink:
    """The pickler's file: keeps what it is given by reference.  Large
    bytes-like payloads arrive as the original objects, not as copies."""

    __slots__ = ("chunks", "write", "buffers", "arrays")

    def __init__(self) -> None:
        self.chunks: list[Any] = []
        self.buffers: list[Any] = []
        self.arrays: dict[int, Any] = {}
        self.write = self.chunks.append

    def buffer(self, pb: pickle.PickleBuffer) -> bool:
        """buffer_callback: every buffer goes out of band, as the array it
        stands for or as a contiguous memoryview."""
        array = self.arrays.pop(id(pb), None)
        self.buffers.append(pb.raw() if array is None else array)
        return False


class _Pickler(pickle.Pickler):
    def __init__(self, sink: _Sink) -> None:
        super().__init__(sink, protocol=5, buffer_callback=sink.buffer)
        self.sink = sink

    def reducer_override(self, obj: Any) -> Any:
        """Every plain ndarray (contiguous or not, read-only or not) pickles
        as _array over a stand-in buffer; the sink keeps the array itself and
        Encoder.write copies it once into the record.  numpy's own reduction
        would copy a non-contiguous array into a temporary and mark a
        read-only one read-only for the consumer too."""
        np = sys.modules.get("numpy")   # no numpy imported: no arrays to meet
        if np is None or type(obj) is not np.ndarray or obj.dtype.hasobject \
                or obj.dtype.itemsize == 0:
            return NotImplemented
        order = "F" if obj.flags.f_contiguous and not obj.flags.c_contiguous else "C"
        pb = pickle.PickleBuffer(_NOTHING)      # writable: the reader's buffer passes as is
        self.sink.arrays[id(pb)] = obj
        return _array, (pb, obj.dtype, obj.shape, order)


class Encoder:
    """Pickles objects into records.  One per thread: it keeps its pickler."""

    def __init__(self) -> None:
        self.sink = _Sink()
        self.pickler = _Pickler(self.sink)
        self.whole: Any = None
        self.stream_len = 0
        self.offsets: list[int] = []

    def encode(self, obj: object) -> tuple[int, int]:
        """Pickle obj; return the frame's type and size.  Nothing is copied
        yet: the sink holds the stream's chunks and the buffers until write()
        or forget().  self.whole is then the frame's bytes when the stream is
        all of it, in one chunk (as for small objects), else None."""
        sink = self.sink
        pickler = self.pickler
        try:
            pickler.dump(obj)
        finally:
            pickler.clear_memo()        # the memo would keep obj alive
        chunks = sink.chunks
        if not sink.buffers:
            if len(chunks) == 1:
                self.whole = chunks[0]
                return STREAM, len(self.whole)
            self.whole = None
            return STREAM, sum(map(len, chunks))
        self.whole = None
        self.stream_len = pos = sum(map(len, chunks))
        self.offsets = []
        pos += HEADER.size + ENTRY.size * len(sink.buffers)
        for buf in sink.buffers:
            pos = (pos + ALIGN - 1) & -ALIGN
            self.offsets.append(pos)
            pos += buf.nbytes
        return BUFFERS, pos

    def write(self, dst: memoryview) -> None:
        """Fill dst, a writable memoryview of encode()'s size."""
        sink = self.sink
        pos = 0
        if sink.buffers:
            HEADER.pack_into(dst, 0, MAGIC, len(sink.buffers), self.stream_len)
            pos = HEADER.size
            for off, buf in zip(self.offsets, sink.buffers):
                ENTRY.pack_into(dst, pos, off, buf.nbytes)
                pos += ENTRY.size
        for chunk in sink.chunks:
            end = pos + len(chunk)
            dst[pos:end] = chunk
            pos = end
        for off, buf in zip(self.offsets, sink.buffers):
            if type(buf) is memoryview:
                dst[off:off + buf.nbytes] = buf
            else:                       # an ndarray: numpy copies any layout, without the GIL
                np = sys.modules["numpy"]
                order = "F" if buf.flags.f_contiguous and not buf.flags.c_contiguous else "C"
                np.copyto(np.ndarray(buf.shape, buf.dtype, dst, off, order=order), buf,
                          casting="no")

    def forget(self) -> None:
        """Drop the references to the last object."""
        sink = self.sink
        sink.chunks.clear()
        self.whole = None
        if sink.buffers or sink.arrays:
            sink.buffers.clear()
            sink.arrays.clear()


def corrupt(frame_length: int, why: str) -> RingCorrupted:
    return RingCorrupted(f"a {frame_length}-byte queue record is not valid: {why}")


def decode(frame: Frame, zero_copy: bool) -> tuple[Any, bool]:
    """The object in a frame, and whether it may hold views of the frame
    (only with zero_copy: its buffers are then read-only views of the frame;
    otherwise they are private writable copies)."""
    kind = frame.type
    if kind == STREAM:
        return pickle.loads(frame), False
    if kind != BUFFERS:
        if kind >> 16 == STREAM >> 16:
            raise corrupt(len(frame), f"format version {kind >> 8 & 0xff}, this shmring reads "
                                      f"{VERSION}")
        raise corrupt(len(frame), f"frame type {kind:#x} is not a shmring.Queue record")
    with memoryview(frame) as mv:
        size = len(mv)
        if size < HEADER.size:
            raise corrupt(size, "shorter than its header")
        magic, count, stream_len = HEADER.unpack_from(mv)
        if magic != MAGIC:
            raise corrupt(size, f"bad magic {magic!r}")
        start = HEADER.size + ENTRY.size * count
        if count > (size - HEADER.size) // ENTRY.size or stream_len > size - start:
            raise corrupt(size, f"{count} buffers and a {stream_len}-byte stream do not fit")
        end = start + stream_len
        table = struct.unpack_from(f"<{2 * count}Q", mv, HEADER.size)
        buffers = []
        for i in range(count):
            off, length = table[2 * i], table[2 * i + 1]
            if off % ALIGN or off < end or length > size - off:
                raise corrupt(size, f"buffer {i} at offset {off}, {length} bytes, lies outside "
                                    f"the record or before the end of what precedes it ({end})")
            end = off + length
            buffers.append(mv[off:end] if zero_copy else bytearray(mv[off:end]))
        return pickle.loads(mv[start:start + stream_len], buffers=buffers), zero_copy and count > 0

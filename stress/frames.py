"""Self-checking lab frames.

A frame's type word carries a tag bit, the producer and the sequence number;
frames of HEAD bytes or more also start with a header repeating them with the
length and the CRC of the body.  The coordinator knows every frame's length
and bytes from (producer, seq), so it recomputes the CRC of what must have
arrived: a torn, shifted, stale, lost or duplicated frame cannot pass, and
zeroed memory (type 0) never parses as a frame."""
import struct
import zlib

TAG = 0x80000000                    # set in every lab frame's type
SEQ_BITS = 24
HEADER = struct.Struct("<IHHIQI")   # magic, producer, 0, seq, length, crc(body)
MAGIC = 0x31465253                  # "SRF1"
_PATTERN = bytes(range(256)) * 2


def frame_type(producer, seq):
    return TAG | (producer << SEQ_BITS) | seq


def split_type(type):
    """(producer, seq), or None when type is not a lab frame's."""
    if not type & TAG:
        return None
    return (type & ~TAG) >> SEQ_BITS, type & ((1 << SEQ_BITS) - 1)


def body(producer, seq, n):
    """n bytes that depend on (producer, seq), built without a Python loop."""
    start = (producer * 31 + seq) % 256
    reps = n // 256 + 1
    return (_PATTERN[start:start + 256] * reps)[:n]


def payload(producer, seq, length):
    if length < HEADER.size:
        return body(producer, seq, length)
    rest = body(producer, seq, length - HEADER.size)
    return HEADER.pack(MAGIC, producer, 0, seq, length, zlib.crc32(rest)) + rest


def expected_crc(producer, seq, length):
    return zlib.crc32(payload(producer, seq, length))

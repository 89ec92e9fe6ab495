"""Self-checking frames: one codec for the tests and the lab.

A frame's type word carries a tag bit, the producer and the sequence number;
frames of HEADER.size bytes or more also start with a header repeating them
with the length and the CRC of the body.  Whoever knows a frame's length
from (producer, seq) can recompute every byte of it, so a torn, shifted,
stale, lost or duplicated frame cannot pass, and zeroed memory (type 0) never
parses as a frame."""
import struct
import zlib

TAG = 0x80000000                    # set in every test frame's type
SEQ_BITS = 24                       # the type carries seq modulo 2^24
SEQ_MASK = (1 << SEQ_BITS) - 1
MAX_PRODUCER = (TAG >> SEQ_BITS) - 1
HEADER = struct.Struct("<IHHIQI")   # magic, producer, 0, seq, length, crc(body)
MAGIC = 0x31465253                  # "SRF1"
_PATTERN = bytes(range(256)) * 2


def frame_type(producer, seq):
    if not 0 <= producer <= MAX_PRODUCER:
        raise ValueError(f"producer {producer} does not fit a frame type")
    return TAG | (producer << SEQ_BITS) | (seq & SEQ_MASK)


def split_type(type):
    """(producer, seq modulo 2^24), or None when type is not a test frame's."""
    if not type & TAG:
        return None
    return (type & ~TAG) >> SEQ_BITS, type & SEQ_MASK


def identify(data):
    """The frame type (producer, own seq) that a frame's header names, for a
    copy received without its type (recv_bytes_many); None for frames
    shorter than the header, or whose header is not a test frame's."""
    if len(data) < HEADER.size:
        return None
    magic, producer, _, seq, length, _ = HEADER.unpack_from(data)
    if magic != MAGIC or length != len(data) or producer > MAX_PRODUCER:
        return None
    return frame_type(producer, seq)


def body(producer, seq, n):
    """n bytes that depend on (producer, seq), built without a Python loop."""
    start = (producer * 31 + seq) % 256
    reps = n // 256 + 1
    return (_PATTERN[start:start + 256] * reps)[:n]


def payload(producer, seq, length):
    """The bytes of frame seq of producer, length bytes long."""
    if length < HEADER.size:
        return body(producer, seq, length)
    rest = body(producer, seq, length - HEADER.size)
    return HEADER.pack(MAGIC, producer, 0, seq, length, zlib.crc32(rest)) + rest


def expected_crc(producer, seq, length):
    return zlib.crc32(payload(producer, seq, length))


def pseudo_length(producer, seq, max_frame):
    """A length over [0, max_frame] that looks random, with 0 and max_frame
    often, and is the same in every process."""
    h = zlib.crc32(b"%d:%d" % (producer, seq))
    pick = h % 8
    if pick == 0:
        return 0
    if pick == 1:
        return max_frame
    return (h >> 3) % (max_frame + 1)


def send_frames(ring, producer, count, timeout=30, nontemporal=False):
    """Send count frames of pseudo_length as producer (a child's body)."""
    with ring.producer(nontemporal=nontemporal) as p:
        for seq in range(count):
            n = pseudo_length(producer, seq, ring.max_frame)
            p.send(payload(producer, seq, n), type=frame_type(producer, seq), timeout=timeout)
    ring.close()


def asend_frames(ring, producer, count, backend="asyncio", timeout=30):
    """send_frames() with asend(), on anyio's backend ("asyncio" or "trio")."""
    import anyio  # the [test] extra's: only the tests await frames

    async def main():
        with ring.producer() as p:
            for seq in range(count):
                n = pseudo_length(producer, seq, ring.max_frame)
                await p.asend(payload(producer, seq, n), type=frame_type(producer, seq),
                              timeout=timeout)
    anyio.run(main, backend=backend)
    ring.close()


class InOrder:
    """Checks frames as a consumer receives them: each must be the next one
    its producer sent, byte for byte, with the length send_frames gave it."""

    def __init__(self, max_frame):
        self.max_frame = max_frame
        self.next_seq = {}              # producer -> frames received from it

    def check(self, frame):
        """Raises AssertionError unless frame is the next one expected."""
        ident = split_type(frame.type)
        if ident is None:
            raise AssertionError(f"type {frame.type:#x} is not a test frame's")
        producer, seq = ident
        want = self.next_seq.get(producer, 0)
        if seq != want & SEQ_MASK:
            raise AssertionError(f"producer {producer}: got seq {seq}, expected {want}")
        n = pseudo_length(producer, want, self.max_frame)
        if len(frame) != n:
            raise AssertionError(f"producer {producer} seq {want}: {len(frame)} bytes, "
                                 f"expected {n}")
        if bytes(frame) != payload(producer, want, n):
            raise AssertionError(f"producer {producer} seq {want}: torn frame")
        self.next_seq[producer] = want + 1

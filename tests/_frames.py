"""Self-checking test frames, shared by the tests and their child processes.

A frame's length and every byte follow from (producer, seq), and type
carries both, so the consumer can recompute what it must have received:
a torn, shifted, lost or duplicated frame cannot pass."""
import os
import zlib

import numpy as np

SEQ_BITS = 20


def frame_type(producer, seq):
    return (producer << SEQ_BITS) | (seq & ((1 << SEQ_BITS) - 1))


def split_type(type):
    return type >> SEQ_BITS, type & ((1 << SEQ_BITS) - 1)


def frame_length(producer, seq, max_frame):
    """Random-looking sizes over [0, max_frame], with 0 and max_frame often."""
    h = zlib.crc32(b"%d:%d" % (producer, seq))
    pick = h % 8
    if pick == 0:
        return 0
    if pick == 1:
        return max_frame
    return (h >> 3) % (max_frame + 1)


def frame_bytes(producer, seq, length):
    i = np.arange(length, dtype=np.uint64)
    return ((i * np.uint64(0x9E3779B1) + np.uint64(producer * 7919 + seq)) >> np.uint64(7)) \
        .astype(np.uint8).tobytes()


def die_with_parent():
    """A child must not outlive a failed test: SIGKILL it when the parent dies."""
    import ctypes
    import signal
    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def produce(ring, producer, count, max_frame, timeout=30, nontemporal=False):
    """Child process body: send count self-checking frames."""
    die_with_parent()
    with ring.producer(nontemporal=nontemporal) as p:
        for seq in range(count):
            n = frame_length(producer, seq, max_frame)
            p.send(frame_bytes(producer, seq, n), type=frame_type(producer, seq),
                   timeout=timeout)
    ring.close()


def aproduce(ring, producer, count, max_frame, backend="asyncio", timeout=30):
    """Child process body: send count self-checking frames with asend(), on
    anyio's backend ("asyncio" or "trio")."""
    import anyio
    die_with_parent()

    async def main():
        with ring.producer() as p:
            for seq in range(count):
                n = frame_length(producer, seq, max_frame)
                await p.asend(frame_bytes(producer, seq, n), type=frame_type(producer, seq),
                              timeout=timeout)
    anyio.run(main, backend=backend)
    ring.close()


def check(frame, max_frame, next_seq):
    """Assert the frame is the next one expected from its producer."""
    producer, seq = split_type(frame.type)
    assert seq == next_seq.get(producer, 0) & ((1 << SEQ_BITS) - 1), \
        f"producer {producer}: got seq {seq}, expected {next_seq.get(producer, 0)}"
    n = frame_length(producer, seq, max_frame)
    assert len(frame) == n, f"producer {producer} seq {seq}: {len(frame)} bytes, expected {n}"
    assert bytes(frame) == frame_bytes(producer, seq, n), \
        f"producer {producer} seq {seq}: torn frame"
    next_seq[producer] = next_seq.get(producer, 0) + 1


def pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True

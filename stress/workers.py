"""What the lab's child processes run: producers and the consumer."""
import json
import os
import struct
import time
import zlib

from shmring import Empty
from shmring.testing.frames import frame_type, payload

RECORD = struct.Struct("<IQI")      # type, length, crc32 of the frame as received
SEND_TIMEOUT = 60                   # no producer waits for space longer than this


def produce(ring, control, i, sizes, install):
    """Send sizes[seq] bytes for seq = 0, 1, ... as producer i (participant i)."""
    if install:
        control.install(i)
    with ring.producer() as p:
        for seq, n in enumerate(sizes):
            p.send(payload(i, seq, n), type=frame_type(i, seq), timeout=SEND_TIMEOUT)
            control.set_sent(i, seq + 1)


def produce_until_stopped(ring, control, i, sizes):
    """Soak producer: cycle through sizes until the coordinator says stop.
    Odd frames go through reserve() and yield the CPU halfway through the
    fill, so that a SIGKILL often lands inside an open claim."""
    # Odd producers copy with streaming stores (every size, in a lab build).
    with ring.producer(nontemporal=i % 2 == 1) as p:
        seq = 0
        while not control.stopped("producers"):
            n = sizes[seq % len(sizes)]
            data = payload(i, seq, n)
            if seq % 2 == 0:
                p.send(data, type=frame_type(i, seq), timeout=SEND_TIMEOUT)
            else:
                r = p.reserve(n, type=frame_type(i, seq), timeout=SEND_TIMEOUT)
                with r, memoryview(r) as view:
                    view[:n // 2] = data[:n // 2]
                    os.sched_yield()
                    view[n // 2:] = data[n // 2:]
            seq += 1
            control.set_sent(i, seq)


def consume(ring, control, i, out_path, hold, stall_timeout, install):
    """Receive until told to stop, writing one RECORD per frame to out_path.
    Holds up to `hold` frames and releases them newest first (out of order),
    and never sleeps while holding any, so producers are not starved.  Also
    notes the longest gap between two deliveries (the soak's max stall)."""
    if install:
        control.install(i)
    held = []
    max_gap = 0.0
    last = time.monotonic()
    with open(out_path, "wb") as out, ring.consumer(stall_timeout=stall_timeout) as c:
        while not control.stopped("consumer"):
            try:
                f = c.recv(timeout=0)
            except Empty:
                release(held)
                try:
                    f = c.recv(timeout=0.05)
                except Empty:
                    continue
            now = time.monotonic()
            max_gap, last = max(max_gap, now - last), now
            out.write(RECORD.pack(f.type, len(f), zlib.crc32(f)))
            held.append(f)
            if len(held) >= hold:
                release(held)
        release(held)
    with open(out_path + ".json", "w") as meta:
        json.dump({"max_gap": max_gap}, meta)


def release(held):
    while held:
        held.pop().release()


def read_records(path):
    with open(path, "rb") as f:
        data = f.read()
    return [RECORD.unpack_from(data, k) for k in range(0, len(data), RECORD.size)]

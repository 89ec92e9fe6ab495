"""What the lab's child processes run: producers and the consumer, blocking
or awaiting (asyncio, so that the doorbells run too)."""
import asyncio
import contextlib
import json
import os
import struct
import time
import zlib

from shmring import Empty, Sealed
from shmring.testing.frames import frame_type, payload

RECORD = struct.Struct("<IQI")      # type, length, crc32 of the frame as received
SEND_TIMEOUT = 60                   # no producer waits for space longer than this


def produce(ring, control, i, sizes, install, awaiting=False):
    """Send sizes[seq] bytes for seq = 0, 1, ... as producer i (participant i),
    with send() or, awaiting, with asend(), until the ring is sealed."""
    if install:
        control.install(i)

    async def asend_all(p):
        for seq, n in enumerate(sizes):
            await p.asend(payload(i, seq, n), type=frame_type(i, seq), timeout=SEND_TIMEOUT)
            control.set_sent(i, seq + 1)

    with ring.producer() as p:
        try:
            if awaiting:
                asyncio.run(asend_all(p))
                return
            for seq, n in enumerate(sizes):
                p.send(payload(i, seq, n), type=frame_type(i, seq), timeout=SEND_TIMEOUT)
                control.set_sent(i, seq + 1)
        except Sealed:
            control.set_refused(i)


def seal(ring, control, i, install):
    """Seal the ring, as participant i: any process holding it may."""
    if install:
        control.install(i)
    ring.seal()


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
            try:
                if seq % 2 == 0:
                    p.send(data, type=frame_type(i, seq), timeout=SEND_TIMEOUT)
                else:
                    r = p.reserve(n, type=frame_type(i, seq), timeout=SEND_TIMEOUT)
                    with r, memoryview(r) as view:
                        view[:n // 2] = data[:n // 2]
                        os.sched_yield()
                        view[n // 2:] = data[n // 2:]
            except Sealed:
                control.set_refused(i)
                return
            seq += 1
            control.set_sent(i, seq)


def consume(ring, control, i, out_path, hold, stall_timeout, install, awaiting=False):
    """Receive until told to stop, or until the ring is sealed and drained,
    writing one RECORD per frame to out_path.  Holds up to `hold` frames and
    releases them newest first (out of order), and never sleeps while holding
    any, so producers are not starved.  Also notes the longest gap between
    two deliveries (the soak's max stall) and whether it saw the seal.
    Awaiting, it waits with arecv() and no timeout: only a doorbell (or the
    stall_timeout watchdog) wakes it, so a lost ring shows as a stall."""
    if install:
        control.install(i)
    held = []
    gaps = [0.0, time.monotonic()]          # longest gap, last delivery
    saw_seal = False

    def deliver(out, f):
        now = time.monotonic()
        gaps[:] = [max(gaps[0], now - gaps[1]), now]
        out.write(RECORD.pack(f.type, len(f), zlib.crc32(f)))
        held.append(f)
        if len(held) >= hold:
            release(held)

    async def receive_awaiting(c, out):
        while True:
            try:
                f = await c.arecv(timeout=0)
            except Empty:
                release(held)
                f = await c.arecv()
            deliver(out, f)

    async def until_stopped(c, out):
        receiver = asyncio.ensure_future(receive_awaiting(c, out))
        while not control.stopped("consumer") and not receiver.done():
            await asyncio.sleep(0.05)           # the stop word is only read here
        receiver.cancel()                       # a cancelled arecv takes no frame
        with contextlib.suppress(asyncio.CancelledError):
            await receiver                      # Sealed, if that is how it ended

    with open(out_path, "wb") as out, ring.consumer(stall_timeout=stall_timeout) as c:
        try:
            if awaiting:
                asyncio.run(until_stopped(c, out))
            while not awaiting and not control.stopped("consumer"):
                f = next_frame(c, held)
                if f is not None:
                    deliver(out, f)
        except Sealed:
            saw_seal = True
        release(held)
    with open(out_path + ".json", "w") as meta:
        json.dump({"max_gap": gaps[0], "saw_seal": saw_seal}, meta)


def next_frame(c, held):
    """A frame at once, or else, having released the frames held, within
    50 ms; None if none came."""
    try:
        return c.recv(timeout=0)
    except Empty:
        release(held)
    try:
        return c.recv(timeout=0.05)
    except Empty:
        return None


def release(held):
    while held:
        held.pop().release()


def read_meta(path):
    """What consume() noted besides the records: max_gap, saw_seal."""
    with open(path + ".json") as f:
        return json.load(f)


def read_records(path):
    with open(path, "rb") as f:
        data = f.read()
    return [RECORD.unpack_from(data, k) for k in range(0, len(data), RECORD.size)]

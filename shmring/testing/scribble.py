"""Scribble over a live ring's shared memory, then drive its consumer.

One example is a JSON-able dict (see run_example).  It builds a small ring
with committed, received, released and reserved records, writes hostile
values into the header, the positions, the producer slots, record headers,
padding or anywhere, and then drives a consumer (and optionally a producer).
The rule it checks: every frame handed out lies inside the mapping and
within max_frame, and every call returns a frame or raises Empty or
RingCorrupted (IncompatibleRing / ConsumerExists / Full where they apply).

An example with "other_lap" checks a stricter rule instead (other_lap()): a
header left from any other lap, at the same index as the record the consumer
expects, is never accepted: not as a frame, not as padding, not as corruption.
A crash kills the process, a hang outlives the caller's deadline: both are
judged by whoever runs this in a subprocess (tests/test_hostile.py) or by
the fuzzer (fuzz/fuzz_consumer.py).

`python -m shmring.testing.scribble --worker` reads one example per stdin
line and answers one JSON line per example.
"""
import contextlib
import ctypes
import json
import mmap
import os
import struct
import sys
import time
import uuid
from typing import Any

import numpy as np

import shmring
from shmring import layout
from shmring._ring import segment_path

CAP = 8192
SEGMENT_SIZE = layout.data_offset(layout.DEFAULT_SLOTS) + CAP
U64 = (1 << 64) - 1


def _fields(layout_struct):
    """name: (offset, width) of every field but the padding."""
    return {f: ow for f, ow in layout_struct.fields.items() if not f.startswith("_")}


# Header fields at their offsets in the segment; slot and record fields are
# relative to the slot or record.  Of the shape, its first, second and last.
HEADER_FIELDS = _fields(layout.SegmentHeader)
SLOT_FIELDS = _fields(layout.Slot)
_SHAPE = layout.RecordHeader.shape
_DIM = layout.RecordHeader.width("shape") // layout.MAX_NDIM
RECORD_FIELDS = {**{f: ow for f, ow in _fields(layout.RecordHeader).items() if f != "shape"},
                 "shape0": (_SHAPE, _DIM), "shape1": (_SHAPE + _DIM, _DIM),
                 "shape7": (_SHAPE + (layout.MAX_NDIM - 1) * _DIM, _DIM)}
# What the fuzzer and tests/test_hostile.py draw from.
STARTS = [0, 4096 - 256, (1 << 32) - 2048, (1 << 64) - 1024]     # ring start positions
LITERALS = [0, 1, 8, 63, 64, 4096, 8128, 8184, 8192, 8256, 1 << 32, 1 << 63,
            U64, U64 - 63, U64 - 7]
STATES = [0, layout.BUSY, layout.COMMITTED, layout.PAD, layout.RELEASED, 5, layout.STATE_MASK]
DTYPES = ["<u1", "<i4", "<f8", "|S3", "<c16", "<M8[s]"]
DTYPE_CODES = [b"<i4", b"|O", b"|V0", b"<U0", b"i4,i4", b"(2)i4", b"\xff\xfe",
               b"f8\0i4", b"<M8[xx]", b"S", b"V8", b"<f16", b"|b1", b"", b"m8[as]",
               b",", b"a", b"8a9,l3", b"),q)", b"<i4 ", b"=i4", b"<M8[ms]", b"|S2"]

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mmap.restype = ctypes.c_void_p
_libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                       ctypes.c_int, ctypes.c_long]
_libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
MAP_PRIVATE, MAP_ANONYMOUS, MAP_FIXED_NOREPLACE = 0x02, 0x20, 0x100000


def mapping_of(path):
    """(start, end) of this process's mapping of path (the only one so far)."""
    with open("/proc/self/maps") as f:
        for line in f:
            if line.rstrip().endswith(path):
                start, end = line.split()[0].split("-")
                return int(start, 16), int(end, 16)
    raise RuntimeError(f"{path} is not mapped")


def guard_at(addr):
    """A PROT_NONE page at addr if that page is free, so that a read or
    write just outside the ring's mapping faults instead of passing."""
    got = _libc.mmap(addr, 4096, 0, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0)
    if got == addr:
        return True
    if got not in (None, ctypes.c_void_p(-1).value):
        _libc.munmap(got, 4096)         # a kernel without MAP_FIXED_NOREPLACE
    return False


def hole_for(size):
    """Map size + 2 pages PROT_NONE and unmap the middle: the ring's own mmap
    (top-down, first fit) then usually lands between two guard pages.
    Returns the two guard addresses."""
    base = _libc.mmap(None, size + 8192, 0, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
    if base in (None, ctypes.c_void_p(-1).value):
        return []
    _libc.munmap(base + 4096, size)
    return [base, base + 4096 + size]


def payload(i, n):
    return bytes((i * 37 + k) & 0xFF for k in range(n))


def build(name, ex):
    """The ring before the scribbling, and what it knows about its records."""
    holes = hole_for(SEGMENT_SIZE)
    ring = shmring.Ring.create(name, CAP, _start=ex.get("start", 0) & ~(layout.ALIGN - 1) & U64)
    start, end = mapping_of(ring.path)
    guards = [g for g in holes if g in (start - 4096, end)]
    for g in holes:
        if g not in guards:
            _libc.munmap(g, 4096)
    guards += [a for a in (start - 4096, end) if a not in guards and guard_at(a)]
    state: dict[str, Any] = {"ring": ring, "map": (start, end), "guards": guards,
             "held": [], "consumer": None, "producer": None, "res": None}
    p = ring.producer()
    state["producer"] = p
    for i, (kind, n) in enumerate(ex.get("frames", [])):
        try:
            if kind == "bytes":
                p.send(payload(i, n), type=i, timeout=0)
            else:
                dt = np.dtype(DTYPES[n % len(DTYPES)])
                shape = (n % 5, 3) if n % 2 else (n % 7,)
                p.send_array(np.zeros(shape, dt), type=i, timeout=0)
        except shmring.Full:
            break
    take = ex.get("receive", 0)
    if take:
        c = ring.consumer(stall_timeout=0.02)
        state["consumer"] = c
        for k in range(take):
            try:
                f = c.recv(timeout=0)
            except shmring.Empty:
                break
            if k in ex.get("release", []):
                f.release()
            else:
                state["held"].append(f)
    if ex.get("reserve") is not None:
        with contextlib.suppress(shmring.Full):
            state["res"] = p.reserve(ex["reserve"], timeout=0)
    return state


def scan_records(raw_m, data_offset, secret, head, tail):
    """Record positions from head to tail, following the tagged headers as
    the consumer would, before any scribbling."""
    out: list[int] = []
    pos = head
    while pos != tail and len(out) < 256:
        off = data_offset + (pos & (CAP - 1))
        commit = struct.unpack_from("=Q", raw_m, off + layout.RecordHeader.commit)[0]
        length = struct.unpack_from("=Q", raw_m, off + layout.RecordHeader.length)[0]
        if commit & ~layout.STATE_MASK != (pos ^ secret) & ~layout.STATE_MASK & U64:
            break
        out.append(pos)
        pos = (pos + layout.record_size(length)) & U64
    return out


def resolve(value, ctx, rec_pos):
    kind = value[0]
    if kind == "lit":
        return value[1]
    if kind == "tag":                    # a well-formed commit word
        pos = rec_pos if rec_pos is not None else ctx["head"]
        pos = (pos + layout.ALIGN * value[1]) & U64
        return ((pos ^ ctx["secret"]) & ~layout.STATE_MASK & U64) | value[2]
    if kind == "lap":                    # a well-formed commit word of another lap: m * 2^j away
        pos = rec_pos if rec_pos is not None else ctx["tail"]
        return lap_word(pos + (value[2] << value[1]), ctx["secret"], value[3])
    if kind == "pos":                    # near head, tail or a record
        base = {"head": ctx["head"], "tail": ctx["tail"]}.get(value[1], rec_pos or 0)
        return (base + value[2]) & U64
    if kind == "cap":                    # near the capacity or max_frame
        max_frame = CAP // 2 - layout.RECORD_HEADER
        return (CAP + value[1]) & U64 if value[2] == 0 else (max_frame + value[1]) & U64
    if kind == "code":
        return int.from_bytes(DTYPE_CODES[value[1] % len(DTYPE_CODES)][:8].ljust(8, b"\0"),
                              "little")
    raise ValueError(value)


def lap_word(pos, secret, state):
    """The commit word the ring writes at pos (tag and state)."""
    return ((pos ^ secret) & ~layout.STATE_MASK & U64) | state


def mutate(path, mutations):
    fd = os.open(path, os.O_RDWR)
    try:
        m = mmap.mmap(fd, os.fstat(fd).st_size)
    finally:
        os.close(fd)
    try:
        H = layout.SegmentHeader
        data_offset = struct.unpack_from("=I", m, H.data_offset)[0]
        secret = struct.unpack_from("=Q", m, H.secret)[0] & ~layout.STATE_MASK
        head, tail = struct.unpack_from("=Q", m, H.head)[0], struct.unpack_from("=Q", m, H.tail)[0]
        records = scan_records(m, data_offset, secret, head, tail)
        ctx = {"secret": secret, "head": head, "tail": tail}
        for mu in mutations:
            if mu[0] == "bytes":
                off = mu[1] % len(m)
                data = bytes(mu[2])[:len(m) - off]
                m[off:off + len(data)] = data
                continue
            where, field, value = mu[1], mu[2], mu[3]
            rec_pos = None
            if mu[0] == "at":           # a record field at any position, even misaligned
                rec_pos = resolve(where, ctx, None)
                off, width = RECORD_FIELDS[field]
                off += data_offset + (rec_pos & (CAP - 1))
                v = resolve(value, ctx, rec_pos) & ((1 << (8 * width)) - 1)
                data = v.to_bytes(width, "little")[:max(0, len(m) - off)]
                m[off:off + len(data)] = data
                continue
            if where == "header":
                off, width = HEADER_FIELDS[field]
            elif where == "slot":
                off, width = SLOT_FIELDS[field]
                off += layout.slot_offset(mu[4] % 4)
            else:                       # a record, by index among those found
                if not records:
                    continue
                rec_pos = records[mu[4] % len(records)]
                off, width = RECORD_FIELDS[field]
                off += data_offset + (rec_pos & (CAP - 1))
            v = resolve(value, ctx, rec_pos) & ((1 << (8 * width)) - 1)
            m[off:off + width] = v.to_bytes(width, "little")
    finally:
        m.close()


def check_frame(f, ring, state):
    n = len(f)
    assert 0 <= n <= ring.max_frame, f"frame of {n} bytes beyond max_frame"
    if n:
        addr = np.frombuffer(f, np.uint8).ctypes.data
        start, end = state["map"]
        assert start <= addr and addr + n <= end, "frame outside the mapping"
    bytes(f)
    try:
        a = f.array()
        assert a.nbytes == n
        del a
    except shmring.RingCorrupted:
        pass


def drive(state, ex):
    ring = state["ring"]
    out: dict[str, Any] = {"frames": 0, "corrupt": 0, "empty": 0, "errors": []}
    # A fresh attach must validate, not crash.
    try:
        shmring.Ring.attach(ring.name).close()
    except shmring.IncompatibleRing:
        out["errors"].append("IncompatibleRing")
    c = state["consumer"]
    if c is None or ex.get("reopen"):
        if c is not None:
            state["held"].clear()
            c.close()
        try:
            c = state["consumer"] = ring.consumer(stall_timeout=0.02)
        except shmring.ConsumerExists:
            out["errors"].append("ConsumerExists")
            return out
    held = []
    empties = 0
    scratch = bytearray(256)
    for k in range(48):
        try:
            if k % 4 == 2:              # the latest-frame loops skip records without a Frame
                f = c.recv_latest(timeout=0.01)
            elif k % 4 == 3:
                newest = list(c.recv_latest_each(timeout=0.01).values())
                f = newest.pop()
                while newest:
                    check_frame(newest.pop(), ring, state)    # and released
            elif k % 8 == 1:            # a copy out; one too long for it is taken back
                try:
                    c.recv_into(scratch, timeout=0.01)
                    out["frames"] += 1
                    empties = 0
                except ValueError:
                    out["kept"] = out.get("kept", 0) + 1
                continue
            else:
                f = c.recv(timeout=0.01)
        except shmring.Empty:
            out["empty"] += 1
            empties += 1
            if empties >= 3:
                break
            continue
        except shmring.RingCorrupted:
            out["corrupt"] += 1
            if out["corrupt"] >= 2:
                break
            continue
        except shmring.Sealed:          # a scribbled tail may carry the seal bit
            out["sealed"] = True
            break
        empties = 0
        out["frames"] += 1
        check_frame(f, ring, state)
        if k % 3 == 1:
            held.append(f)
        else:
            try:
                f.release()
            except shmring.RingCorrupted:
                out["corrupt"] += 1
    for lst in (held, state["held"]):
        while lst:
            f = lst.pop()
            try:
                f.release()
            except shmring.RingCorrupted:
                out["corrupt"] += 1
    if ex.get("produce"):
        p = state["producer"]
        if state["res"] is not None:
            with contextlib.suppress(shmring.RingError):
                state["res"].abort()
        for k in range(4):
            with contextlib.suppress(shmring.Full, shmring.RingCorrupted, shmring.ConsumerGone,
                                     shmring.Sealed):
                p.send(b"z" * (k * 300), timeout=0.01)
    return out


def other_lap(state, lap):
    """Plant a header from another lap where the consumer looks next, and
    check that it is never accepted.  lap: {"where", "j", "m", "state",
    "length"}: the header's position is m * 2^j away from the expected one
    (m odd, 2^j a multiple of the capacity: the same index, another lap).
    where:
      "empty"     the ring is drained: the header is at tail, which the
                  consumer's wait re-checks;
      "unwritten" a live producer has claimed the record and written no
                  header yet;
      "claimed"   the record is BUSY: its commit word is replaced.
    A recv() must then find nothing (Empty, not a frame, not RingCorrupted),
    and once the real record is written, deliver exactly it.  Returns
    {"stale": "held"} or what went wrong."""
    from shmring.testing.rings import Raw
    ring, p = state["ring"], state["producer"]
    c = state["consumer"] = state["consumer"] or ring.consumer(stall_timeout=0.02)
    for f in state["held"]:
        f.release()
    state["held"].clear()
    with contextlib.suppress(shmring.Empty):
        while True:                         # drain: the cursor reaches tail
            c.recv(timeout=0).release()
    raw = Raw(ring.path)
    H, R = layout.SegmentHeader, layout.RecordHeader
    n, data = lap["length"], payload(7, lap["length"])
    pos = raw.u64(H.tail)
    try:
        if lap["where"] == "claimed":
            res = p.reserve(n, type=0xC1A1, timeout=0)
            pos = raw.u64(H.tail) - layout.record_size(n)
        elif lap["where"] == "unwritten":
            if layout.record_size(n) > CAP - (pos & (CAP - 1)):
                n, data = 0, b""            # no padding in a hand-made claim
            slot = raw.slot_of_pid(os.getpid())
            raw.put64(raw.slot(slot, layout.Slot.intent_pos), pos)
            raw.put64(raw.slot(slot, layout.Slot.intent_len), layout.record_size(n))
            raw.put64(H.tail, pos + layout.record_size(n))
        if lap["where"] != "claimed":       # (a BUSY record keeps its own length and type)
            raw.put64(raw.record(pos, R.length), n)
            raw.put32(raw.record(pos, R.type), 0x57A1E)
        raw.put64(raw.record(pos, R.commit),
                  lap_word(pos + (lap["m"] << lap["j"]), raw.secret, lap["state"]))
        try:
            f = c.recv(timeout=0.05)
            return {"stale": f"accepted as a frame of {len(f)} bytes, type {f.type:#x}"}
        except shmring.Empty:
            pass
        except shmring.RingCorrupted as e:
            return {"stale": f"taken for corruption: {e}"}
        if lap["where"] == "claimed":
            with memoryview(res) as view:
                view[:] = data
            res.commit()
        elif lap["where"] == "unwritten":   # the producer writes its record after all
            raw.m[raw.record(pos, R.size):raw.record(pos, R.size) + n] = data
            raw.put32(raw.record(pos, R.type), 0xC1A1)
            raw.put64(raw.record(pos, R.commit), lap_word(pos, raw.secret, layout.COMMITTED))
            raw.put64(raw.slot(slot, layout.Slot.intent_len), 0)
        else:
            p.send(data, type=0xC1A1, timeout=0)
        try:
            f = c.recv(timeout=1)
        except shmring.Empty:
            return {"stale": "the record written after it was never delivered"}
        if (f.type, bytes(f)) != (0xC1A1, data):
            return {"stale": f"after it: a frame of type {f.type:#x}, {len(f)} bytes"}
        f.release()
        return {"stale": "held"}
    finally:
        raw.close()


def run_example(ex):
    name = f"{ex.get('prefix', 'scribble')}-{uuid.uuid4().hex[:12]}"
    state = None
    try:
        state = build(name, ex)
        if "other_lap" in ex:
            return other_lap(state, ex["other_lap"])
        mutate(state["ring"].path, ex.get("mutations", []))
        return drive(state, ex)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(segment_path(name))
        if state is not None:
            guards = state["guards"]
            state.clear()
            for addr in guards:
                _libc.munmap(addr, 4096)


def worker():
    for line in sys.stdin:
        ex = json.loads(line)
        t0 = time.monotonic()
        try:
            out = run_example(ex)
            out["ok"] = True
        except Exception as e:          # a broken rule or an unexpected exception
            import traceback
            out = {"ok": False, "error": f"{type(e).__name__}: {e}",
                   "traceback": traceback.format_exc()}
        out["seconds"] = time.monotonic() - t0
        print(json.dumps(out), flush=True)


if __name__ == "__main__" and "--worker" in sys.argv:
    worker()

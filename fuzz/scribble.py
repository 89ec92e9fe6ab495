"""Scribble over a live ring's shared memory, then drive its consumer.

One example is a JSON-able dict (see run_example).  It builds a small ring
with committed, received, released and reserved records, writes hostile
values into the header, the positions, the producer slots, record headers,
padding or anywhere, and then drives a consumer (and optionally a producer).
The rule it checks: every frame handed out lies inside the mapping and
within max_frame, and every call returns a frame or raises Empty or
RingCorrupted (IncompatibleRing / ConsumerExists / Full where they apply).
A crash kills the process, a hang outlives the caller's deadline: both are
judged by whoever runs this in a subprocess (tests/test_hostile.py) or by
the fuzzer (fuzz/fuzz_consumer.py).

`python fuzz/scribble.py --worker` reads one example per stdin line and
answers one JSON line per example.
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

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np

import shmring
from shmring import segments as L

CAP = 8192
SEGMENT_SIZE = 20480 + CAP      # header and 128 slots, rounded to a page, + data
U64 = (1 << 64) - 1

# name: (offset, width) for header fields; slot and record fields are relative.
HEADER_FIELDS = {
    "magic": (0, 8), "version": (8, 4), "data_offset": (12, 4), "capacity": (16, 8),
    "max_frame": (24, 8), "secret": (32, 8), "nslots": (40, 4), "header_size": (44, 4),
    "creator": (48, 8), "tail": (128, 8), "head": (256, 8), "data_seq": (384, 4),
    "data_waiting": (388, 4), "data_bell": (392, 4), "space_seq": (512, 4),
    "space_waiting": (516, 4), "space_bell": (520, 4),
    "consumer": (640, 8), "received_frames": (648, 8), "abandoned_frames": (672, 8),
}
SLOT_FIELDS = {"owner": (0, 8), "intent_pos": (8, 8), "intent_len": (16, 8),
               "frames": (24, 8), "bell": (56, 4)}
RECORD_FIELDS = {"commit": (0, 8), "length": (8, 8), "type": (16, 4), "slot": (20, 2),
                 "ndim": (22, 1), "flags": (23, 1), "dtype": (24, 8),
                 "shape0": (32, 4), "shape1": (36, 4), "shape7": (60, 4)}
STATES = [0, 1, 2, 3, 4, 5, 63]
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
    ring = shmring.Ring.create(name, CAP, _start=ex.get("start", 0) & ~63 & U64)
    start, end = mapping_of(ring.path)
    guards = [g for g in holes if g in (start - 4096, end)]
    for g in holes:
        if g not in guards:
            _libc.munmap(g, 4096)
    guards += [a for a in (start - 4096, end) if a not in guards and guard_at(a)]
    state = {"ring": ring, "map": (start, end), "guards": guards,
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
    out = []
    pos = head
    while pos != tail and len(out) < 256:
        off = data_offset + (pos & (CAP - 1))
        commit, length = struct.unpack_from("=QQ", raw_m, off)
        if commit & ~63 != (pos ^ secret) & ~63 & U64:
            break
        out.append(pos)
        pos = (pos + ((length + 64 + 63) & ~63)) & U64
    return out


def resolve(value, ctx, rec_pos):
    kind = value[0]
    if kind == "lit":
        return value[1]
    if kind == "tag":                    # a well-formed commit word
        pos = rec_pos if rec_pos is not None else ctx["head"]
        pos = (pos + 64 * value[1]) & U64
        return ((pos ^ ctx["secret"]) & ~63 & U64) | value[2]
    if kind == "pos":                    # near head, tail or a record
        base = {"head": ctx["head"], "tail": ctx["tail"]}.get(value[1], rec_pos or 0)
        return (base + value[2]) & U64
    if kind == "cap":                    # near the capacity or max_frame
        return (CAP + value[1]) & U64 if value[2] == 0 else (CAP // 2 - 64 + value[1]) & U64
    if kind == "code":
        return int.from_bytes(DTYPE_CODES[value[1] % len(DTYPE_CODES)][:8].ljust(8, b"\0"),
                              "little")
    raise ValueError(value)


def mutate(path, mutations):
    fd = os.open(path, os.O_RDWR)
    try:
        m = mmap.mmap(fd, os.fstat(fd).st_size)
    finally:
        os.close(fd)
    try:
        data_offset = struct.unpack_from("=I", m, 12)[0]
        secret = struct.unpack_from("=Q", m, 32)[0] & ~63
        head, tail = struct.unpack_from("=Q", m, 256)[0], struct.unpack_from("=Q", m, 128)[0]
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
                off += L.HEADER_SIZE + (mu[4] % 4) * L.SLOT_SIZE
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
    out = {"frames": 0, "corrupt": 0, "empty": 0, "errors": []}
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
    for k in range(48):
        try:
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
            with contextlib.suppress(shmring.Full, shmring.RingCorrupted, shmring.ConsumerGone):
                p.send(b"z" * (k * 300), timeout=0.01)
    return out


def run_example(ex):
    name = f"{ex.get('prefix', 'scribble')}-{uuid.uuid4().hex[:12]}"
    state = None
    try:
        state = build(name, ex)
        mutate(state["ring"].path, ex.get("mutations", []))
        return drive(state, ex)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(L.segment_dir(), L.PREFIX + name))
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

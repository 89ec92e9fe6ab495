"""Operating rings from outside: list the segments in the segment directory
and remove them.  `shmring ls` and `shmring rm` (shmring/cli.py) are thin
wrappers over list_rings() and remove_ring().

Everything here reads segments read-only and never trusts them: a listing
must work on foreign, truncated or corrupted files, so the header is parsed
with struct from a read-only mapping and not through Ring.attach.

Liveness is by /proc: an owner word is (starttime << 24) | pid, and the owner
is alive when /proc/PID/stat exists, is not a zombie and shows that start
time.  It only works when every participant shares this pid namespace.
"""
from __future__ import annotations

import mmap
import os
import stat as _stat
import struct
from typing import TypedDict

from shmring import layout
from shmring._core import alive as owner_alive
from shmring._core import pid_of as owner_pid
from shmring._ring import segment_dir
from shmring.errors import RingError

PREFIX = "shmring."

H = layout.SegmentHeader


class ProducerInfo(TypedDict):
    slot: int
    pid: int | None
    alive: bool
    frames: int                 # the slot's counts, of every producer that held it
    dropped: int


class RingInfo(TypedDict):
    """What read_ring() says about a segment; the numbers are None when
    'error' says why they could not be read."""
    name: str
    path: str
    size: int | None
    capacity: int | None
    max_frame: int | None
    fill: int | None
    creator_pid: int | None
    creator_alive: bool
    consumer_pid: int | None
    consumer_alive: bool
    producers: list[ProducerInfo]
    abandoned_frames: int | None
    sealed: bool
    live: bool
    stale: bool
    error: str | None


def _u64(buf: bytes | mmap.mmap, off: int) -> int:
    return int(struct.unpack_from("=Q", buf, off)[0])


def _u32(buf: bytes | mmap.mmap, off: int) -> int:
    return int(struct.unpack_from("=I", buf, off)[0])


def read_ring(path: str) -> RingInfo:
    """A dict describing the segment at path.  Never raises for a bad
    segment: 'error' says what is wrong with it instead."""
    name = os.path.basename(path)[len(PREFIX):]
    info: RingInfo = {
        "name": name, "path": path, "size": None, "capacity": None, "max_frame": None,
        "fill": None, "creator_pid": None, "creator_alive": False,
        "consumer_pid": None, "consumer_alive": False,
        "producers": [], "abandoned_frames": None, "sealed": False, "live": False, "stale": False,
        "error": None}
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError as e:
        info["error"] = f"cannot open: {e.strerror}"
        return info
    try:
        st = os.fstat(fd)
        info["size"] = st.st_size
        if not _stat.S_ISREG(st.st_mode):
            info["error"] = "not a regular file"
            return info
        if st.st_size < H.size:
            info["error"] = "too small for a shmring header"
            return info
        head = os.pread(fd, H.size, 0)
        if len(head) < H.size:
            info["error"] = "truncated"
            return info
        if _u64(head, H.magic) != layout.MAGIC:
            info["error"] = "not a shmring segment (bad magic)"
            return info
        if _u32(head, H.version) != layout.VERSION:
            info["error"] = f"layout version {_u32(head, H.version)}, not {layout.VERSION}"
            return info
        capacity = _u64(head, H.capacity)
        offset = _u32(head, H.data_offset)
        nslots = _u32(head, H.nslots)
        if capacity < layout.MIN_CAPACITY or capacity & (capacity - 1) or offset + capacity != st.st_size \
                or not 0 < nslots <= 65535 or layout.slot_offset(nslots) > offset:
            info["error"] = "inconsistent header (capacity, size or slots)"
            return info
        with mmap.mmap(fd, offset, mmap.MAP_SHARED, mmap.PROT_READ) as m:
            creator = _u64(m, H.creator)
            consumer = _u64(m, H.consumer)
            tail, hd = _u64(m, H.tail), _u64(m, H.head)
            info.update({
                "capacity": capacity, "max_frame": _u64(m, H.max_frame),
                "fill": ((tail & ~layout.TAIL_SEALED) - hd) & 0xFFFFFFFFFFFFFFFF,
                "sealed": bool(tail & layout.TAIL_SEALED),
                "creator_pid": owner_pid(creator), "creator_alive": owner_alive(creator),
                "consumer_pid": owner_pid(consumer), "consumer_alive": owner_alive(consumer),
                "abandoned_frames": _u64(m, H.abandoned_frames)})
            for i in range(nslots):
                slot = layout.slot_offset(i)
                word = _u64(m, slot + layout.Slot.owner)
                if word:
                    info["producers"].append(
                        {"slot": i, "pid": owner_pid(word), "alive": owner_alive(word),
                         "frames": _u64(m, slot + layout.Slot.frames),
                         "dropped": _u64(m, slot + layout.Slot.dropped)})
    except OSError as e:
        info["error"] = f"cannot read: {e.strerror}"
        return info
    finally:
        os.close(fd)
    users = info["consumer_alive"] or any(p["alive"] for p in info["producers"])
    info["live"] = bool(users or info["creator_alive"])
    info["stale"] = not info["live"]
    return info


def list_rings(directory: str | None = None) -> list[RingInfo]:
    """Describe every shmring.* file in the segment directory, by name."""
    directory = segment_dir() if directory is None else directory
    try:
        names = sorted(n for n in os.listdir(directory) if n.startswith(PREFIX))
    except FileNotFoundError:
        return []
    return [read_ring(os.path.join(directory, n)) for n in names]


def remove_ring(name: str, *, force: bool = False, directory: str | None = None) -> RingInfo:
    """Remove a ring's segment.  Refuses (RingError) while its creator, its
    consumer or any producer is alive, unless force; processes that have it
    mapped keep their mapping either way.  Returns the description it
    removed."""
    from shmring._ring import segment_path  # validates the name
    path = segment_path(name)
    if directory is not None:
        path = os.path.join(directory, os.path.basename(path))
    info = read_ring(path)
    if info["error"] and info["error"].startswith("cannot open") and not os.path.lexists(path):
        raise FileNotFoundError(2, f"no ring named {name!r}", path)
    if info["live"] and not force:
        raise RingError(f"ring {name!r} is in use ({', '.join(users(info))})")
    os.unlink(path)
    return info


def users(info: RingInfo) -> list[str]:
    """The live processes of a ring read_ring() described, as 'creator pid N' etc."""
    who = []
    if info["creator_alive"]:
        who.append(f"creator pid {info['creator_pid']}")
    if info["consumer_alive"]:
        who.append(f"consumer pid {info['consumer_pid']}")
    return who + [f"producer pid {p['pid']}" for p in info["producers"] if p["alive"]]

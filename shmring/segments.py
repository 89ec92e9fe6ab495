"""Operating rings from outside: list the segments in the segment directory,
with their doorbells, and remove them.  `shmring ls` and `shmring rm`
(shmring/cli.py) are thin wrappers over list_rings() and remove_ring().

Everything here reads segments read-only and never trusts them: a listing
must work on foreign, truncated or corrupted files, so the header is parsed
with struct from a read-only mapping and not through Ring.attach.

Liveness is by /proc: an owner word is (starttime << 24) | pid, and the owner
is alive when /proc/PID/stat exists, is not a zombie and shows that start
time.  It only works when every participant shares this pid namespace.

Doorbells are the sockets that awaiting consumers and producers wait on,
`shmring.<name>@...` beside the segment (shmring/doorbell.pxi); their names
carry their owner, so they are judged alive the same way.
"""
from __future__ import annotations

import contextlib
import mmap
import os
import stat as _stat
import struct
from typing import TYPE_CHECKING, TypedDict

from shmring import layout
from shmring._core import alive as owner_alive
from shmring._core import pid_of as owner_pid
from shmring._ring import doorbell_prefix, doorbells, segment_dir
from shmring.errors import RingError

if TYPE_CHECKING:
    from shmring._ring import DoorbellInfo

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
    doorbells: list[DoorbellInfo]
    abandoned_frames: int | None
    sealed: bool
    live: bool
    stale: bool
    error: str | None


def _u64(buf: bytes | mmap.mmap, off: int) -> int:
    return int(struct.unpack_from("=Q", buf, off)[0])


def _u32(buf: bytes | mmap.mmap, off: int) -> int:
    return int(struct.unpack_from("=I", buf, off)[0])


def ring_doorbells(path: str, listed: list[DoorbellInfo] | None = None) -> list[DoorbellInfo]:
    """The doorbells of the segment at path, from listed (doorbells() of its
    directory) or from a fresh listing; none for a name no ring can have."""
    name = os.path.basename(path)[len(PREFIX):]
    try:
        prefix = doorbell_prefix(name)
    except ValueError:
        return []
    if listed is None:
        listed = doorbells(os.path.dirname(path) or ".", name)
    return [b for b in listed if b["prefix"] == prefix]


def read_ring(path: str, listed: list[DoorbellInfo] | None = None) -> RingInfo:
    """A dict describing the segment at path and its doorbells (taken from
    listed when given).  Never raises for a bad segment: 'error' says what
    is wrong with it instead."""
    name = os.path.basename(path)[len(PREFIX):]
    info: RingInfo = {
        "name": name, "path": path, "size": None, "capacity": None, "max_frame": None,
        "fill": None, "creator_pid": None, "creator_alive": False,
        "consumer_pid": None, "consumer_alive": False,
        "producers": [], "doorbells": ring_doorbells(path, listed),
        "abandoned_frames": None, "sealed": False, "live": False, "stale": False, "error": None}
    _read_header(path, info)
    _judge(info)
    return info


def _judge(info: RingInfo) -> None:
    """live: its creator, consumer, a producer or a doorbell's owner runs.
    stale: a ring that nothing runs any more; a file that is not a ring
    never is (replace_stale must leave it alone)."""
    users = info["consumer_alive"] or any(p["alive"] for p in info["producers"]) \
        or any(b["alive"] for b in info["doorbells"])
    info["live"] = bool(users or info["creator_alive"])
    info["stale"] = not info["live"] and info["error"] is None


def _read_header(path: str, info: RingInfo) -> None:
    """Fill info from the segment's header, or set its 'error'."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError as e:
        info["error"] = f"cannot open: {e.strerror}"
        return
    try:
        st = os.fstat(fd)
        info["size"] = st.st_size
        if not _stat.S_ISREG(st.st_mode):
            info["error"] = "not a regular file"
            return
        if st.st_size < H.size:
            info["error"] = "too small for a shmring header"
            return
        head = os.pread(fd, H.size, 0)
        if len(head) < H.size:
            info["error"] = "truncated"
            return
        if _u64(head, H.magic) != layout.MAGIC:
            info["error"] = "not a shmring segment (bad magic)"
            return
        if _u32(head, H.version) != layout.VERSION:
            info["error"] = f"layout version {_u32(head, H.version)}, not {layout.VERSION}"
            return
        capacity = _u64(head, H.capacity)
        offset = _u32(head, H.data_offset)
        nslots = _u32(head, H.nslots)
        if capacity < layout.MIN_CAPACITY or capacity & (capacity - 1) or offset + capacity != st.st_size \
                or not 0 < nslots <= 65535 or layout.slot_offset(nslots) > offset:
            info["error"] = "inconsistent header (capacity, size or slots)"
            return
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
        return
    finally:
        os.close(fd)


def list_rings(directory: str | None = None) -> list[RingInfo]:
    """Describe every segment in the segment directory, by name, with its
    doorbells; doorbells whose segment is gone are listed too, as an entry
    whose 'error' says so."""
    directory = segment_dir() if directory is None else directory
    try:
        names = sorted(n for n in os.listdir(directory) if n.startswith(PREFIX) and "@" not in n)
    except FileNotFoundError:
        return []
    listed = doorbells(directory)
    rings = [read_ring(os.path.join(directory, n), listed) for n in names]
    claimed = {b["path"] for r in rings for b in r["doorbells"]}
    for prefix in sorted({b["prefix"] for b in listed if b["path"] not in claimed}):
        orphan = read_ring(os.path.join(directory, prefix[:-1]), [])
        orphan["doorbells"] = [b for b in listed if b["prefix"] == prefix]
        orphan["error"] = "doorbells without a segment"
        _judge(orphan)
        orphan["stale"] = not orphan["live"]    # what is left of a ring that is gone
        rings.append(orphan)
    return rings


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
    missing = not os.path.lexists(path)
    if missing and not info["doorbells"]:
        raise FileNotFoundError(2, f"no ring named {name!r}", path)
    if info["live"] and not force:
        raise RingError(f"ring {name!r} is in use ({', '.join(users(info))})")
    if not missing:
        os.unlink(path)
    for bell in info["doorbells"]:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(bell["path"])
    return info


def users(info: RingInfo) -> list[str]:
    """The live processes of a ring read_ring() described, as 'creator pid N' etc."""
    who = []
    if info["creator_alive"]:
        who.append(f"creator pid {info['creator_pid']}")
    if info["consumer_alive"]:
        who.append(f"consumer pid {info['consumer_pid']}")
    who += [f"producer pid {p['pid']}" for p in info["producers"] if p["alive"]]
    return who + [f"doorbell of pid {b['pid']}" for b in info["doorbells"] if b["alive"]]

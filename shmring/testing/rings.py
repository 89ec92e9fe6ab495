"""Rings for tests and the lab: unique names whose segments are always
removed, scratch segment directories, and a segment's raw bytes."""
import contextlib
import mmap
import os
import shutil
import struct
import tempfile
import uuid

from shmring import layout
from shmring._ring import doorbells, segment_path

U64 = (1 << 64) - 1


def unique_name(prefix="test"):
    return f"{prefix}-{os.getpid()}-{uuid.uuid4().hex[:10]}"


def _remove(path):
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


@contextlib.contextmanager
def ring_name(prefix="test"):
    """A unique ring name; its segment and doorbells are removed afterwards,
    even on failure, from the segment directory of then and of now."""
    name = unique_name(prefix)
    path = segment_path(name)
    try:
        yield name
    finally:
        for p in {path, segment_path(name)}:
            remove_ring_files(p, name)


def remove_ring_files(path, name):
    """Remove the segment at path and every doorbell of ring name beside it
    (a child killed while it awaited leaves its doorbell behind)."""
    _remove(path)
    for bell in doorbells(os.path.dirname(path), name):
        _remove(bell["path"])


@contextlib.contextmanager
def scratch_dir():
    """A fresh directory on tmpfs for segments, made SHMRING_DIR meanwhile,
    and removed with whatever is left in it."""
    base = "/dev/shm" if os.path.isdir("/dev/shm") else None
    path = tempfile.mkdtemp(prefix="shmring-lab-", dir=base)
    old = os.environ.get("SHMRING_DIR")
    os.environ["SHMRING_DIR"] = path
    try:
        yield path
    finally:
        if old is None:
            os.environ.pop("SHMRING_DIR", None)
        else:
            os.environ["SHMRING_DIR"] = old
        shutil.rmtree(path, ignore_errors=True)


class Raw:
    """A segment's bytes through a second, independent mapping, for reading
    counters and for playing a hostile or half-finished process.  Offsets
    come from shmring.layout."""

    def __init__(self, path):
        fd = os.open(path, os.O_RDWR)
        try:
            self.m = mmap.mmap(fd, os.fstat(fd).st_size)
        finally:
            os.close(fd)
        self.data_offset = self.u32(layout.SegmentHeader.data_offset)
        self.capacity = self.u64(layout.SegmentHeader.capacity)
        self.secret = self.u64(layout.SegmentHeader.secret) & ~layout.STATE_MASK

    def u64(self, off):
        return struct.unpack_from("=Q", self.m, off)[0]

    def u32(self, off):
        return struct.unpack_from("=I", self.m, off)[0]

    def put64(self, off, value):
        struct.pack_into("=Q", self.m, off, value & U64)

    def put32(self, off, value):
        struct.pack_into("=I", self.m, off, value & 0xFFFFFFFF)

    def slot(self, i, field=0):
        """Offset in the file of a field of producer slot i."""
        return layout.slot_offset(i) + field

    def record(self, pos, field=0):
        """Offset in the file of a field of the record header at pos."""
        return self.data_offset + (pos & (self.capacity - 1)) + field

    def tag(self, pos):
        return (pos ^ self.secret) & ~layout.STATE_MASK & U64

    def slot_of_pid(self, pid):
        nslots = self.u32(layout.SegmentHeader.nslots)
        for i in range(nslots):
            if self.u64(self.slot(i, layout.Slot.owner)) & layout.PID_MASK == pid:
                return i
        raise AssertionError(f"pid {pid} owns no producer slot")

    def close(self):
        with contextlib.suppress(BufferError):
            self.m.close()

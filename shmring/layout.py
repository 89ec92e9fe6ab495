"""The segment layout as numbers, for code that reads a segment as bytes:
`shmring ls`, the tests and the fuzzer.

layout.pxd is the only place the layout is written down.  _core takes every
offset and size below from its structs with the compiler (sizeof and field
addresses), so nothing here can drift from them; docs/design.md draws them,
and tests/test_layout.py holds the drawing to these numbers.

    from shmring import layout
    layout.SegmentHeader.tail           # 128: the offset of tail in the segment
    layout.Slot.size                    # 128: one producer slot
    layout.RecordHeader.width("dtype")  # 8
"""
from __future__ import annotations

from shmring._core import LAYOUT as _LAYOUT
from shmring._core import _data_offset


class Struct:
    """One struct of layout.pxd: its size, and each field's offset as an
    attribute of the field's name."""

    def __init__(self, name: str, size: int, fields: dict[str, tuple[int, int]]) -> None:
        self.name = name
        self.size = size
        self.fields = dict(fields)          # field -> (offset, width), padding included
        for field in self.fields:
            if field in ("name", "size", "fields", "width"):
                raise ValueError(f"{name}.{field} hides an attribute of Struct")

    def __getattr__(self, field: str) -> int:
        try:
            return self.fields[field][0]
        except KeyError:
            raise AttributeError(f"{self.name} has no field {field!r}") from None

    def width(self, field: str) -> int:
        return self.fields[field][1]

    def __repr__(self) -> str:
        return f"<layout of {self.name}: {self.size} bytes>"


SegmentHeader = Struct("SegmentHeader", *_LAYOUT["SegmentHeader"])
Slot = Struct("Slot", *_LAYOUT["Slot"])
RecordHeader = Struct("RecordHeader", *_LAYOUT["RecordHeader"])

_C: dict[str, int] = _LAYOUT["constants"]
MAGIC = _C["MAGIC"]
VERSION = _C["VERSION"]
LINE = _C["LINE"]                           # shared counters sit this far apart
ALIGN = _C["ALIGN"]                         # records and payloads start on this boundary
RECORD_HEADER = _C["RECORD_HEADER"]
MIN_CAPACITY = _C["MIN_CAPACITY"]
DEFAULT_SLOTS = _C["DEFAULT_SLOTS"]
MAX_NDIM = _C["MAX_NDIM"]
# Record states: the low bits of a record's commit word, above them its tag.
BUSY, COMMITTED, PAD, RELEASED = _C["BUSY"], _C["COMMITTED"], _C["PAD"], _C["RELEASED"]
STATE_MASK = _C["STATE_MASK"]
TAIL_SEALED = _C["TAIL_SEALED"]                 # the bit of tail that marks a sealed ring
# An owner word is (start time << PID_BITS) | pid.
PID_BITS = _C["PID_BITS"]
PID_MASK = (1 << PID_BITS) - 1


def slot_offset(i: int) -> int:
    """Where producer slot i starts in the segment."""
    return SegmentHeader.size + i * Slot.size


def data_offset(nslots: int) -> int:
    """Where the data area starts: the first page after nslots slots."""
    return _data_offset(nslots)


def record_size(length: int) -> int:
    """Bytes a record of length payload bytes takes in the data area."""
    return (RECORD_HEADER + length + ALIGN - 1) & ~(ALIGN - 1)

"""The segment layout has one source, the structs in shmring/layout.pxd:
shmring.layout carries their offsets into Python, complete, and the drawings
in docs/design.md must agree with them."""
import os
import re

import pytest

import shmring
from shmring import layout

DESIGN = os.path.join(os.path.dirname(__file__), "..", "docs", "design.md")
WIDTHS = {"u8": 1, "u16": 2, "u32": 4, "u64": 8}
STRUCTS = [layout.SegmentHeader, layout.Slot, layout.RecordHeader]


def named(s):
    """Fields of a struct in offset order, without its padding."""
    return [f for f, _ in sorted(s.fields.items(), key=lambda kv: kv[1]) if not f.startswith("_")]


@pytest.mark.parametrize("s", STRUCTS, ids=lambda s: s.name)
def test_fields_tile_the_struct(s):
    """Every byte belongs to exactly one exported field, padding included,
    so no field of layout.pxd can be missing from the export."""
    end = 0
    for field, (offset, width) in sorted(s.fields.items(), key=lambda kv: kv[1]):
        assert offset == end, f"{s.name}.{field} at {offset}: a gap or overlap before it"
        assert getattr(s, field) == offset and width > 0
        end = offset + width
    assert end == s.size


def test_shared_counters_sit_on_their_own_lines():
    h = layout.SegmentHeader
    lines = [h.tail, h.head, h.data_seq, h.space_seq, h.consumer]
    assert all(off % layout.LINE == 0 for off in lines)
    assert sorted({off // layout.LINE for off in lines}) == [1, 2, 3, 4, 5]
    assert h.size % layout.LINE == 0 and layout.Slot.size == layout.LINE
    assert layout.RecordHeader.size == layout.RECORD_HEADER


def test_a_real_segment_reads_as_the_layout_says(name):
    """The numbers describe what _core writes: read a fresh segment's
    header, a slot and a record through them."""
    start = (1 << 32) - 128
    with shmring.Ring.create(name, 8192, producers=3, _start=start) as ring, \
            open(ring.path, "rb") as f, ring.producer() as p:
        p.send(b"abc", type=77)
        data = f.read()
    h, s, r = layout.SegmentHeader, layout.Slot, layout.RecordHeader

    def u(off, width):
        return int.from_bytes(data[off:off + width], "little")
    assert u(h.magic, 8) == layout.MAGIC and u(h.version, 4) == layout.VERSION
    assert (u(h.capacity, 8), u(h.max_frame, 8), u(h.nslots, 4)) == (8192, ring.max_frame, 3)
    assert u(h.header_size, 4) == h.size
    assert u(h.data_offset, 4) == layout.data_offset(3) == len(data) - 8192
    assert u(h.tail, 8) == start + layout.record_size(3) and u(h.head, 8) == start
    slot = layout.slot_offset(0)
    assert u(slot + s.owner, 8) & layout.PID_MASK == os.getpid()
    assert (u(slot + s.frames, 8), u(slot + s.bytes, 8)) == (1, 3)
    rec = layout.data_offset(3) + (start & 8191)
    secret = u(h.secret, 8) & ~layout.STATE_MASK
    assert u(rec + r.commit, 8) == ((start ^ secret) & ~layout.STATE_MASK) | layout.COMMITTED
    assert (u(rec + r.length, 8), u(rec + r.type, 4)) == (3, 77)
    assert data[rec + r.size:rec + r.size + 3] == b"abc"


def drawing(heading):
    """The first ``` block after a heading of docs/design.md, as lines."""
    with open(DESIGN) as f:
        text = f.read()
    after = text[text.index(f"\n## {heading}\n"):]
    return after.split("```\n", 2)[1].splitlines()


def test_design_draws_the_segment_as_the_structs_lay_it_out():
    """Each row of the drawing gives an offset and a size; the fields it
    names (`name u64`) follow each other from that offset, and together the
    rows name every field of SegmentHeader and of Slot."""
    rows = []                                   # [offset, size, [(field, width)]]
    for line in drawing("The segment")[1:]:
        row = re.match(r"\s*(\d+)\s+(\d+)( × nslots)?\s", line)
        if row:
            rows.append([int(row.group(1)), int(row.group(2)), []])
        elif not line.startswith(" "):
            break                               # the data area: no fields
        rows[-1][2] += [(f, WIDTHS[t]) for f, t in re.findall(r"\b(\w+) (u\d+)\b", line)]
    *header_rows, slot_row = rows
    h = layout.SegmentHeader
    seen = []
    for (offset, size, fields), (next_offset, _, _) in zip(header_rows, rows[1:]):
        assert offset + size == next_offset, f"the row at {offset} is {size} bytes"
        at = offset
        for field, width in fields:
            assert h.fields.get(field) == (at, width), \
                f"design.md puts {field} at {at} ({width} B), layout.pxd at {h.fields.get(field)}"
            at += width
        assert at <= offset + size
        seen += [f for f, _ in fields]
    assert seen == named(h)
    offset, size, fields = slot_row
    assert (offset, size) == (h.size, layout.Slot.size)
    at = 0
    for field, width in fields:
        assert layout.Slot.fields.get(field) == (at, width), f"slot field {field}"
        at += width
    assert [f for f, _ in fields] == named(layout.Slot)
    rule = re.search(r"(\d+) \+ (\d+)·nslots rounded up to (\d+)", "\n".join(drawing("The segment")))
    first, per_slot, page = map(int, rule.groups())
    assert (first, per_slot) == (h.size, layout.Slot.size)
    for n in (1, 3, 24, layout.DEFAULT_SLOTS, 1000):
        assert layout.data_offset(n) == -(-(first + per_slot * n) // page) * page


def test_design_draws_the_record_header_as_the_struct_lays_it_out():
    lines = drawing("A record")
    bounds = [int(n) for n in lines[0].split()]
    cells = [c.split()[0].split("[")[0] for c in lines[2].strip().strip("|").split("|")]
    r = layout.RecordHeader
    assert cells == named(r)
    for field, start, end in zip(cells, bounds, bounds[1:]):
        assert r.fields[field] == (start, end - start), f"design.md draws {field} at {start}-{end}"
    assert bounds[-1] == r.size
    text = "\n".join(lines)
    assert re.search(r"commit = \(\(pos \^ secret\) & ~(\d+)\) \| state", text).group(1) == \
        str(layout.STATE_MASK)
    states = dict(re.findall(r"([A-Z]+) (\d)", text.split("state  =")[1].splitlines()[0]))
    assert states == {"BUSY": str(layout.BUSY), "COMMITTED": str(layout.COMMITTED),
                      "PAD": str(layout.PAD), "RELEASED": str(layout.RELEASED)}
    header, pad, mask = re.search(r"size   = \((\d+) \+ length \+ (\d+)\) & ~(\d+)", text).groups()
    assert (int(header), int(pad), int(mask)) == (r.size, layout.ALIGN - 1, layout.ALIGN - 1)
    assert layout.record_size(1) == layout.record_size(layout.ALIGN) == r.size + layout.ALIGN


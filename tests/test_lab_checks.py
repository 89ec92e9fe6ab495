"""The lab's own checks (stress/) fail when they should: the space
accounting on a record padded though it fit, the frame check on duplicated
copies and batches out of order, lost wakeups, held frames whose bytes
changed, and the aarch64 audit's table and instruction names.  Each runs in a
child that imports stress from this checkout and this same shmring."""
import json
import os
import sys

import pytest

from shmring.testing import processes

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
pytestmark = pytest.mark.timeout(120)


def in_lab(code):
    """What the snippet prints as JSON, run in a child that imports stress."""
    proc = processes.run([sys.executable, "-c", code], 60, capture_output=True, text=True,
                         env=dict(os.environ, PYTHONPATH=processes.python_path(ROOT)))
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


RECORDS = """
import json, zlib
from shmring import layout
from shmring.testing.frames import expected_crc, frame_type, payload
from stress.invariants import Outcome, check_frames, check_space
from stress.workers import ANONYMOUS, NO_POS, OWN, TYPED

def typed(i, seq, n, pos=NO_POS, first=None, recovered=0):
    return (TYPED, frame_type(i, seq if first is None else first), n, expected_crc(i, seq, n), pos,
            recovered)

def copy(i, seq, n):
    data = payload(i, seq, n)
    return (ANONYMOUS, 0, n, zlib.crc32(data), NO_POS, 0)
"""


def test_space_check_finds_a_record_padded_though_it_fit():
    out = in_lab(RECORDS + """
stats = {"capacity": 4096, "frames_aborted": 0, "frames_abandoned": 0, "frames_rewound": 0}
fits = [typed(1, 0, 1984, 0), typed(1, 1, 1984, 2048)]            # exactly to the wrap
padded = [typed(1, 0, 1984, 0), typed(1, 1, 1984, 4096)]          # padded anyway
needs = [typed(1, 0, 1984, 0), typed(1, 1, 1985, 4096)]           # 64 bytes too many: padded
# a dead producer's claim (recovered, unseen) filled the rest of the lap:
after_dead = [typed(1, 0, 1984, 0), typed(2, 0, 1984, 4096, recovered=1)]
print(json.dumps([check_space(fits, 0, dict(stats, tail=4096)),
                  check_space(padded, 0, dict(stats, tail=6144)),
                  check_space(needs, 0, dict(stats, tail=6208)),
                  check_space(fits[:1], 0, dict(stats, tail=4096)),
                  check_space(padded, 0, dict(stats, tail=6144, frames_rewound=1)),
                  check_space(fits, 0, dict(stats, tail=4096, frames_rewound=1)),
                  check_space(after_dead, 0, dict(stats, tail=6144, frames_abandoned=1))]))
""")
    assert out[0] == [] and out[2] == [] and out[4] == []     # out[4]: a rewind, counted
    assert out[6] == []         # not a rewind: the claims before it are unknown
    assert out[1] == ["space: 1 frame(s) start a lap though they fit before its end, "
                      "but producers rewound 0 time(s)"]
    assert out[5] == ["space: 0 frame(s) start a lap though they fit before its end, "
                      "but producers rewound 1 time(s)"]
    assert out[3] == ["space: tail is 0x1000, but the records and the padding their wraps need "
                      "end at 0x800"]


def test_frame_check_matches_copies_and_catches_duplicates_and_reordered_batches():
    out = in_lab(RECORDS + """
sizes = {1: [0, 10, 30, 5], 2: [7, 7]}
batches = {1: 1, 2: 2}                 # producer 2 sends its two frames in one send_many()

def frame_of(i, seq):
    first = seq - seq % batches[i]
    return sizes[i][seq], first, first + batches[i]

done = {1: Outcome(4), 2: Outcome(2)}
good = [typed(1, 0, 0), copy(2, 0, 7), copy(1, 1, 10), typed(1, 2, 30), typed(2, 1, 7, first=0),
        copy(1, 3, 5)]
twice = good + [copy(1, 3, 5)]
swapped = [typed(1, 0, 0), copy(1, 1, 10), typed(1, 2, 30), copy(1, 3, 5),
           typed(2, 1, 7, first=0), typed(2, 0, 7, first=0)]
lost = good[:3] + good[4:]             # producer 1's frame 2 never came
print(json.dumps([check_frames(r, frame_of, done)[0] for r in (good, twice, swapped, lost)]))
""")
    assert out[0] == []
    assert out[1] == ["1 copied frame(s) too short to name their producer match no frame still "
                      "due (torn, stale or duplicated): 5 bytes crc 0xca1e308f: producer 1 frame 3 "
                      "(4 matched)"]
    assert any(line.startswith("torn frame: producer 2 seq 0") for line in out[2]), out[2]
    assert "producer 1 (survived): sent 4, delivered 2" in out[3], out[3]


def test_copies_of_killed_producers_that_look_alike_are_given_out_by_search():
    """Two killed producers may each have committed an unreported empty
    frame; the copies left must go where the rest of them fit, not to the
    first producer that could take one."""
    out = in_lab(RECORDS + """
sizes = {1: [0, 9], 2: [0, 5]}
done = {1: Outcome(0, "free", extra=2), 2: Outcome(0, "free", extra=2)}
frame_of = lambda i, seq: (sizes[i][seq], seq, seq + 1)
print(json.dumps([check_frames([copy(2, 0, 0), copy(2, 1, 5)], frame_of, done)[0],
                  check_frames([copy(2, 0, 0), copy(2, 1, 5), copy(2, 1, 5)], frame_of, done)[0]]))
""")
    assert out[0] == []
    assert len(out[1]) == 1 and "copied frame(s) too short" in out[1][0], out[1]   # a duplicate


def test_lost_wakeups_and_changed_held_frames_are_violations():
    out = in_lab(RECORDS + """
import zlib
from stress.invariants import check
from stress.workers import Held
stats = {"capacity": 4096, "frames_aborted": 0, "frames_abandoned": 0, "frames_rewound": 0,
         "frames_received": 0, "bytes_received": 0, "frames_committed": 0, "bytes_committed": 0, "fill": 0,
         "head": 0, "tail": 0, "sealed": False}
bad = check([], lambda i, s: (0, s, s + 1), {}, stats, 0, 0,
            {"data": (2, 0x40), "space": (0, 0)})
print(json.dumps([bad, Held(b"abc", zlib.crc32(b"abd"), 7).changed(),
                  Held(b"abc", zlib.crc32(b"abc"), 7).changed()]))
""")
    assert out[0] == ["lost wakeup: 2 data wait(s) slept to their timeout through a wake "
                      "that was due (the first at 0x40)"]
    assert out[1:] == [True, False]


def test_soak_calls_take_turns_of_send_reserve_and_send_many():
    out = in_lab("""
import json
from stress.soak import Calls
calls = Calls(list(range(100, 120)), [3])
print(json.dumps([calls.frame_of(seq) for seq in range(7)]))
""")
    # one send(), one reserve(), one send_many() of 3, then again
    assert out == [[100, 0, 1], [101, 1, 2], [102, 2, 5], [103, 2, 5], [104, 2, 5],
                   [105, 5, 6], [106, 6, 7]]


def test_aarch64_table_claims_the_orders_of_the_source():
    out = in_lab("""
import json
from stress import aarch64
rows = {}
for r in aarch64.table():
    rows.setdefault((r.function, r.op), r)      # each function's first of its kind
pick = [("publish", "store"), ("recover_busy", "load"), ("producer_claim", "cas"),
        ("producer_close", "store"), ("advance_head", "fence")]
print(json.dumps([[list(rows[k].orders), rows[k].expected()] for k in pick] +
                 [aarch64.instruction(m, ops) for m, ops in
                  [("casal", "x1, x2, [x0]"), ("ldaddl", "w1, w2, [x0]"), ("ldapr", "x0, [x1]"),
                   ("swp", "w1, w0, [x2]"), ("staddl", "x1, [x0]"), ("dmb", "ish")]]))
""")
    assert out[:5] == [[["RELEASE"], "stlr"], [["ACQUIRE"], "ldar"],
                       [["RELEASE", "RELAXED"], "cas8_rel"], [["RELEASE"], "stlr"],
                       [["SEQ_CST"], "dmb ish"]]
    assert out[5:] == ["cas8_acq_rel", "ldadd4_rel", "ldar", "swp4_relax", "ldadd8_rel", "dmb ish"]

"""The invariants every lab run must keep, checked after the run from what
the consumer recorded, what each producer reported, the ring's counters and
the lab's notes on the wake handshakes (futexes and doorbells)."""
from collections import Counter
from dataclasses import dataclass

from shmring import layout
from shmring.testing.frames import expected_crc, split_type
from stress.workers import ANONYMOUS, NO_POS, TYPED

# A producer killed at one of these holds a claim the consumer must recover.
CLAIM_POINTS = {"claimed", "busy", "payload", "commit"}
LISTED = 20                         # violations listed per check; the rest are counted
SEARCHED = 12                       # copies left at the end that settle() searches over
U64 = (1 << 64) - 1


@dataclass
class Outcome:
    """How one producer ended."""
    sent: int                       # frames it reported as sent (or was seen to commit)
    killed_at: str = None           # pause point name, "free" (soak) or None
    status: int = 0                 # exit status
    extra: int = 0                  # frames it may have committed and not reported (killed)
    refused: bool = False           # a send raised Sealed (it sent nothing more)


def check(records, frame_of, outcomes, stats, abandoned=None, start=None, lost=None,
          saw_seal=False):
    """Violations, as readable strings.  records: workers.RECORD tuples in
    delivery order; frame_of(producer, seq) -> (length, first seq of the call
    that sent it); outcomes: producer -> Outcome; abandoned: the number of
    claims that must have been recovered, or None when it is not known
    exactly (free-running kills); start: the ring's first position, for the
    space check; lost: control.lost_wakeups(); saw_seal: whether the
    consumer's iteration ended at the seal."""
    bad, nbytes = check_frames(records, frame_of, outcomes)
    bad += check_seal(outcomes, stats, saw_seal)
    bad += check_counters(records, nbytes, stats, abandoned)
    if start is not None:
        bad += check_space(records, start, stats)
    for name, (count, where) in (lost or {}).items():
        if count:
            bad.append(f"lost wakeup: {count} {name} wait(s) slept to their timeout through a "
                       f"wake that was due (the first at {where:#x})")
    return bad


def check_seal(outcomes, stats, saw_seal):
    """A seal races claims: each claim is delivered (its send returned and
    counts in sent) or refused (that send raised Sealed), never lost or
    stuck (check_frames), and a refusal needs a sealed ring, which the
    consumer saw end."""
    bad = [f"producer {i} was refused (Sealed) by a ring that is not sealed"
           for i, out in outcomes.items() if out.refused and not stats["sealed"]]
    if stats["sealed"] != saw_seal:
        bad.append(f"the ring is {'' if stats['sealed'] else 'not '}sealed, but the consumer "
                   f"{'did not see' if stats['sealed'] else 'saw'} the end of the stream")
    return bad


def check_frames(records, frame_of, outcomes):
    """Each frame is its producer's next one (FIFO), byte for byte, once;
    every producer delivered exactly what it sent.  A frame names its
    producer and the first frame of its send call (its type), or itself (a
    copy's own header); a copy too short for a header names nothing and is
    matched, by length and checksum, as a due frame of the producer whose
    later frame arrives (so such copies are counted, not ordered).  Returns
    (violations, payload bytes seen)."""
    bad = Listing()
    nxt = dict.fromkeys(outcomes, 0)        # producer -> its next frame
    anonymous = Counter()                   # (length, crc) of copies not yet matched

    def limit(i):
        return outcomes[i].sent + outcomes[i].extra

    def due_at(i, seq):
        """(length, crc) of producer i's frame seq."""
        n = frame_of(i, seq)[0]
        return n, expected_crc(i, seq, n)

    def due(i):
        return due_at(i, nxt[i])

    def match_anonymous(i, until, unless=None):
        """Count anonymous copies as producer i's frames, up to frame until
        and not at a frame that looks like unless."""
        matched = 0
        while nxt[i] < min(until, limit(i)) and due(i) != unless and anonymous[due(i)]:
            anonymous[due(i)] -= 1
            nxt[i] += 1
            matched += 1
        return matched

    nbytes = 0
    for k, (how, type, length, crc, _, _) in enumerate(records):
        nbytes += length
        if how == ANONYMOUS:
            anonymous[(length, crc)] += 1
            continue
        ident = split_type(type)
        if ident is None or ident[0] not in outcomes:
            bad.add(f"frame #{k}: type {type:#x} is not a lab frame (stale or zeroed memory?)")
            continue
        i, named = ident                    # (seq modulo 2^24: the lab's runs stay below)
        end = frame_of(i, named)[2] if how == TYPED else named + 1
        match_anonymous(i, named)           # earlier frames came as copies, or are lost
        match_anonymous(i, end - 1, (length, crc))
        if nxt[i] >= limit(i):
            bad.add(f"producer {i}: frame #{k} is more than the {limit(i)} it sent (a duplicate?)")
            continue
        if not named <= nxt[i] < end:
            bad.add(f"producer {i}: frame #{k} is one of its frames {named}..{end - 1}, but "
                    f"frame {nxt[i]} is next: order or duplicates broken")
            continue
        if (length, crc) != due(i):
            bad.add(f"torn frame: producer {i} seq {nxt[i]}: {length} bytes crc {crc:#x}, "
                    f"want {due(i)[0]} bytes crc {due(i)[1]:#x}")
        nxt[i] += 1
    # What is left: first the frames each producer must have delivered, then
    # those a killed one may have.  Short copies of two producers can look
    # alike, so the latter are given out by a search, not first come.
    while any(match_anonymous(i, outcomes[i].sent) for i in outcomes):
        pass
    optional = {i: nxt[i] for i in outcomes if nxt[i] < limit(i)}
    if sum(anonymous.values()) <= SEARCHED and settle(anonymous, optional, limit, due_at):
        nxt.update(optional)
    while any(match_anonymous(i, limit(i)) for i in outcomes):
        pass
    if sum(anonymous.values()):
        bad.add(f"{sum(anonymous.values())} copied frame(s) too short to name their producer "
                "match no frame still due (torn, stale or duplicated): "
                + "; ".join(whose(key, frame_of, nxt) for key in anonymous if anonymous[key])[:600])
    for i, out in outcomes.items():
        if out.killed_at is None and out.status != 0:
            bad.add(f"producer {i} exited with status {out.status}")
        if not out.sent <= nxt[i] <= limit(i):
            how_ended = f"killed at {out.killed_at}" if out.killed_at else "survived"
            bad.add(f"producer {i} ({how_ended}): sent {out.sent}"
                    f"{f' (+{out.extra} unreported)' if out.extra else ''}, delivered {nxt[i]}")
    return bad.lines(), nbytes


def settle(copies, nxt, limit, due_at):
    """Whether some order of choices gives every copy left (a Counter of
    (length, crc)) to a producer as its next frame, up to its limit; nxt
    (producer -> next frame) then holds the choice."""
    if not sum(copies.values()):
        return True
    for i, seq in nxt.items():
        key = due_at(i, seq) if seq < limit(i) else None
        if key and copies[key]:
            copies[key] -= 1
            nxt[i] += 1
            if settle(copies, nxt, limit, due_at):
                return True
            copies[key] += 1
            nxt[i] -= 1
    return False


def whose(key, frame_of, nxt, near=64):
    """Which frames near each producer's end a copy (length, crc) equals."""
    same = []
    for i in nxt:
        for seq in range(max(0, nxt[i] - near), nxt[i] + near):
            try:
                n = frame_of(i, seq)[0]
            except IndexError:          # past a scheduled producer's last frame
                break
            if (n, expected_crc(i, seq, n)) == key:
                same.append(f"producer {i} frame {seq} ({nxt[i]} matched)")
    return f"{key[0]} bytes crc {key[1]:#x}: " + (", ".join(same) if same else "no frame near")


def check_counters(records, nbytes, stats, abandoned):
    bad = []
    if stats["frames_received"] != len(records) or stats["bytes_received"] != nbytes:
        bad.append(f"ring counts {stats['frames_received']} frames / {stats['bytes_received']} B "
                   f"received, consumer saw {len(records)} / {nbytes}")
    if stats["frames_committed"] != len(records) or stats["bytes_committed"] != nbytes:
        bad.append(f"ring counts {stats['frames_committed']} frames / {stats['bytes_committed']} B "
                   f"committed, consumer saw {len(records)} / {nbytes}")
    if stats["fill"] != 0:
        bad.append(f"ring not empty after the drain: head {stats['head']:#x} tail {stats['tail']:#x}")
    if abandoned is not None and stats["frames_abandoned"] != abandoned:
        bad.append(f"ring recovered {stats['frames_abandoned']} dead claims, expected {abandoned}")
    return bad


def check_space(records, start, stats):
    """Space accounting: tail advances by exactly the records' sizes plus the
    padding their wraps need.  Replays the claims in delivery order (the
    ring's order) from start, padding a record only when it does not fit
    before the end of the data area, or when a frame starts the next lap
    though it fit (a rewind, docs/design.md), and compares each frame's
    position (read from its tag) and the final tail.  Rewinds seen must be
    no more than stats() counts, and as many unless some went unseen: a
    frame without a position (a copy) may have rewound, and where one did the
    next frame with a position resynchronises, as it does across claims
    recovered from dead producers (whose sizes nobody saw)."""
    capacity = stats["capacity"]
    if stats["frames_aborted"]:
        return []                   # aborted records are unseen padding; the lab never aborts
    bad = Listing()
    pos, recovered, rewinds, blind, unseen = start, 0, 0, False, 0
    for k, (_, _, length, _, at, seen_recovered) in enumerate(records):
        need = layout.record_size(length)
        room = capacity - (pos % capacity)
        if at != NO_POS and seen_recovered != recovered:
            pass                        # claims nobody saw lie before it: it resynchronises
        elif room < need:
            pos += room
        elif at == (pos + room) & U64 and room < capacity:
            rewinds += 1
            pos += room
        if at == NO_POS:
            blind = True
        else:
            if seen_recovered != recovered:
                recovered = seen_recovered
            elif at != pos & U64 and blind:
                unseen += 1             # a copy before it rewound (and the wraps after it moved)
            elif at != pos & U64:
                bad.add(f"space: frame #{k} ({length} bytes) lies at {at:#x}, but the records "
                        f"before it and the padding their wraps need end at {pos & U64:#x}")
            pos, blind = at, False
        pos = (pos + need) & U64
    counted = stats["frames_rewound"]
    if rewinds > counted or (rewinds < counted and not stats["frames_abandoned"] and not unseen
                             and not blind):
        bad.add(f"space: {rewinds} frame(s) start a lap though they fit before its end, "
                f"but producers rewound {counted} time(s)")
    if stats["frames_abandoned"] == recovered and rewinds == counted and stats["tail"] != pos:
        bad.add(f"space: tail is {stats['tail']:#x}, but the records and the padding their "
                f"wraps need end at {pos:#x}")
    return bad.lines()


class Listing:
    """Violations of one check: the first LISTED, then how many more."""

    def __init__(self):
        self.items, self.more = [], 0

    def add(self, line):
        if len(self.items) < LISTED:
            self.items.append(line)
        else:
            self.more += 1

    def lines(self):
        return self.items + ([f"... and {self.more} more"] if self.more else [])

"""The invariants every lab run must keep, checked after the run from what
the consumer recorded, what each producer reported, and the ring's counters."""
from dataclasses import dataclass

from shmring.testing.frames import expected_crc, split_type

# A producer killed at one of these holds a claim the consumer must recover.
CLAIM_POINTS = {"claimed", "busy", "payload", "commit"}


@dataclass
class Outcome:
    """How one producer ended."""
    sent: int                       # frames it reported as sent
    killed_at: str = None           # pause point name, "free" (soak) or None
    status: int = 0                 # exit status
    refused: bool = False           # a send raised Sealed (it sent nothing more)


def check(records, length_of, outcomes, stats, abandoned=None, saw_seal=False):
    """Violations, as readable strings.  records: (type, length, crc) in
    delivery order; length_of(producer, seq); outcomes: producer -> Outcome;
    abandoned: the number of claims that must have been recovered, or None
    when it is not known exactly (free-running kills); saw_seal: whether the
    consumer's iteration ended at the seal.

    A seal races claims: each claim is delivered (its send returned and
    counts in sent) or refused (that send raised Sealed), never lost or
    stuck, and a refusal needs a sealed ring."""
    bad = []
    seen = {i: [] for i in outcomes}
    nbytes = 0
    for k, (type, length, crc) in enumerate(records):
        ident = split_type(type)
        if ident is None or ident[0] not in outcomes:
            bad.append(f"frame #{k}: type {type:#x} is not a lab frame (stale or zeroed memory?)")
            continue
        i, seq = ident
        want = length_of(i, seq)
        if length != want or crc != expected_crc(i, seq, want):
            bad.append(f"torn frame: producer {i} seq {seq}: {length} bytes crc {crc:#x}, "
                       f"want {want} bytes crc {expected_crc(i, seq, want):#x}")
        seen[i].append(seq)
        nbytes += length
    for i, out in outcomes.items():
        got = seen[i]
        if out.killed_at is None and out.status != 0:
            bad.append(f"producer {i} exited with status {out.status}")
        if got != sorted(set(got)):
            bad.append(f"producer {i}: order or duplicates broken: {got[:20]}")
        if got != list(range(len(got))):
            bad.append(f"producer {i}: delivered {got[:20]}, not a prefix of its frames")
        if out.killed_at is None:
            want = out.sent
        elif out.killed_at in ("committed", "data_ring", "free"):
            want = (out.sent, out.sent + 1)     # killed after commit, before reporting it
        else:
            want = out.sent
        if len(got) not in (want if isinstance(want, tuple) else (want,)):
            bad.append(f"producer {i} ({'killed at ' + out.killed_at if out.killed_at else 'survived'}): "
                       f"sent {out.sent}, delivered {len(got)}")
        if out.refused and not stats["sealed"]:
            bad.append(f"producer {i} was refused (Sealed) by a ring that is not sealed")
    if stats["sealed"] != saw_seal:
        bad.append(f"the ring is {'' if stats['sealed'] else 'not '}sealed, but the consumer "
                   f"{'did not see' if stats['sealed'] else 'saw'} the end of the stream")
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

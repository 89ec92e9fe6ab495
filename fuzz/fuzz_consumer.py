"""atheris fuzz target: hostile bytes in a live ring's shared memory must
never crash or hang the consumer (see docs/operations.md, "Fuzzing").

    pip install atheris
    python fuzz/fuzz_consumer.py -timeout=20 -runs=20000 [corpus_dir]

(with shmring importable: installed, or PYTHONPATH=. after an in-place build).
Each input becomes one example for shmring.testing.scribble: which records the ring
holds, which are received or released, and a list of writes into the header,
the producer slots, record headers (at real or arbitrary positions) or raw
bytes.  libFuzzer reports a crash (SIGSEGV/SIGBUS in the consumer), and
-timeout reports a hang.  A Python exception other than Empty, Full,
RingCorrupted, IncompatibleRing or ConsumerExists is also a finding.
"""
import sys

import atheris

with atheris.instrument_imports():
    from shmring.testing import scribble

VALUE_KINDS = ("lit", "lit_any", "tag", "pos", "cap", "code")
POS_BASES = ("head", "tail", "rec")


def value(fdp):
    kind = VALUE_KINDS[fdp.ConsumeIntInRange(0, len(VALUE_KINDS) - 1)]
    if kind == "lit":
        return ["lit", scribble.LITERALS[fdp.ConsumeIntInRange(0, len(scribble.LITERALS) - 1)]]
    if kind == "lit_any":
        return ["lit", fdp.ConsumeInt(8) & ((1 << 64) - 1)]
    if kind == "tag":
        return ["tag", fdp.ConsumeIntInRange(-3, 3),
                scribble.STATES[fdp.ConsumeIntInRange(0, len(scribble.STATES) - 1)]]
    if kind == "pos":
        return ["pos", POS_BASES[fdp.ConsumeIntInRange(0, 2)], fdp.ConsumeIntInRange(-130, 130)]
    if kind == "cap":
        return ["cap", fdp.ConsumeIntInRange(-130, 130), fdp.ConsumeIntInRange(0, 1)]
    return ["code", fdp.ConsumeIntInRange(0, len(scribble.DTYPE_CODES) - 1)]


def pick(fdp, names):
    names = sorted(names)
    return names[fdp.ConsumeIntInRange(0, len(names) - 1)]


def example(data):
    fdp = atheris.FuzzedDataProvider(data)
    ex = {
        "start": scribble.STARTS[fdp.ConsumeIntInRange(0, len(scribble.STARTS) - 1)],
        "frames": [[("bytes", "array")[fdp.ConsumeIntInRange(0, 1)], fdp.ConsumeIntInRange(0, 1500)]
                   for _ in range(fdp.ConsumeIntInRange(0, 8))],
        "receive": fdp.ConsumeIntInRange(0, 4),
        "release": [fdp.ConsumeIntInRange(0, 3) for _ in range(fdp.ConsumeIntInRange(0, 3))],
        "reserve": fdp.ConsumeIntInRange(0, 1000) if fdp.ConsumeBool() else None,
        "reopen": fdp.ConsumeBool(),
        "produce": fdp.ConsumeBool(),
        "mutations": [],
    }
    for _ in range(fdp.ConsumeIntInRange(1, 6)):
        kind = fdp.ConsumeIntInRange(0, 4)
        if kind == 0:
            ex["mutations"].append(["bytes", fdp.ConsumeIntInRange(0, 1 << 16),
                                    list(fdp.ConsumeBytes(fdp.ConsumeIntInRange(1, 16)))])
        elif kind == 1:
            ex["mutations"].append(["field", "header", pick(fdp, scribble.HEADER_FIELDS),
                                    value(fdp)])
        elif kind == 2:
            ex["mutations"].append(["field", "slot", pick(fdp, scribble.SLOT_FIELDS), value(fdp),
                                    fdp.ConsumeIntInRange(0, 3)])
        elif kind == 3:
            ex["mutations"].append(["field", "record", pick(fdp, scribble.RECORD_FIELDS),
                                    value(fdp), fdp.ConsumeIntInRange(0, 20)])
        else:
            ex["mutations"].append(["at", value(fdp), pick(fdp, scribble.RECORD_FIELDS),
                                    value(fdp)])
    return ex


def TestOneInput(data):
    scribble.run_example(example(data))


if __name__ == "__main__":
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()

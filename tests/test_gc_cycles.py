"""Producers, reservations, consumers and frames collected by the cyclic
garbage collector: their __dealloc__ writes into the mapping, which must
still be there (a reference cycle through an exception's traceback is
enough to put one in a cycle)."""
import subprocess
import sys

import pytest

SCRIPT = """
import gc, sys, shmring
ring = shmring.Ring.create(sys.argv[2], 1 << 16)
ring.unlink()
kind = sys.argv[1]
if kind == "producer":
    obj = ring.producer()
elif kind == "reservation":
    obj = ring.producer().reserve(10)
elif kind == "consumer":
    obj = ring.consumer()
else:
    ring.producer().send(b"x")
    obj = ring.consumer().recv()
cycle = [obj, ring]
cycle.append(cycle)
del obj, ring, cycle
gc.collect()
print("collected")
"""


@pytest.mark.parametrize("kind", ["producer", "reservation", "consumer", "frame"])
def test_collected_in_a_cycle(kind, name):
    result = subprocess.run([sys.executable, "-c", SCRIPT, kind, name], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout == "collected\n"

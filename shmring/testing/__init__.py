"""What the tests (tests/), the lab (stress/), the fuzzer (fuzz/) and the
benchmark (shmring.bench) share.  No pytest here: the benchmark ships in the
package and uses it too.

- processes: starting processes that die with their parent (PR_SET_PDEATHSIG),
  a line-protocol child, reaping with deadlines, waiting on a condition;
- rings: unique ring names that are always removed, scratch segment
  directories, a raw mapping of a segment's bytes;
- frames: the self-checking frame codec (tag, producer, sequence, CRC);
- build: an outside extension built with `cimport shmring`, and a scratch
  copy of the source tree built with chosen switches;
- scribble: hostile writes into a live ring's shared memory, then drive its
  consumer (tests/test_hostile.py and fuzz/fuzz_consumer.py).
"""

"""Objects for the queue tests, and the bodies of their child processes
(importable under spawn).  An object follows from (producer, seq), so the
consumer recomputes what it must have received and checks equality and
order per producer."""
import gc
import time

import numpy as np
import pytest

from shmring.testing.processes import die_with_parent

DTYPES = ["u1", "<i2", ">i4", "<f4", "<f8", "<c16", "?", "<M8[ms]", "S3"]


@pytest.fixture(autouse=True)
def collect_queues():
    """(Imported by the queue tests.)  Queues caught in reference cycles (an
    exception's traceback) go after each test: their creator's finalizer
    removes the segment, which a test worker that exits without running
    atexit would leave behind."""
    yield
    gc.collect()


class Point:
    """An object with its own __reduce__."""

    def __init__(self, x, y):
        self.x, self.y = x, y

    def __reduce__(self):
        return Point, (self.x, self.y)

    def __eq__(self, other):
        return type(other) is Point and (self.x, self.y) == (other.x, other.y)


class Unpicklable:
    def __reduce__(self):
        raise TypeError("Unpicklable refuses to pickle")


def _array(rng, dtype, shape):
    dt = np.dtype(dtype)
    raw = rng.integers(0, 256, int(np.prod(shape, dtype=np.int64)) * dt.itemsize, dtype=np.uint8)
    return raw.view(dt).reshape(shape) if raw.size else np.empty(shape, dt)


def payload(producer, seq, big=20_000):
    """A nested dict of arrays of several dtypes and layouts, 0-d and empty
    arrays, bytes, bytearray and an object with its own __reduce__.  Every
    value follows from (producer, seq)."""
    rng = np.random.default_rng(producer * 1_000_003 + seq)
    dtype = DTYPES[seq % len(DTYPES)]
    n = int(rng.integers(1, big))
    base = _array(rng, dtype, (8, max(1, n // 8)))
    return {
        "who": (producer, seq),
        "arrays": {
            "c": _array(rng, dtype, (n,)),
            "strided": base[:, ::3],            # not contiguous
            "transposed": base.T,               # F-contiguous
            "fortran": np.asfortranarray(_array(rng, "<f8", (5, 7))),
            "zero_d": np.array(rng.random()),
            "empty": np.empty((0, 4), "<i8"),
            "read_only": np.frombuffer(rng.bytes(48), "<u4"),
        },
        "bytes": rng.bytes(int(rng.integers(0, 100))),
        "big_bytes": rng.bytes(70_000 + seq % 7),    # 64 KiB and more: handed over by reference
        "bytearray": bytearray(rng.bytes(int(rng.integers(0, 70_000)))),
        "point": Point(seq, [producer, {"nested": base[0, :2].copy()}]),
        "none": None,
        "float": float(seq) / 3,
    }


def assert_same(got, want, path="obj"):
    """Deep equality that also compares dtypes and shapes."""
    assert type(got) is type(want), f"{path}: {type(got)} != {type(want)}"
    if isinstance(want, np.ndarray):
        assert got.dtype == want.dtype and got.shape == want.shape, \
            f"{path}: {got.dtype}{got.shape} != {want.dtype}{want.shape}"
        assert got.tobytes() == want.tobytes(), f"{path}: values differ"   # NaNs too
    elif isinstance(want, dict):
        assert got.keys() == want.keys(), f"{path}: keys {got.keys()} != {want.keys()}"
        for k in want:
            assert_same(got[k], want[k], f"{path}[{k!r}]")
    elif isinstance(want, (list, tuple)):
        assert len(got) == len(want), f"{path}: length"
        for i, (g, w) in enumerate(zip(got, want)):
            assert_same(g, w, f"{path}[{i}]")
    elif isinstance(want, Point):
        assert_same((got.x, got.y), (want.x, want.y), f"{path}.point")
    else:
        assert got == want, f"{path}: {got!r} != {want!r}"


def produce(q, producer, count, big=20_000):
    """Child body: put count payloads."""
    die_with_parent()
    for seq in range(count):
        q.put(payload(producer, seq, big), timeout=60)


def put_one(q, obj):
    die_with_parent()
    q.put(obj, timeout=30)


def put_values(q, values):
    die_with_parent()
    for v in values:
        q.put(v, timeout=30)


def try_get(q, out):
    """Child body: one get; report what happened."""
    die_with_parent()
    try:
        out.put(("got", q.get(timeout=30)))
    except Exception as e:              # noqa: BLE001 - reported to the test
        out.put((type(e).__name__, str(e)))


def hold_zero_copy(q, defaults, held, ready):
    """Child body: get `defaults` objects (released), then `held` zero-copy
    ones that stay alive; say so and wait to be killed."""
    die_with_parent()
    for _ in range(defaults):
        q.get(timeout=30)
    keep = [q.get(timeout=30, zero_copy=True) for _ in range(held)]
    ready.set()
    time.sleep(60)                      # holding keep, until the test kills us
    return keep


def create_and_wait(name, ready, path_out):
    """Child body: create a Queue (it is the creator), report, wait to be killed."""
    import shmring
    die_with_parent()
    q = shmring.Queue(3, name=name)
    q.put("left behind")
    path_out.put(q._ring.path)
    ready.set()
    time.sleep(60)                      # until the test kills us


_pool_queue = None


def pool_init(q):
    global _pool_queue
    die_with_parent()
    _pool_queue = q


def pool_task(i):
    _pool_queue.put(("pool", i), timeout=30)
    return i

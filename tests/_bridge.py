"""Helpers for the bridge tests: `shmring bridge` processes that die with
the test and whose log lines can be waited for, producers of self-checking
frames (bytes and arrays), and a consumer that checks them."""
import contextlib
import multiprocessing
import re
import signal
import struct
import subprocess
import sys
import threading
import time

import numpy as np

from shmring import ConsumerGone
from shmring.testing.frames import frame_type, payload, pseudo_length, split_type
from shmring.testing.processes import die_with_parent, popen

fork = multiprocessing.get_context("fork")
DTYPES = ["<f4", "|u1", "<i8", ">i2", "<c8", "|b1", "<M8[ms]", "|S3"]
# The wire header as docs/bridge.md lays it out, packed here rather than by
# shmring.bridge.wire, so that a fault in its encoder cannot hide one in its decoder:
# version kind ndim type producer stream seq length dtype shape[8]
HEADER = struct.Struct("<BBBIIQQQ8s8I")
DATA, END, END_ACK, RAW = 1, 2, 3, 0xFF
# dtype codes a ring refuses in a record header, so a receiver must too
REFUSED_DTYPES = [b"|O8", b"<U0", b"|V0", b"|S0", b"xyz", b"<f8,<i4", b"<M8[xx]", b"<f3",
                  b"\xff\xfe", b"f8", b"=f8", b"<f8\x00x", b"|V8\x00\x00\x00\x01"]


def header(kind=DATA, ndim=RAW, type=0, producer=0, stream=0, seq=0, length=0, dtype=b"",
           shape=(), version=1):
    return HEADER.pack(version, kind, ndim, type, producer, stream, seq, length, dtype,
                       *shape, *[0] * (8 - len(shape)))


class Proc:
    """A process running argv, its output (stdout and stderr, where the
    bridge logs) read into `lines` as it comes."""

    def __init__(self, argv):
        self.proc = popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True)
        self.lines = []
        self.cond = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            with self.cond:
                self.lines.append(line.rstrip("\n"))
                self.cond.notify_all()
        with self.cond:
            self.lines.append(None)     # EOF
            self.cond.notify_all()

    def wait_for(self, pattern, timeout=20.0, start=0, until=None):
        """The first match of pattern in a log line from index start on (for
        which until(match) holds, if given); fails the test after timeout
        seconds or at EOF."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        i = start
        with self.cond:
            while True:
                while i < len(self.lines):
                    line = self.lines[i]
                    if line is None:
                        raise AssertionError(f"exited ({self.proc.wait()}) before a line "
                                             f"matching {pattern!r}:\n{self.log()}")
                    m = rx.search(line)
                    if m and (until is None or until(m)):
                        return m
                    i += 1
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no line matching {pattern!r} in {timeout} s:\n"
                                         f"{self.log()}")
                self.cond.wait(left)

    def mark(self):
        """The index of the next line, for wait_for(start=...)."""
        with self.cond:
            return len(self.lines)

    def log(self):
        return "\n".join(line for line in self.lines if line is not None)

    def signal(self, sig):
        self.proc.send_signal(sig)

    def wait(self, timeout=20.0):
        """The exit status; fails the test if it does not exit in time."""
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise AssertionError(f"still running after {timeout} s:\n{self.log()}") from None

    def kill(self):
        self.proc.kill()
        self.proc.wait(10)


@contextlib.contextmanager
def bridges():
    """start(*args) runs `python -m shmring bridge *args`, start(argv=[...])
    any command, as a Proc; every one is killed on the way out."""
    made = []

    def start(*args, argv=None):
        made.append(Proc(argv or [sys.executable, "-m", "shmring", "bridge", *args]))
        return made[-1]
    try:
        yield start
    finally:
        for b in made:
            if b.proc.poll() is None:
                b.kill()


def receiver(start, ring, *args, endpoint="127.0.0.1:0"):
    """Start `bridge recv`; returns (process, the endpoint it bound)."""
    r = start("recv", endpoint, ring, *args)
    return r, r.wait_for(r"listening on (\S+)").group(1)


def is_array(seq):
    return seq % 4 == 3


def array_for(producer, seq):
    dt = np.dtype(DTYPES[seq % len(DTYPES)])
    shape = (seq % 5 + 1, 3) if seq % 2 else (seq % 7 + 1,)
    values = (np.arange(int(np.prod(shape))) * 31 + producer * 7 + seq) % 100
    return values.astype(dt).reshape(shape)


def produce(ring, producer, count, max_frame, size=None, timeout=60):
    """Child process body: count frames from producer, each checkable by
    check(): every fourth one an array, the others self-checking bytes
    (random sizes up to max_frame, or all of `size` bytes).  When the
    consumer (a sender) is killed, it waits for the next one."""
    die_with_parent()
    deadline = time.monotonic() + timeout
    with ring.producer() as p:
        for seq in range(count):
            while True:
                try:
                    send_one(p, producer, seq, max_frame, size, deadline - time.monotonic())
                    break
                except ConsumerGone:
                    assert time.monotonic() < deadline, "no new consumer came"
                    time.sleep(0.01)    # until a new consumer takes the dead one's place
    ring.close()


def send_one(p, producer, seq, max_frame, size, timeout):
    if is_array(seq) and size is None:
        p.send_array(array_for(producer, seq), type=frame_type(producer, seq), timeout=timeout)
    else:
        n = pseudo_length(producer, seq, max_frame) if size is None else size
        p.send(payload(producer, seq, n), type=frame_type(producer, seq), timeout=timeout)


def start_producers(ring, count, producers=1, first=0, size=None):
    procs = [fork.Process(target=produce, args=(ring, i, count, ring.max_frame, size),
                          daemon=True) for i in range(first, first + producers)]
    for p in procs:
        p.start()
    return procs


def check(frame, max_frame, size=None):
    """(producer, seq) of a frame made by produce(), after checking its
    type, length, bytes, and for arrays dtype and shape."""
    ident = split_type(frame.type)
    assert ident is not None, f"type {frame.type:#x} is not a test frame's"
    producer, seq = ident
    if is_array(seq) and size is None:
        want = array_for(producer, seq)
        got = frame.array()
        assert frame.layout == (want.dtype, want.shape), (producer, seq, frame.layout)
        assert got.dtype == want.dtype and got.shape == want.shape
        assert np.array_equal(got, want), f"producer {producer} seq {seq}: wrong array"
        del got
        return producer, seq
    n = pseudo_length(producer, seq, max_frame) if size is None else size
    assert frame.layout is None, (producer, seq, frame.layout)
    assert len(frame) == n, f"producer {producer} seq {seq}: {len(frame)} bytes, expected {n}"
    assert bytes(frame) == payload(producer, seq, n), f"producer {producer} seq {seq}: torn"
    return producer, seq


def receive(consumer, count, max_frame, size=None, timeout=30.0):
    """(producer, seq) of the next count frames, each checked."""
    got = []
    deadline = time.monotonic() + timeout
    while len(got) < count:
        with consumer.recv(timeout=max(0.0, deadline - time.monotonic())) as f:
            got.append(check(f, max_frame, size))
    return got


def receive_while(consumer, busy, max_frame, size=None, timeout=30.0):
    """(producer, seq) of the frames that come while busy() holds, then of
    those left in the ring."""
    got = []
    deadline = time.monotonic() + timeout
    while busy():
        assert time.monotonic() < deadline, f"still busy after {timeout} s"
        try:
            f = consumer.recv(timeout=0.1)
        except TimeoutError:
            continue
        with f:
            got.append(check(f, max_frame, size))
    return got + drain(consumer, max_frame, size)


def drain(consumer, max_frame, size=None):
    """(producer, seq) of the frames already in the ring."""
    got = []
    while True:
        try:
            f = consumer.recv(timeout=0)
        except TimeoutError:
            return got
        with f:
            got.append(check(f, max_frame, size))


def in_order(got):
    """{producer: [seq, ...]} of got, in the order received."""
    out = {}
    for producer, seq in got:
        out.setdefault(producer, []).append(seq)
    return out


def join(procs, timeout=30.0):
    for p in procs:
        p.join(timeout)
        assert p.exitcode == 0, f"producer exited with {p.exitcode}"


def rss(pid):
    """Resident memory of pid, bytes."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for {pid}")


def stop(proc, sig=signal.SIGTERM, timeout=20.0):
    proc.signal(sig)
    return proc.wait(timeout)

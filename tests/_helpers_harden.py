"""Helpers for the hardening tests: unique ring names that are always
removed, child processes that die with the test (PR_SET_PDEATHSIG) and talk
over a line protocol with deadlines, raw access to a segment's bytes, and
waiting for a condition with a deadline (never a bare sleep)."""
import contextlib
import ctypes
import mmap
import os
import select
import signal
import struct
import subprocess
import sys
import textwrap
import time
import uuid

from shmring import segments as L
from shmring._ring import doorbells

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(None, use_errno=True)


def die_with_parent():
    """preexec_fn: SIGKILL this child when the test process dies."""
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def unique_name(tag="h"):
    return f"harden-{tag}-{uuid.uuid4().hex[:12]}"


def _remove(path):
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


@contextlib.contextmanager
def ring_name(tag="h"):
    """A unique ring name; its segment and doorbells are removed afterwards,
    even on failure."""
    name = unique_name(tag)
    try:
        yield name
    finally:
        remove_ring_files(name)


def remove_ring_files(name):
    """Remove ring name's segment and every doorbell of it (a child killed
    while it awaited leaves its doorbell behind)."""
    _remove(os.path.join(L.segment_dir(), L.PREFIX + name))
    for bell in doorbells(L.segment_dir(), name):
        _remove(bell["path"])


def wait_until(pred, timeout, what="condition", interval=0.002):
    """Poll pred() until it is true; fail the test after timeout seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


CHILD_PRELUDE = """
import os, sys, signal, time
sys.path.insert(0, {root!r})
import shmring
from shmring import segments as L
from shmring._ring import doorbells
def say(*a):
    print(*a, flush=True)
def hear():
    line = sys.stdin.readline()
    if not line:
        os._exit(3)             # the test went away
    return line.strip()
"""


# A consumer (and a producer with a doorbell) that awaits a frame that never
# comes; it says "armed" once its doorbell is armed.  NAME: the ring's name.
AWAIT_A_FRAME = """
import asyncio
ring = shmring.Ring.attach(NAME)
c = ring.consumer(stall_timeout=60)
p = ring.producer()
p.fileno()
async def main():
    task = asyncio.ensure_future(c.arecv())
    while ring.stats()["consumer_waits"] == 0:
        await asyncio.sleep(0.001)
    say("armed")
    await task
asyncio.run(main())
"""


def run_cli(segdir, *args):
    """`python -m shmring ARGS` with SHMRING_DIR=segdir."""
    env = dict(os.environ, SHMRING_DIR=segdir, PYTHONPATH=ROOT)
    return subprocess.run([sys.executable, "-m", "shmring", *args], env=env,
                          capture_output=True, text=True, timeout=30)


class ChildTimeout(AssertionError):
    """The child said nothing before the deadline (it was killed)."""


class Child:
    """A Python child process running code, with a line protocol: the child
    calls say(...) and hear(); the test calls expect() and tell()."""

    def __init__(self, code, env=None, preexec=None):
        src = CHILD_PRELUDE.format(root=ROOT) + textwrap.dedent(code)
        full_env = dict(os.environ)
        full_env["PYTHONPATH"] = ROOT
        full_env.update(env or {})

        def pre():
            die_with_parent()
            if preexec:
                preexec()
        self.proc = subprocess.Popen(
            [sys.executable, "-c", src], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, env=full_env, preexec_fn=pre)
        self.pid = self.proc.pid
        self._buf = b""

    def expect(self, prefix, timeout=10.0):
        """The next line, which must start with prefix; fails the test on
        EOF, a different line or the deadline."""
        line = self.readline(timeout)
        if not line.startswith(prefix):
            raise AssertionError(f"child said {line!r}, expected {prefix!r}\n{self.stderr()}")
        return line

    def readline(self, timeout=10.0):
        deadline = time.monotonic() + timeout
        fd = self.proc.stdout.fileno()
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise ChildTimeout(f"child {self.pid} said nothing for {timeout}s\n"
                                     f"{self.stderr(kill=True)}")
            r, _, _ = select.select([fd], [], [], left)
            if r:
                chunk = os.read(fd, 65536)
                if not chunk:
                    raise AssertionError(
                        f"child {self.pid} exited ({self.proc.wait()}) before a line\n"
                        f"{self.stderr()}")
                self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        return line.decode()

    def tell(self, line="go"):
        self.proc.stdin.write(line.encode() + b"\n")
        self.proc.stdin.flush()

    def signal(self, sig):
        os.kill(self.pid, sig)

    def kill(self):
        """SIGKILL and reap."""
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)
        return self.proc.wait(10)

    def wait(self, timeout=10.0):
        return self.proc.wait(timeout)

    def stderr(self, kill=False):
        if kill:
            self.kill()
        if self.proc.poll() is None:
            return "(child still running)"
        return "child stderr:\n" + self.proc.stderr.read().decode(errors="replace")

    def close(self):
        if self.proc.poll() is None:
            self.kill()
        for f in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            with contextlib.suppress(Exception):
                f.close()


@contextlib.contextmanager
def children():
    """Collects Child objects and kills every one of them on the way out."""
    made = []

    def spawn(code, **kw):
        c = Child(code, **kw)
        made.append(c)
        return c
    try:
        yield spawn
    finally:
        for c in made:
            c.close()


class Raw:
    """The segment's bytes through a second, independent mapping, for
    reading counters and for playing a hostile or half-finished process."""

    def __init__(self, path):
        fd = os.open(path, os.O_RDWR)
        try:
            self.m = mmap.mmap(fd, os.fstat(fd).st_size)
        finally:
            os.close(fd)
        self.data_offset = self.u32(L.OFF_DATA_OFFSET)
        self.capacity = self.u64(L.OFF_CAPACITY)
        self.secret = self.u64(L.OFF_SECRET) & ~63

    def u64(self, off):
        return struct.unpack_from("=Q", self.m, off)[0]

    def u32(self, off):
        return struct.unpack_from("=I", self.m, off)[0]

    def put64(self, off, value):
        struct.pack_into("=Q", self.m, off, value & 0xFFFFFFFFFFFFFFFF)

    def put32(self, off, value):
        struct.pack_into("=I", self.m, off, value & 0xFFFFFFFF)

    def slot(self, i, field=0):
        return L.HEADER_SIZE + i * L.SLOT_SIZE + field

    def record(self, pos, field=0):
        """Offset in the file of a field of the record header at pos."""
        return self.data_offset + (pos & (self.capacity - 1)) + field

    def tag(self, pos):
        return (pos ^ self.secret) & ~63

    def slot_of_pid(self, pid, nslots=128):
        for i in range(nslots):
            if L.owner_pid(self.u64(self.slot(i))) == pid:
                return i
        raise AssertionError(f"pid {pid} owns no producer slot")

    def close(self):
        with contextlib.suppress(BufferError):
            self.m.close()


def record_size(length):
    return (length + L.RECORD_HEADER + 63) & ~63

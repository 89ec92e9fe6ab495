"""Starting processes that die with their parent.

Every process the tests, the lab or the benchmark start is SIGKILLed by the
kernel when the process that started it dies (PR_SET_PDEATHSIG), so a failed,
interrupted or killed run leaves nothing behind: no child asleep in a futex,
no user keeping a ring alive.  The kernel takes "parent" to be the thread
that started the child: a child started from a thread dies when that thread
ends.  Every wait here has a deadline."""
import contextlib
import ctypes
import functools
import multiprocessing
import os
import select
import signal
import subprocess
import sys
import textwrap
import time
import traceback

PR_SET_PDEATHSIG, PR_GET_PDEATHSIG = 1, 2
_libc = ctypes.CDLL(None, use_errno=True)
_libc.prctl.argtypes = [ctypes.c_int] + [ctypes.c_ulong] * 4      # its variadic arguments are longs


def die_with_parent(parent=None):
    """Have the kernel SIGKILL this process when its parent dies.  parent: the
    pid that started it, when known, so that a parent which died before this
    call is noticed too (the process then exits at once)."""
    if _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if parent is not None and os.getppid() != parent:
        os._exit(1)


def dies_with_parent():
    """Whether die_with_parent() is in force in this process."""
    sig = ctypes.c_int(0)
    _libc.prctl(PR_GET_PDEATHSIG, ctypes.addressof(sig), 0, 0, 0)
    return sig.value == signal.SIGKILL


def python_path(*extra):
    """PYTHONPATH for a child Python that must import this same shmring (an
    in-place build or the installed package), then the extra directories."""
    here = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    return os.pathsep.join([here, *extra])


def popen(cmd, **kwargs):
    """subprocess.Popen whose process dies with this one."""
    return subprocess.Popen(cmd, preexec_fn=functools.partial(die_with_parent, os.getpid()),
                            **kwargs)


def run(cmd, timeout, **kwargs):
    """subprocess.run whose process dies with this one (and at the timeout)."""
    return subprocess.run(cmd, preexec_fn=functools.partial(die_with_parent, os.getpid()),
                          timeout=timeout, **kwargs)


def _run_dying_with_parent(parent, target, args, kwargs):
    die_with_parent(parent)
    target(*args, **kwargs)


def start_process(target, *args, context="fork", daemon=None, **kwargs):
    """A started multiprocessing.Process running target(*args, **kwargs) that
    dies with this process.  context: "fork" or "spawn"."""
    ctx = multiprocessing.get_context(context)
    proc = ctx.Process(target=_run_dying_with_parent, daemon=daemon,
                       args=(os.getpid(), target, args, kwargs))
    proc.start()
    return proc


def fork(body, *args):
    """Fork a child that runs body(*args), then exits 0, or 1 on an exception
    (its traceback on stderr).  Returns the child's pid."""
    parent = os.getpid()
    sys.stdout.flush()                  # or the child's exit prints the parent's buffered lines again
    sys.stderr.flush()
    pid = os.fork()
    if pid:
        return pid
    code = 1
    try:
        die_with_parent(parent)
        body(*args)
        code = 0
    except BaseException:  # noqa: BLE001 - reported through the exit status
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


_reaped: dict[int, int] = {}        # pid -> exit status, so reaping twice is harmless


def reap(pid, deadline):
    """Exit status of pid (negative: killed by that signal), or None if it is
    still running at the deadline (a time.monotonic() value; 0: do not wait).
    A child reaped before answers from the record, unless its pid belongs to
    a child again: pids are reused, and a long run forks thousands."""
    while True:
        try:
            done, status = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            if pid in _reaped:
                return _reaped[pid]
            raise
        if done:
            _reaped[pid] = os.waitstatus_to_exitcode(status)
            return _reaped[pid]
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.002)


def kill_all(pids):
    """SIGKILL and reap every pid still running (cleanup after a failure).
    A pid that is no longer this process's child is left alone: it was
    reaped, and another process may have its number by now."""
    running = []
    for pid in pids:
        try:
            done, status = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            continue
        if done:
            _reaped[pid] = os.waitstatus_to_exitcode(status)
            continue
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        running.append(pid)
    for pid in running:
        with contextlib.suppress(ChildProcessError):
            _reaped[pid] = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


def wait_until(pred, timeout, what="condition", interval=0.002):
    """Poll pred() until it is true and return its value; AssertionError
    after timeout seconds (never a bare sleep standing in for a condition)."""
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
# Ctrl-C as a user's program has it: a shell without job control (a CI
# script's background job) starts its children with SIGINT ignored.
signal.signal(signal.SIGINT, signal.default_int_handler)
import shmring
from shmring import layout
def say(*a):
    print(*a, flush=True)
def hear():
    line = sys.stdin.readline()
    if not line:
        os._exit(3)             # the test went away
    return line.strip()
"""


class ChildTimeout(AssertionError):
    """The child said nothing before the deadline (it was killed)."""


class Child:
    """A Python child process running code, with a line protocol: the child
    calls say(...) and hear(); the parent calls expect() and tell()."""

    def __init__(self, code, env=None):
        full_env = dict(os.environ, PYTHONPATH=python_path())
        full_env.update(env or {})
        self.proc = popen([sys.executable, "-c", CHILD_PRELUDE + textwrap.dedent(code)],
                          stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, env=full_env)
        self.pid = self.proc.pid
        self._buf = b""

    def expect(self, prefix, timeout=10.0):
        """The next line, which must start with prefix; AssertionError on
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
    """Yields spawn(code, **kw) -> Child, and kills every child on the way out."""
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

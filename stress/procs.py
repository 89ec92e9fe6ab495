"""Child processes and scratch space for the lab.

Every child dies with its parent (PR_SET_PDEATHSIG), every wait has a
deadline, and every segment lives in a scratch directory that is removed."""
import contextlib
import ctypes
import os
import shutil
import signal
import sys
import tempfile
import time
import traceback
import uuid

PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(None, use_errno=True)


def unique_name(prefix="lab"):
    return f"{prefix}-{os.getpid()}-{uuid.uuid4().hex[:10]}"


@contextlib.contextmanager
def scratch_dir():
    """A fresh directory on tmpfs for segments, made SHMRING_DIR meanwhile."""
    base = "/dev/shm" if os.path.isdir("/dev/shm") else None
    path = tempfile.mkdtemp(prefix="shmring-lab-", dir=base)
    old = os.environ.get("SHMRING_DIR")
    os.environ["SHMRING_DIR"] = path
    try:
        yield path
    finally:
        if old is None:
            os.environ.pop("SHMRING_DIR", None)
        else:
            os.environ["SHMRING_DIR"] = old
        shutil.rmtree(path, ignore_errors=True)


def spawn(body, *args):
    """Fork a child that runs body(*args) and exits 0, or 1 on an exception."""
    parent = os.getpid()
    pid = os.fork()
    if pid:
        return pid
    code = 1
    try:
        _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:          # the parent died before prctl
            os._exit(1)
        body(*args)
        code = 0
    except BaseException:  # noqa: BLE001 - reported through the exit status
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


_reaped = {}                        # pid -> exit status, so reaping twice is harmless


def reap(pid, deadline):
    """Exit status of pid (negative: killed by that signal), or None if it is
    still running at the deadline."""
    while True:
        if pid in _reaped:
            return _reaped[pid]
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            _reaped[pid] = os.waitstatus_to_exitcode(status)
            continue
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.002)


def kill_all(pids):
    """SIGKILL and reap every pid still running (cleanup after a failure)."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    for pid in pids:
        with contextlib.suppress(ChildProcessError):
            _reaped[pid] = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])

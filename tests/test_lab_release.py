"""The stress lab's pause points exist in a lab build and compile to nothing
in a release build (issue 3): the hook, its symbols and its strings are
absent from the release _core, and installing it there is refused."""
import os
import shutil
import sys

import pytest

from shmring.testing import processes
from shmring.testing.build import build_tree

# Two whole builds in the first test's setup: minutes on a busy 2-core machine.
pytestmark = pytest.mark.timeout(600)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LAB_SYMBOLS = ("shmring_lab_turn", "shmring_lab_hook")


def build(dest, lab):
    build_tree(ROOT, dest, env={"SHMRING_LAB": "1" if lab else "", "SHMRING_DEBUG": "",
                          "SHMRING_MUTANT": "", "SHMRING_CFLAGS": "", "SHMRING_LDFLAGS": ""})
    so = [f for f in os.listdir(os.path.join(dest, "shmring")) if f.startswith("_core.")
          and f.endswith(".so")]
    return os.path.join(dest, "shmring", so[0])


def symbols(so):
    return processes.run(["nm", "-a", so], timeout=60, capture_output=True, text=True,
                         check=True).stdout


def in_child(dest, code):
    return processes.run([sys.executable, "-c", code], timeout=60, cwd=dest, capture_output=True,
                         text=True, env=dict(os.environ, PYTHONPATH=dest), check=False)


@pytest.fixture(scope="module")
def builds(tmp_path_factory):
    if not shutil.which("nm"):
        pytest.skip("nm (binutils) is needed to read the symbol table")
    out = {}
    for lab in (False, True):
        dest = str(tmp_path_factory.mktemp("lab" if lab else "release"))
        out[lab] = (dest, build(dest, lab))
    return out


def test_lab_build_has_the_hook(builds):
    dest, so = builds[True]
    assert all(name in symbols(so) for name in LAB_SYMBOLS)
    proc = in_child(dest, "from shmring import _core; print(_core.lab_enabled())")
    assert proc.stdout.strip() == "True", proc.stderr


def test_release_build_compiles_pause_points_away(builds):
    dest, so = builds[False]
    table = symbols(so)
    assert not any(name in table for name in LAB_SYMBOLS)
    with open(so, "rb") as f:
        assert b"shmring_lab" not in f.read()
    proc = in_child(dest, "from shmring import _core\n"
                          "print(_core.lab_enabled())\n"
                          "try:\n    _core._lab_install(0, 0)\nexcept RuntimeError:\n"
                          "    print('refused')")
    assert proc.stdout.split() == ["False", "refused"], proc.stderr


LAB_FUTEX = """
import ctypes, mmap, time
from shmring import _core
from shmring.testing import processes
shared = mmap.mmap(-1, 4096)                # MAP_SHARED: the same words after fork
word, stop = (ctypes.addressof(ctypes.c_uint32.from_buffer(shared, off)) for off in (0, 4))
t0 = time.monotonic()
_core._lab_futex_wait(word, 1, 30)          # the word holds 0, not 1: no sleep at all
print("mismatch", time.monotonic() - t0 < 10)
t0 = time.monotonic()
_core._lab_futex_wait(word, 0, 0.3)         # nobody wakes it: sleeps to the timeout
print("timeout", time.monotonic() - t0 >= 0.25)

def waker():                                # wakes without changing the word
    while not ctypes.c_uint32.from_address(stop).value:
        _core._lab_futex_wake(word, 1)
        time.sleep(0.01)
pid = processes.fork(waker)
t0 = time.monotonic()
_core._lab_futex_wait(word, 0, 30)
print("woken", time.monotonic() - t0 < 10)
ctypes.c_uint32.from_address(stop).value = 1
print("waker", processes.reap(pid, time.monotonic() + 30))
"""


def test_lab_futex_waits_and_wakes_across_processes(builds):
    """The coordinator's futex (stress/control.py) comes from the lab build
    of _core, with the syscall number of this machine's headers; a release
    build refuses it."""
    dest, _ = builds[True]
    proc = in_child(dest, LAB_FUTEX)
    assert proc.stdout.split("\n")[:4] == ["mismatch True", "timeout True", "woken True", "waker 0"], \
        proc.stdout + proc.stderr
    dest, _ = builds[False]
    proc = in_child(dest, "from shmring import _core\n"
                          "for call in (lambda: _core._lab_futex_wait(0, 0, 0),\n"
                          "             lambda: _core._lab_futex_wake(0, 1)):\n"
                          "    try:\n        call()\n    except RuntimeError:\n"
                          "        print('refused')")
    assert proc.stdout.split() == ["refused", "refused"], proc.stderr

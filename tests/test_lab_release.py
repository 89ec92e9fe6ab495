"""The stress lab's pause points exist in a lab build and compile to nothing
in a release build (issue 3): the hook, its symbols and its strings are
absent from the release _core, and installing it there is refused."""
import os
import shutil
import sys

import pytest

from shmring.testing import processes
from shmring.testing.build import build_tree

LAB_SYMBOLS = ("shmring_lab_turn", "shmring_lab_hook")


def build(dest, lab):
    build_tree(dest, env={"SHMRING_LAB": "1" if lab else "", "SHMRING_DEBUG": "",
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

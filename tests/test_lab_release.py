"""The stress lab's pause points exist in a lab build and compile to nothing
in a release build (issue 3): the hook, its symbols and its strings are
absent from the release _core, and installing it there is refused."""
import os
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LAB_SYMBOLS = ("shmring_lab_turn", "shmring_lab_hook")


def build(dest, lab):
    shutil.copytree(os.path.join(ROOT, "shmring"), os.path.join(dest, "shmring"),
                    ignore=shutil.ignore_patterns("__pycache__", "*.so", "*.c"))
    shutil.copy(os.path.join(ROOT, "setup.py"), dest)
    env = dict(os.environ, SHMRING_LAB="1" if lab else "", SHMRING_DEBUG="",
               SHMRING_MUTANT="", SHMRING_CFLAGS="", SHMRING_LDFLAGS="")
    proc = subprocess.run([sys.executable, "setup.py", "-q", "build_ext", "--inplace"],
                          cwd=dest, env=env, capture_output=True, text=True, timeout=600,
                          check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    so = [f for f in os.listdir(os.path.join(dest, "shmring")) if f.startswith("_core.")
          and f.endswith(".so")]
    return os.path.join(dest, "shmring", so[0])


def symbols(so):
    return subprocess.run(["nm", "-a", so], capture_output=True, text=True, check=True).stdout


def in_child(dest, code):
    return subprocess.run([sys.executable, "-c", code], cwd=dest, capture_output=True,
                          text=True, timeout=60, env=dict(os.environ, PYTHONPATH=dest), check=False)


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

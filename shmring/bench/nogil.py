"""Build _nogil.pyx against the installed shmring, the way a user's own
extension would (`cimport shmring`, include_path=[shmring.get_include()]),
and cache the result by the hash of every .pxd it depends on."""
import hashlib
import os
import pathlib
import shutil
import sys
import sysconfig
import tempfile

import shmring
from shmring.testing.build import build_extension, load_extension

HERE = pathlib.Path(__file__).parent
NAME = "_shmring_bench_nogil"


def cache_dir():
    base = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return pathlib.Path(base) / "shmring-bench"


def fingerprint():
    h = hashlib.sha256((HERE / "_nogil.pyx").read_bytes())
    pkg = pathlib.Path(shmring.__file__).parent
    for pxd in sorted(pkg.rglob("*.pxd")):
        h.update(pxd.read_bytes())
    h.update(sys.version.encode())
    return h.hexdigest()[:16]


def build(target):
    with tempfile.TemporaryDirectory() as tmp:
        built = build_extension(HERE / "_nogil.pyx", tmp, name=NAME, compile_args=["-O2"])
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(built, str(target) + ".tmp")
        os.replace(str(target) + ".tmp", target)


def load():
    """The compiled module, built now if the cache has none for this shmring."""
    suffix = sysconfig.get_config_var("EXT_SUFFIX")
    target = cache_dir() / f"{NAME}-{fingerprint()}{suffix}"
    if not target.exists():
        build(target)
    return load_extension(target, NAME)

"""Build _nogil.pyx against the installed shmring, the way a user's own
extension would (`cimport shmring`, include_path=[shmring.get_include()]),
and cache the result by the hash of every .pxd it depends on."""
import hashlib
import importlib.util
import os
import pathlib
import shutil
import sys
import sysconfig
import tempfile

import shmring

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
    from Cython.Build import cythonize
    from setuptools import Distribution, Extension
    with tempfile.TemporaryDirectory() as tmp:
        pyx = pathlib.Path(tmp) / f"{NAME}.pyx"
        shutil.copy(HERE / "_nogil.pyx", pyx)
        ext = Extension(NAME, [str(pyx)], extra_compile_args=["-O2"])
        dist = Distribution({"ext_modules": cythonize(
            [ext], include_path=[shmring.get_include()], quiet=True,
            compiler_directives={"language_level": 3})})
        cmd = dist.get_command_obj("build_ext")
        cmd.build_lib = tmp
        cmd.build_temp = os.path.join(tmp, "build")
        cmd.ensure_finalized()
        cmd.run()
        built = next(pathlib.Path(tmp).glob(f"{NAME}*.so"))
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(built, str(target) + ".tmp")
        os.replace(str(target) + ".tmp", target)


def load():
    """The compiled module, built now if the cache has none for this shmring."""
    suffix = sysconfig.get_config_var("EXT_SUFFIX")
    target = cache_dir() / f"{NAME}-{fingerprint()}{suffix}"
    if not target.exists():
        build(target)
    spec = importlib.util.spec_from_file_location(NAME, target)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {target}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module

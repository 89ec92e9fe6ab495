"""Building Cython code for the tests, the lab and the benchmark.

build_extension compiles an outside extension that does `cimport shmring`,
the way a user's own would; build_tree builds a scratch copy of the source
tree with chosen switches (a lab build, a mutant, ThreadSanitizer)."""
import contextlib
import importlib.util
import os
import pathlib
import shutil
import sys
import tempfile

from shmring.testing import processes


@contextlib.contextmanager
def _quiet():
    """Send what Cython and the compiler print (hints, warnings) to a file,
    and show it only with the error if the build fails."""
    with tempfile.TemporaryFile("w+") as log:
        sys.stdout.flush()
        sys.stderr.flush()
        saved = [os.dup(1), os.dup(2)]
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        try:
            yield
        except Exception as e:
            sys.stdout.flush()
            sys.stderr.flush()
            log.seek(0)
            raise RuntimeError(f"build failed: {e}\n{log.read()[-4000:]}") from e
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            for fd, old in zip((1, 2), saved):
                os.dup2(old, fd)
                os.close(old)


def build_extension(pyx, dest, name=None, include_path=None, compile_args=(), link_args=()):
    """Compile pyx into an extension module in the directory dest and return
    the path of the module built.  include_path: where `cimport shmring`
    finds the .pxd files (default: this shmring's, shmring.get_include()).
    RuntimeError with the compiler's output if the build fails."""
    from Cython.Build import cythonize
    from setuptools import Distribution, Extension

    import shmring
    dest = pathlib.Path(dest)
    name = name or pathlib.Path(pyx).stem
    source = dest / f"{name}.pyx"
    if pathlib.Path(pyx).resolve() != source.resolve():
        shutil.copy(pyx, source)
    ext = Extension(name, [str(source)], extra_compile_args=list(compile_args),
                    extra_link_args=list(link_args))
    with _quiet():
        dist = Distribution({"ext_modules": cythonize(
            [ext], include_path=[str(include_path or shmring.get_include())], quiet=True,
            compiler_directives={"language_level": 3})})
        cmd = dist.get_command_obj("build_ext")
        cmd.build_lib = str(dest)
        cmd.build_temp = str(dest / "build")
        cmd.ensure_finalized()
        cmd.run()
    return pathlib.Path(cmd.get_ext_fullpath(name))


def load_extension(path, name):
    """Import the extension module name from the file path."""
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def build_tree(root, dest, env=None, reuse=()):
    """Copy the package and setup.py from the source checkout root to dest
    and build the extensions there in place, with os.environ plus env
    (SHMRING_LAB, SHMRING_MUTANT, SHMRING_CFLAGS, ...).  reuse: extensions
    ("_ring") whose build in root is copied instead of rebuilt.  RuntimeError
    with the compiler's output if the build fails."""
    root = pathlib.Path(root)

    def ignore(directory, names):
        return {n for n in names if n == "__pycache__" or (
            n.endswith((".so", ".c")) and n.split(".")[0] not in reuse)}
    shutil.copytree(root / "shmring", pathlib.Path(dest) / "shmring", ignore=ignore)
    shutil.copy(root / "setup.py", dest)
    cmd = [sys.executable, "setup.py", "-q", "build_ext", "--inplace"]
    proc = processes.run(cmd, timeout=600, cwd=dest, env=dict(os.environ, **(env or {})),
                         capture_output=True, text=True, check=False)
    if proc.returncode:
        raise RuntimeError(f"build failed: {' '.join(cmd)} in {dest}\n{proc.stdout[-2000:]}"
                           f"{proc.stderr[-4000:]}")

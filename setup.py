"""Build shmring's Cython extensions.

SHMRING_DEBUG=1 compiles in C assertions and Cython's bounds checks.
SHMRING_LAB=1 also compiles in the stress lab's pause points (stress/).
SHMRING_MUTANT=name compiles a deliberately broken core (shmring/includes/
mutants.pxd); only `python -m stress.mutants` should set it, in a scratch copy.
"""
import os

from Cython.Build import cythonize
from setuptools import Extension, setup

DEBUG = os.environ.get("SHMRING_DEBUG") == "1"
LAB = os.environ.get("SHMRING_LAB") == "1"

macros = [] if DEBUG else [("NDEBUG", "1")]
if LAB:
    macros.append(("SHMRING_LAB", "1"))
MUTANT = os.environ.get("SHMRING_MUTANT", "")
if MUTANT:
    macros.append((f"SHMRING_MUTANT_{MUTANT.upper()}", "1"))
# Python's own CFLAGS carry -DNDEBUG; a debug build must undo it for assert().
cflags = ["-O0", "-g", "-UNDEBUG"] if DEBUG else ["-O2"]
cflags += os.environ.get("SHMRING_CFLAGS", "").split()
ldflags = os.environ.get("SHMRING_LDFLAGS", "").split()

extensions = [
    Extension(f"shmring.{name}", [f"shmring/{name}.pyx"], define_macros=macros,
              extra_compile_args=cflags, extra_link_args=ldflags)
    for name in ("_core", "_ring")
]

directives = {"language_level": 3}
if DEBUG:
    directives.update(boundscheck=True, wraparound=True, initializedcheck=True)

setup(ext_modules=cythonize(extensions, compiler_directives=directives))

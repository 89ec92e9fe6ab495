# Hand-written: Cython emits no stubs.  Only the Python-visible part of the
# core; keep it in the order of _core.pyx.

from typing import Final

# Pause point names (stress/) to their ids.
LAB_POINTS: Final[dict[str, int]]

def lab_enabled() -> bool: ...
def _lab_install(free_word: int, cell: int) -> None: ...

# The bit of tail that marks a sealed ring.
SEALED_BIT: Final[int]

def alive(owner: int) -> bool: ...
def pid_of(owner: int) -> int | None: ...
def streamed_copies() -> int: ...

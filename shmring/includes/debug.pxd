# C assert(): checked in a debug build (SHMRING_DEBUG=1), compiled away in a
# release build, where setup.py defines NDEBUG.  For invariants of this
# process's own state, never for shared memory (that is validated always).
cdef extern from "<assert.h>" nogil:
    void debug_assert "assert"(bint condition)

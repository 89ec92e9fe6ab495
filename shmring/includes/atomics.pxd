# GCC __atomic builtins, one Cython name per width.  Every atomic the ring
# uses enters through this file, so the memory orders are easy to audit.
from libc.stdint cimport uint32_t, uint64_t

cdef extern from * nogil:
    """
    /* A cross-process atomic must never fall back to a lock in libatomic:
       the lock would live in one process's memory, not in the segment. */
    _Static_assert(__atomic_always_lock_free(8, 0), "64-bit atomics must be lock-free");
    _Static_assert(__atomic_always_lock_free(4, 0), "32-bit atomics must be lock-free");
    #if defined(__x86_64__) || defined(__i386__)
    #define shmring_cpu_relax() __builtin_ia32_pause()
    #elif defined(__aarch64__)
    #define shmring_cpu_relax() __asm__ __volatile__("yield" ::: "memory")
    #else
    #define shmring_cpu_relax() ((void)0)
    #endif
    """
    enum:
        RELAXED "__ATOMIC_RELAXED"
        ACQUIRE "__ATOMIC_ACQUIRE"
        RELEASE "__ATOMIC_RELEASE"
        ACQ_REL "__ATOMIC_ACQ_REL"
        SEQ_CST "__ATOMIC_SEQ_CST"

    uint64_t load64 "__atomic_load_n"(uint64_t *p, int order)
    void store64 "__atomic_store_n"(uint64_t *p, uint64_t v, int order)
    bint cas64 "__atomic_compare_exchange_n"(
        uint64_t *p, uint64_t *expected, uint64_t desired, bint weak,
        int success, int failure)
    uint64_t fetch_add64 "__atomic_fetch_add"(uint64_t *p, uint64_t v, int order)

    uint32_t load32 "__atomic_load_n"(uint32_t *p, int order)
    void store32 "__atomic_store_n"(uint32_t *p, uint32_t v, int order)
    uint32_t exchange32 "__atomic_exchange_n"(uint32_t *p, uint32_t v, int order)
    bint cas32 "__atomic_compare_exchange_n"(
        uint32_t *p, uint32_t *expected, uint32_t desired, bint weak,
        int success, int failure)
    uint32_t fetch_add32 "__atomic_fetch_add"(uint32_t *p, uint32_t v, int order)

    void fence "__atomic_thread_fence"(int order)
    void cpu_relax "shmring_cpu_relax"()

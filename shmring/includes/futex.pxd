# The futex system call, shared (not FUTEX_PRIVATE) because waiter and waker
# are different processes mapping the same segment.
from libc.stdint cimport uint32_t

cdef extern from "<linux/futex.h>" nogil:
    enum:
        FUTEX_WAIT
        FUTEX_WAKE

cdef extern from "<sys/syscall.h>" nogil:
    enum:
        SYS_futex

cdef extern from "<time.h>" nogil:
    struct timespec:
        long tv_sec
        long tv_nsec

cdef extern from "<unistd.h>" nogil:
    long syscall(long number, ...)

cdef extern from "<sched.h>" nogil:
    int sched_yield()       # the adaptive poll: leave the CPU to anything runnable

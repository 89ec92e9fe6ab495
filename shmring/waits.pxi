# Timeouts, and the loops that wait without the GIL.  The core waits in
# slices and returns INTERRUPTED after each, so that these loops can take the
# GIL, run signal handlers (Ctrl-C) and call the core again.


cdef int64_t deadline_for(object timeout) except? -1:
    """The one rule for a Python timeout: None waits forever, 0 never waits,
    a positive number (inf included) waits that many seconds."""
    cdef int64_t deadline
    if timeout is None:
        return NO_DEADLINE
    deadline_after(float(timeout), &deadline)
    return deadline


cdef int deadline_after(double timeout, int64_t *deadline) except -1 nogil:
    """The same rule for the C API's double timeouts (INFINITY: forever).  A
    negative or NaN timeout is a ValueError, as in the queue module."""
    if not timeout >= 0:
        with gil:
            raise ValueError(f"timeout must be None or a number >= 0, not {timeout!r}")
    if timeout == 0:
        deadline[0] = NOWAIT
    elif timeout > 1e9:
        deadline[0] = NO_DEADLINE       # 31 years, or inf
    else:
        deadline[0] = _core.now_ns() + <int64_t>(timeout * 1e9)
    return 0


cdef int claim_blocking(ProducerState *p, uint64_t nbytes, uint32_t type,
                        int64_t deadline) except -1 nogil:
    """Claim, waiting as long as deadline allows: 1 if claimed, 0 if not."""
    cdef int st
    while True:
        st = _core.producer_claim(p, nbytes, type, deadline)
        if st == OK:
            return 1
        if st == TIMEOUT:
            return 0
        with gil:
            if st != INTERRUPTED:
                raise_status(st, p, NULL, nbytes)
            PyErr_CheckSignals()


cdef int receive_blocking(ConsumerState *c, Received *out, int64_t deadline) except -1 nogil:
    """Receive, waiting as long as deadline allows: OK, TIMEOUT, or SEALED
    (sealed and drained: nothing will ever come)."""
    cdef int st
    while True:
        st = _core.consumer_receive(c, out, deadline)
        if st == OK or st == TIMEOUT or st == SEALED:
            return st
        with gil:
            if st != INTERRUPTED:
                raise_status(st, NULL, c)
            PyErr_CheckSignals()

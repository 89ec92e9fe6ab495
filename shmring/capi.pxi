# The Cython API (`cimport shmring`, docs/cython.md): claim, commit, receive
# and release without the GIL.  Each returns 1 on success, 0 when the timeout
# ran out, and -1 with an exception set; errors come from status.pxi like the
# Python API's, and timeouts follow waits.pxi's rule (INFINITY: forever).

cdef ProducerState *producer_state(Producer producer) except NULL:
    producer.ensure_usable()
    return &producer.st


cdef ConsumerState *consumer_state(Consumer consumer) except NULL:
    consumer.begin()
    consumer.end()
    return &consumer.st


cdef int claim(ProducerState *p, uint64_t nbytes, uint32_t type, double timeout,
               uint8_t **data) except -1 nogil:
    cdef int64_t deadline
    if p.reserved:
        with gil:
            raise_status(OPEN_CLAIM)
    deadline_after(timeout, &deadline)
    if not claim_blocking(p, nbytes, type, deadline):
        return 0
    data[0] = p.res_data
    return 1


cdef int commit(ProducerState *p) except -1 nogil:
    if not p.reserved:
        with gil:
            raise_status(NO_CLAIM)
    _core.producer_commit(p)
    return 1


cdef int abort(ProducerState *p) except -1 nogil:
    if not p.reserved:
        with gil:
            raise_status(NO_CLAIM)
    _core.producer_abort(p)
    return 1


cdef int receive(ConsumerState *c, double timeout, Received *out) except -1 nogil:
    cdef int64_t deadline
    cdef int st
    deadline_after(timeout, &deadline)
    enter_call(c)
    try:
        st = receive_blocking(c, out, deadline)
    finally:
        leave_call(c)
    if st == SEALED:
        with gil:
            raise_status(st, NULL, c)
    return st == OK


cdef int release(ConsumerState *c, uint64_t pos) except -1 nogil:
    cdef int st
    enter_call(c)
    st = _core.consumer_release(c, pos)
    leave_call(c)
    if st != OK:
        with gil:
            raise_status(st, NULL, c)
    return 1


cdef int enter_call(ConsumerState *c) except -1 nogil:
    """Hold the consumer's state for a C API call (consumer.pxi's guard).  A
    Frame releasing itself holds it for a few instructions: wait that out;
    another call holding it is a second thread using the consumer."""
    while not hold(c, CALLER):
        if load32(&c.in_use, RELAXED) == CALLER:
            with gil:
                raise_status(CONSUMER_BUSY)
        cpu_relax()
    return 0


cdef int leave_call(ConsumerState *c) except -1 nogil:
    """Release the frames Python dropped during the call, then let go."""
    if load32(&c.dropped, RELAXED) == 0:
        let_go(c)
        return 0
    with gil:
        try:
            (<Consumer>c.wrapper).release_dropped()
        finally:
            let_go(c)
    return 0

# `cimport shmring`: the nogil C API.  See docs/cython.md.
#
#   cdef ProducerState *p = shmring.producer_state(producer)   # with the GIL
#   with nogil:
#       if shmring.claim(p, n, type, timeout, &data): ...fill data...; shmring.commit(p)
#       (or fill it with shmring.copy_payload(data, src, n, nontemporal))
#
#   cdef ConsumerState *c = shmring.consumer_state(consumer)
#   cdef Received r
#   with nogil:
#       if shmring.receive(c, timeout, &r): ...read r.data[:r.length]...; shmring.release(c, r.pos)
#
# timeout: 0 never waits, shmring.FOREVER (INFINITY) waits forever.
from shmring._core cimport ProducerState, ConsumerState, Received, copy_payload
from shmring._ring cimport (
    Ring, Producer, Consumer, Frame,
    producer_state, consumer_state, claim, commit, abort, receive, release)

cdef extern from "<math.h>":
    const double FOREVER "INFINITY"

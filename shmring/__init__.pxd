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
from shmring._core cimport ProducerState, ConsumerState, copy_payload
from shmring._ring cimport (
    Ring, Producer, Consumer, Frame, Received,
    producer_state, consumer_state, claim, commit, abort, receive, release)

# The Python classes, and the nogil C API other extensions cimport.
from libc.stdint cimport uint8_t, uint32_t, uint64_t, int64_t
from shmring._core cimport RingView, ProducerState, ConsumerState

cdef struct Received:
    uint64_t pos            # hand back to release()
    const uint8_t *data
    uint64_t length
    uint32_t type

cdef class Segment:
    cdef uint8_t *base
    cdef uint64_t size
    cdef RingView view
    cdef readonly str name
    cdef readonly str path

    @staticmethod
    cdef Segment map(int fd, uint64_t size, str name, str path)

cdef class Ring:
    cdef Segment seg
    cdef bint closed

    @staticmethod
    cdef Ring wrap(Segment seg)
    cdef Segment live(self)

cdef class Producer:
    cdef ProducerState st
    cdef Segment seg
    cdef readonly Ring ring
    cdef unsigned long gen
    cdef bint busy
    cdef bint closed
    cdef readonly bint nontemporal
    cdef object reservation     # weakref to the last Reservation

    @staticmethod
    cdef Producer open(Ring ring, object spin, bint nontemporal)
    cdef int enter(self) except -1
    cdef int claim_or_raise(self, uint64_t nbytes, object type, object timeout) except -1
    cdef int claim_by(self, uint64_t nbytes, uint32_t type, int64_t deadline) except -1

cdef class Reservation:
    cdef object __weakref__
    cdef Producer producer
    cdef uint64_t pos
    cdef uint8_t *data
    cdef uint64_t length
    cdef unsigned long gen
    cdef int exports
    cdef bint open
    cdef object dtype
    cdef object shape

    @staticmethod
    cdef Reservation wrap(Producer producer, object dtype, object shape)
    cdef int finish(self, bint keep) except -1

cdef class Consumer:
    cdef ConsumerState st
    cdef Segment seg
    cdef readonly Ring ring
    cdef unsigned long gen
    cdef bint busy
    cdef bint closed
    cdef list dropped           # frames dropped by other threads during recv()

    @staticmethod
    cdef Consumer open(Ring ring, object spin, object stall_timeout)
    cdef int enter(self) except -1
    cdef Frame next_frame(self, object timeout)
    cdef Frame make_frame(self, uint64_t pos)
    cdef int release_dropped(self) except -1
    cdef int give_back(self, uint64_t pos) except -1
    cdef int take(self, uint64_t *pos, int64_t deadline) except -1     # batches

cdef class Frame:
    cdef Consumer consumer
    cdef const uint8_t *data
    cdef uint64_t pos
    cdef uint64_t length
    cdef uint32_t _type
    cdef uint8_t ndim
    cdef int exports
    cdef bint released
    cdef int check(self) except -1
    cdef tuple array_meta(self, object np)

# --- the Cython API: claim, commit, receive and release without the GIL. ---
# Each returns 1 on success, 0 when the timeout ran out (timeout < 0 waits
# forever, 0 never waits), and -1 with a shmring exception set.
cdef ProducerState *producer_state(Producer producer) except NULL
cdef ConsumerState *consumer_state(Consumer consumer) except NULL
cdef int claim(ProducerState *p, uint64_t nbytes, uint32_t type, double timeout,
               uint8_t **data) except -1 nogil
cdef int commit(ProducerState *p) except -1 nogil
cdef int abort(ProducerState *p) except -1 nogil
cdef int receive(ConsumerState *c, double timeout, Received *out) except -1 nogil
cdef int release(ConsumerState *c, uint64_t pos) except -1 nogil

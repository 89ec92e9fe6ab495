# The Python classes, and the nogil C API other extensions cimport.  The
# implementation is _ring.pyx and the .pxi files it includes.
from libc.stdint cimport uint8_t, uint32_t, uint64_t, int64_t
from shmring._core cimport RingView, ProducerState, ConsumerState, Received

cdef class Reservation

cdef class Segment:
    cdef uint8_t *base
    cdef uint64_t size
    cdef RingView view
    cdef readonly str name
    cdef readonly str path
    cdef int mode               # the file's permission bits, given to its doorbells
    cdef int dirfd              # the directory, when doorbell paths must go through it; else -1

    @staticmethod
    cdef Segment map(int fd, uint64_t size, str name, str path)
    cdef int locate_doorbells(self) except -1

cdef class Doorbell:
    cdef int fd
    cdef bytes path             # the bound address, to unlink
    cdef unsigned long dev      # the file bound there, so that only it is unlinked
    cdef unsigned long ino
    cdef unsigned long gen      # _core.generation() when bound: a forked child makes its own
    cdef uint32_t id            # never 0; a consumer arms its flag with it
    cdef uint64_t heard         # rings read so far (the lab judges an await that heard none)

    cdef object loop            # the asyncio loop its descriptor is registered with
    cdef object waiter          # the future of the task that awaits it, or None

    @staticmethod
    cdef Doorbell bind(Segment seg, RingView *v, int slot, uint64_t owner)
    cdef int drain(self) except -1
    cdef bint take_ring(self) noexcept
    cdef int unregister(self) except -1
    cdef int close(self) except -1
    cdef void unlink(self) noexcept

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
    cdef bint busy              # inside a call that released the GIL
    cdef bint closed
    cdef readonly bint nontemporal
    cdef bint drops             # on_full="drop": a frame without room is dropped, not waited for
    cdef object reservation     # weakref to the last Reservation
    cdef Doorbell bell          # made by the first await, or fileno()
    cdef bint awaiting          # a task awaits room (one at a time)

    @staticmethod
    cdef Producer open(Ring ring, uint32_t spin, bint nontemporal, bint drops, bint rewind)
    cdef int ensure_usable(self) except -1
    cdef int64_t room_deadline(self, object timeout) except? -1
    cdef int open_record(self, uint64_t nbytes, uint32_t type, int64_t deadline,
                         bint must) except -1
    cdef int try_claim(self, uint64_t nbytes, uint32_t type) except -1
    cdef int no_room(self, uint64_t nbytes, bint must) except -1
    cdef int copy_in(self, object data, uint32_t type, int64_t deadline, bint must) except -1
    cdef int fill(self, const uint8_t *src, size_t n) except -1
    cdef int fill_array(self, Reservation r, object arr) except -1
    cdef Doorbell doorbell(self)
    cdef double arm_for(self, uint64_t nbytes, int64_t deadline) except -2
    cdef Doorbell enter_await(self)
    cdef int leave_await(self) except -1

cdef class Reservation:
    cdef object __weakref__
    cdef Producer producer
    cdef uint64_t pos
    cdef uint64_t length
    cdef unsigned long gen
    cdef int exports
    cdef bint open
    cdef object dtype
    cdef object shape

    @staticmethod
    cdef Reservation wrap(Producer producer, object dtype, object shape)
    cdef int check_own(self) except -1
    cdef int finish(self, bint keep) except -1

cdef class PendingReservation:
    cdef Producer producer
    cdef uint64_t nbytes
    cdef uint32_t type
    cdef object timeout
    cdef object dtype
    cdef object shape
    cdef Reservation reservation

    @staticmethod
    cdef PendingReservation make(Producer producer, uint64_t nbytes, object type,
                                 object timeout, object dtype, object shape)

cdef class Consumer:
    cdef ConsumerState st
    cdef Segment seg
    cdef readonly Ring ring
    cdef unsigned long gen
    cdef bint closed
    cdef bint corrupted         # a dropped frame's release found corruption
    cdef list dropped           # frames dropped while a call held the state
    cdef readonly uint64_t skipped  # frames recv_latest*() released unread
    cdef Received *by_slot      # recv_latest_each(): each producer's newest, by slot
    cdef Doorbell bell          # made by the first await, or fileno()
    cdef bint awaiting          # a task awaits a frame (one at a time)

    @staticmethod
    cdef Consumer open(Ring ring, uint32_t spin, double stall_timeout)
    cdef int begin(self) except -1
    cdef int end(self) except -1
    cdef int release_dropped(self) except -1
    cdef int next_record(self, Received *r, int64_t deadline) except -1
    cdef int usable(self) except -1
    cdef int not_awaited(self) except -1
    cdef object receive(self, bint as_bytes, Py_ssize_t max_frames, int64_t deadline,
                        Frame done)
    cdef object receive_into(self, object buffer, int64_t deadline)
    cdef Doorbell doorbell(self)
    cdef double arm_for(self, int64_t deadline) except -2
    cdef Doorbell enter_await(self)
    cdef int leave_await(self) except -1
    cdef int give_back(self, uint64_t pos) except -1
    cdef bytes copy_out(self, Received *r)
    cdef Frame releasable(self, object frame)

cdef class Frame:
    cdef Consumer consumer
    cdef const uint8_t *data
    cdef uint64_t pos
    cdef uint64_t length
    cdef uint32_t _type
    cdef uint8_t ndim
    cdef int exports
    cdef bint released
    cdef bint release_unviewed  # left a `with` block while viewed
    cdef int check(self) except -1
    cdef int refuse_release(self) except -1
    cdef void drop(self) noexcept

# --- the Cython API: claim, commit, receive and release without the GIL. ---
# Each returns 1 on success, 0 when the timeout ran out (0 never waits,
# INFINITY waits forever; negative or NaN raises ValueError), and -1 with a
# shmring exception set.
cdef ProducerState *producer_state(Producer producer) except NULL
cdef ConsumerState *consumer_state(Consumer consumer) except NULL
cdef int claim(ProducerState *p, uint64_t nbytes, uint32_t type, double timeout,
               uint8_t **data) except -1 nogil
cdef int commit(ProducerState *p) except -1 nogil
cdef int abort(ProducerState *p) except -1 nogil
cdef int receive(ConsumerState *c, double timeout, Received *out) except -1 nogil
cdef int release(ConsumerState *c, uint64_t pos) except -1 nogil

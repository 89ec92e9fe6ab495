# The ring algorithms: nogil functions on plain structs, no Python objects.
# _ring.pyx wraps them in the Python API and translates their status codes.
# The hot layout helpers are inline here, so that _ring calls them without a
# cross-module call.
from libc.stdint cimport uint8_t, uint32_t, uint64_t, int64_t
from shmring.layout cimport (
    SegmentHeader, Slot, RecordHeader, ALIGN, RECORD_HEADER, STATE_MASK, TAIL_SEALED)

cdef enum Status:
    OK = 0
    EMPTY = 1               # nothing claimed beyond the cursor
    PENDING = 2             # claimed, not committed yet
    TIMEOUT = 4
    INTERRUPTED = 5         # a wait slice ended: check signals, call again
    SEALED = 6              # claim: the ring takes no new frames; receive: sealed and drained
    ERR_TOO_LARGE = -1
    ERR_CORRUPT = -2
    ERR_CONSUMER_GONE = -3

cdef enum:
    BELL_BASE = 80          # longest doorbell address prefix, NUL included (RingView.bell_base)
    PID_BITS = 24           # an owner word is (start time << PID_BITS) | pid
    NOWAIT = 0              # deadline for "never block"
    NO_DEADLINE = 0x7fffffffffffffff
    SPIN_ADAPT = 0xffffffff  # spin=None: the adaptive poll
    STREAM_MIN = 1 << 20    # nontemporal copies stream from this size up (release builds)

# What one process knows about a mapped ring.  The constants are copied from
# the header once, after validation, and never re-read from shared memory.
cdef struct RingView:
    SegmentHeader *hdr
    Slot *slots
    uint8_t *data
    uint64_t capacity
    uint64_t mask
    uint64_t secret
    uint64_t max_frame
    uint32_t nslots
    uint32_t bell_len       # doorbell addresses: bell_base, then c.<owner> or p<slot>.<owner>;
    char bell_base[BELL_BASE]   # set by _ring (segment.pxi), 0 until then

# A delivered record, as the consumer validated it.  Also the C API's
# receive() result (`shmring.Received`).
cdef struct Received:
    uint64_t pos            # hand back to release()
    const uint8_t *data
    uint64_t length
    uint32_t type

cdef struct ProducerState:
    RingView ring
    uint32_t slot
    uint64_t head_cache
    uint64_t res_pos        # the open reservation: its record position,
    uint8_t *res_data       # its payload,
    uint64_t res_len        # and its payload length
    bint reserved
    uint32_t spin           # polls before sleeping, or SPIN_ADAPT
    uint64_t spun_for       # head_cache + 1 when we last spun
    int64_t poll_ns         # SPIN_ADAPT's window now: 0 sleeps at once
    int64_t wait_began      # when the wait for room began
    int bell_fd             # a socket connected to the consumer's doorbell, or -1
    uint64_t bell_owner     # which doorbell: its consumer's owner word
    uint32_t bell_id        # and its id (the armed flag's value)
    bint rewind             # may pad to the end of a lap to reuse its start
    uint64_t looked         # tail when we last looked at head to rewind
    bint lab_due            # lab builds: a ring was already due when the doorbell was armed

cdef struct ConsumerState:
    RingView ring
    uint64_t owner
    uint64_t cursor         # next record to deliver
    uint64_t head           # our copy: we are head's only writer
    uint64_t tail_cache
    uint64_t held           # delivered and not yet released
    uint32_t spin           # polls before sleeping, or SPIN_ADAPT
    uint64_t spun_for       # cursor + 1 when we last spun
    int64_t poll_ns         # SPIN_ADAPT's window now: 0 sleeps at once
    int64_t wait_began      # when the wait for the cursor's record began
    uint64_t waiting_at     # what we stored in consumer_waiting_at: cursor + 1, or 0
    int64_t stall_ns        # a claim pending this long is checked for a dead owner
    uint64_t stall_pos
    int64_t stall_since
    uint32_t in_use         # _ring's guard: 0, or which caller holds the state
    uint32_t dropped        # frames _ring queued for release while the state was in use
    uint32_t bell_id        # our doorbell's id (never 0): the value that arms the flag
    bint lab_due            # lab builds: a ring was already due when the doorbell was armed
    void *wrapper           # _ring's Consumer object, which owns this state

cdef int64_t now_ns() noexcept nogil
cdef uint64_t self_owner() noexcept nogil
cdef unsigned long generation() noexcept nogil
cdef bint owner_alive(uint64_t owner) noexcept nogil
cdef uint64_t max_frame_for(uint64_t capacity) noexcept nogil
cdef uint64_t data_offset_for(uint32_t nslots) noexcept nogil

cdef inline object owner_pid(uint64_t owner):
    """The pid in an owner word; None for a free word."""
    return (owner & ((1 << PID_BITS) - 1)) or None

cdef inline uint64_t tail_pos(uint64_t word) noexcept nogil:
    """The position in a tail word, without the seal bit."""
    return word & ~<uint64_t>TAIL_SEALED

cdef inline uint64_t record_size(uint64_t length) noexcept nogil:
    return (length + RECORD_HEADER + ALIGN - 1) & ~<uint64_t>(ALIGN - 1)

cdef inline uint64_t tag(RingView *v, uint64_t pos) noexcept nogil:
    return (pos ^ v.secret) & ~<uint64_t>STATE_MASK

cdef inline RecordHeader *header_at(RingView *v, uint64_t pos) noexcept nogil:
    return <RecordHeader *>(v.data + (pos & v.mask))

cdef inline uint8_t *payload_at(RingView *v, uint64_t pos) noexcept nogil:
    return v.data + (pos & v.mask) + RECORD_HEADER

cdef void ring_format(uint8_t *base, uint64_t capacity, uint64_t max_frame,
                      uint32_t nslots, uint64_t secret, uint64_t start) noexcept nogil
cdef int ring_view(RingView *v, uint8_t *base, uint64_t size) noexcept nogil
cdef bint ring_seal(RingView *v) noexcept nogil
cdef bint ring_sealed(RingView *v) noexcept nogil
cdef size_t stream_threshold() noexcept nogil
cdef void copy_payload(uint8_t *dst, const uint8_t *src, size_t n,
                       bint nontemporal) noexcept nogil

cdef int producer_open(ProducerState *p, RingView *v) noexcept nogil
cdef void producer_close(ProducerState *p) noexcept nogil
cdef int producer_claim(ProducerState *p, uint64_t length, uint32_t type,
                        int64_t deadline) noexcept nogil
cdef void producer_commit(ProducerState *p) noexcept nogil
cdef void producer_abort(ProducerState *p) noexcept nogil
cdef void producer_drop(ProducerState *p) noexcept nogil

cdef int producer_arm(ProducerState *p, uint64_t length) noexcept nogil
cdef void producer_disarm(ProducerState *p) noexcept nogil
cdef void producer_awaited(ProducerState *p, int bell_fd, bint heard) noexcept nogil

cdef int consumer_open(ConsumerState *c, RingView *v) noexcept nogil
cdef void consumer_close(ConsumerState *c) noexcept nogil
cdef int consumer_receive(ConsumerState *c, Received *out, int64_t deadline) noexcept nogil
cdef void consumer_unreceive(ConsumerState *c, Received *r) noexcept nogil
cdef int consumer_release(ConsumerState *c, uint64_t pos) noexcept nogil
cdef int consumer_skip(ConsumerState *c, uint64_t pos) noexcept nogil
cdef int consumer_arm(ConsumerState *c) noexcept nogil
cdef void consumer_disarm(ConsumerState *c) noexcept nogil
cdef void consumer_awaited(ConsumerState *c, int bell_fd, bint heard) noexcept nogil

cdef int bell_address(RingView *v, int slot, uint64_t owner, void *addr) noexcept nogil

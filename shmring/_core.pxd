# The ring algorithms: nogil functions on plain structs, no Python objects.
# _ring.pyx wraps them in the Python API and translates their status codes.
from libc.stdint cimport uint8_t, uint32_t, uint64_t, int64_t
from shmring.layout cimport SegmentHeader, Slot, RecordHeader

cdef enum Status:
    OK = 0
    EMPTY = 1               # nothing claimed beyond the cursor
    PENDING = 2             # claimed, not committed yet
    NO_ROOM = 3             # the claim does not fit before head
    TIMEOUT = 4
    INTERRUPTED = 5         # a wait slice ended: check signals, call again
    ERR_TOO_LARGE = -1
    ERR_CORRUPT = -2
    ERR_CONSUMER_GONE = -3

cdef enum:
    NOWAIT = 0              # deadline for "never block"
    FOREVER = 0x7fffffffffffffff
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

cdef struct ProducerState:
    RingView ring
    uint32_t slot
    uint64_t head_cache
    uint64_t res_pos        # the open reservation's record position
    uint64_t res_len
    bint reserved
    uint32_t spin           # polls before sleeping
    uint64_t spun_for       # head_cache + 1 when we last spun

cdef struct ConsumerState:
    RingView ring
    uint64_t owner
    uint64_t cursor         # next record to deliver
    uint64_t head           # our copy: we are head's only writer
    uint64_t tail_cache
    uint64_t held           # delivered and not yet released
    uint64_t delivered_length   # validated length of the record just delivered
    uint32_t spin
    uint64_t spun_for       # cursor + 1 when we last spun
    int64_t stall_ns        # a claim pending this long is checked for a dead owner
    uint64_t stall_pos
    int64_t stall_since

cdef int64_t now_ns() noexcept nogil
cdef int64_t deadline_after(double timeout) noexcept nogil
cdef uint64_t self_owner() noexcept nogil
cdef unsigned long generation() noexcept nogil
cdef bint owner_alive(uint64_t owner) noexcept nogil
cdef uint64_t record_size(uint64_t length) noexcept nogil
cdef uint64_t max_frame_for(uint64_t capacity) noexcept nogil
cdef uint64_t data_offset_for(uint32_t nslots) noexcept nogil

cdef void ring_format(uint8_t *base, uint64_t capacity, uint64_t max_frame,
                      uint32_t nslots, uint64_t secret, uint64_t start) noexcept nogil
cdef int ring_view(RingView *v, uint8_t *base, uint64_t size) noexcept nogil
cdef RecordHeader *header_at(RingView *v, uint64_t pos) noexcept nogil
cdef uint8_t *payload_at(RingView *v, uint64_t pos) noexcept nogil
cdef size_t stream_threshold() noexcept nogil
cdef void copy_payload(uint8_t *dst, const uint8_t *src, size_t n,
                       bint nontemporal) noexcept nogil

cdef int producer_open(ProducerState *p, RingView *v) noexcept nogil
cdef void producer_close(ProducerState *p) noexcept nogil
cdef int producer_claim(ProducerState *p, uint64_t length, uint32_t type,
                        int64_t deadline) noexcept nogil
cdef void producer_commit(ProducerState *p) noexcept nogil
cdef void producer_abort(ProducerState *p) noexcept nogil
cdef void pause_mid_payload() noexcept nogil     # a lab pause point for _ring's copy

cdef int consumer_open(ConsumerState *c, RingView *v) noexcept nogil
cdef void consumer_close(ConsumerState *c) noexcept nogil
cdef int consumer_receive(ConsumerState *c, uint64_t *pos,
                          int64_t deadline) noexcept nogil
cdef int consumer_release(ConsumerState *c, uint64_t pos) noexcept nogil

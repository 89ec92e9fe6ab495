# The segment layout: the only place it is written down.  _core exports the
# offset and size of every field below to Python (shmring/layout.py, used by
# `shmring ls`, the tests and the fuzzer), and tests/test_layout.py fails when
# docs/design.md's drawing of it disagrees with these structs.
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t

cdef extern from *:
    """
    #define SHMRING_MAGIC 0x31474e4952534d48ULL  /* "HMSRING1" little-endian */
    """
    const uint64_t MAGIC "SHMRING_MAGIC"

cdef enum:
    VERSION = 5                     # 5: rewinds, consumer_waiting_at; 4: doorbells; 3: skipped, dropped; 2: the seal, held, opens
    LINE = 128                      # counters sit 128 B apart (no false sharing)
    ALIGN = 64                      # records and payloads start on cache lines
    RECORD_HEADER = 64
    MIN_CAPACITY = 4096
    DEFAULT_SLOTS = 128
    MAX_NDIM = 8

# Record states: the low six bits of a record's commit word.
cdef enum:
    BUSY = 1                        # claimed, payload being written
    COMMITTED = 2                   # ready for the consumer
    PAD = 3                         # skip: wrap padding, abort, or recovered
    RELEASED = 4                    # released out of order by a consumer
    STATE_MASK = 63

# The low bit of tail: sealed, no new claims.  Positions are multiples of 64,
# so the bit is free, and a claim's CAS on tail and the seal are ordered on
# one word (docs/design.md, "End of stream").
cdef enum:
    TAIL_SEALED = 1

cdef struct SegmentHeader:
    # line 0 (offset 0): identity, written once by the creator, magic last
    uint64_t magic
    uint32_t version
    uint32_t data_offset
    uint64_t capacity
    uint64_t max_frame
    uint64_t secret                 # tags record headers: (pos ^ secret)
    uint32_t nslots
    uint32_t header_size
    uint64_t creator                # owner word of the creating process
    uint64_t created_ns
    uint8_t _pad0[64]
    # line 1 (offset 128): claimed up to here, CAS by producers; | TAIL_SEALED
    uint64_t tail
    uint8_t _pad1[120]
    # line 2 (offset 256): released up to here, stored by the consumer
    uint64_t head
    uint8_t _pad2[120]
    # line 3 (offset 384): "data committed" futex, waiter flag, doorbell flag
    uint32_t data_seq
    uint32_t data_waiting
    uint32_t data_bell              # the armed doorbell's id: an awaiting consumer armed it
    uint8_t _pad3[116]
    # line 4 (offset 512): "space released" futex, waiter flag, doorbell flag
    uint32_t space_seq
    uint32_t space_waiting
    uint32_t space_bell             # 1: some slot's producer may have armed its doorbell
    uint8_t _pad4[116]
    # lines 5-7 (offset 640): the consumer's owner word and counters
    uint64_t consumer
    uint64_t received_frames
    uint64_t received_bytes
    uint64_t held_frames            # delivered and not yet released
    uint64_t consumer_waits
    uint64_t abandoned_frames
    uint64_t abandoned_bytes
    uint64_t wakeups_to_consumer    # FUTEX_WAKE calls for a consumer sleeping on an empty ring
    uint64_t wakeups_to_producers   # FUTEX_WAKE calls for producers sleeping on a full ring
    uint64_t skipped_frames         # received by recv_latest() and released unread
    uint64_t doorbell_rings         # datagrams to awaiting consumers and producers
    uint64_t consumer_waiting_at    # cursor + 1 while the consumer waits there for a record; else 0
    uint8_t _pad5[288]

# One per producer, from offset 1024, LINE bytes each.
cdef struct Slot:
    uint64_t owner                  # owner word, 0 when free
    uint64_t intent_pos             # the claim being attempted or written
    uint64_t intent_len             # 0 when no claim is outstanding
    uint64_t frames
    uint64_t bytes
    uint64_t aborted
    uint64_t full_waits
    uint64_t opens                  # producers that took this slot, ever
    uint64_t dropped                # frames an on_full="drop" producer dropped
    uint64_t rewinds                # claims that padded to the lap's end to rewind
    uint32_t bell                   # 1: this slot's awaiting producer armed its doorbell
    uint8_t _pad[44]

# The 64-byte header in front of every record.
cdef struct RecordHeader:
    uint64_t commit                 # ((pos ^ secret) & ~63) | state
    uint64_t length                 # payload bytes
    uint32_t type
    uint16_t slot
    uint8_t ndim                    # 0: raw bytes; else an array of this rank
    uint8_t flags
    char dtype[8]                   # numpy dtype.str, NUL padded
    uint32_t shape[MAX_NDIM]

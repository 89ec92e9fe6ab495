# cython: language_level=3, boundscheck=False, wraparound=False
"""Producers and a consumer that run entirely without the GIL, through the
C API that `cimport shmring` gives, so that ThreadSanitizer sees every
shared access of the core from several threads (stress/tsan.py)."""
from libc.stdint cimport uint8_t, uint32_t, uint64_t
cimport shmring
from shmring._core cimport ProducerState, ConsumerState
from shmring._ring cimport Received

cdef enum:
    MAX_PRODUCERS = 16
    SEQ_BITS = 20


cdef uint64_t length_for(uint32_t ident, uint32_t seq, uint64_t max_frame) noexcept nogil:
    cdef uint64_t h = (<uint64_t>ident * 40503 + <uint64_t>seq * 2654435) % 9973
    if h % 7 == 0:
        return 0
    if h % 7 == 1:
        return max_frame
    return h * 131 % (max_frame + 1)


cdef inline uint8_t byte_at(uint32_t ident, uint32_t seq, uint64_t i) noexcept nogil:
    return <uint8_t>(ident * 31 + seq + i)


def produce(producer, uint32_t ident, uint32_t count, uint64_t max_frame):
    """Send count frames whose length and bytes follow from (ident, seq)."""
    cdef ProducerState *p = shmring.producer_state(producer)
    cdef uint8_t *data
    cdef uint32_t seq
    cdef uint64_t n, i
    with nogil:
        for seq in range(count):
            n = length_for(ident, seq, max_frame)
            if not shmring.claim(p, n, (ident << SEQ_BITS) | seq, 30.0, &data):
                with gil:
                    raise TimeoutError(f"producer {ident}: no room for 30 s")
            for i in range(n):
                data[i] = byte_at(ident, seq, i)
            shmring.commit(p)


def consume(consumer, uint32_t producers, uint32_t count, uint64_t max_frame):
    """Receive producers * count frames and check each; the number of bad ones."""
    cdef ConsumerState *c = shmring.consumer_state(consumer)
    cdef Received r
    cdef uint32_t next_seq[MAX_PRODUCERS]
    cdef uint32_t ident, seq, k, _
    cdef uint64_t i
    cdef long bad = 0
    if producers > MAX_PRODUCERS:
        raise ValueError(f"at most {MAX_PRODUCERS} producers")
    for k in range(MAX_PRODUCERS):
        next_seq[k] = 0
    with nogil:
        for _ in range(producers * count):
            if not shmring.receive(c, 30.0, &r):
                with gil:
                    raise TimeoutError("consumer: no frame for 30 s")
            ident = r.type >> SEQ_BITS
            seq = r.type & ((1 << SEQ_BITS) - 1)
            if ident >= producers or seq != next_seq[ident] or \
                    r.length != length_for(ident, seq, max_frame):
                bad += 1
            else:
                next_seq[ident] += 1
                for i in range(r.length):
                    if r.data[i] != byte_at(ident, seq, i):
                        bad += 1
                        break
            shmring.release(c, r.pos)
    return bad

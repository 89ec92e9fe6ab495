# cython: language_level=3
"""An extension that moves frames through shmring without the GIL.
tests/test_cython_api.py builds it outside the source tree."""
from libc.stdint cimport uint8_t, uint64_t
from libc.string cimport memset

cimport shmring


def send_filled(shmring.Producer producer, int count, uint64_t nbytes):
    """Send count frames of nbytes, frame i filled with the byte i % 256."""
    cdef shmring.ProducerState *p = shmring.producer_state(producer)
    cdef uint8_t *data
    cdef int i
    with nogil:
        for i in range(count):
            shmring.claim(p, nbytes, i, shmring.FOREVER, &data)  # waits for room: always 1
            memset(data, i % 256, nbytes)
            shmring.commit(p)
    return count


def send_copies(shmring.Producer producer, const uint8_t[::1] payload, int count,
                bint nontemporal):
    """Send count copies of payload; with nontemporal, large copies bypass
    the cache as a nontemporal Producer's do (docs/usage.md)."""
    cdef shmring.ProducerState *p = shmring.producer_state(producer)
    cdef uint8_t *data
    cdef uint64_t n = payload.shape[0]
    cdef int i
    with nogil:
        for i in range(count):
            shmring.claim(p, n, i, shmring.FOREVER, &data)
            shmring.copy_payload(data, &payload[0] if n else NULL, n, nontemporal)
            shmring.commit(p)
    return count


def sum_frames(shmring.Consumer consumer, int count, double timeout):
    """Receive up to count frames; return (frames, byte sum, type sum)."""
    cdef shmring.ConsumerState *c = shmring.consumer_state(consumer)
    cdef shmring.Received r
    cdef uint64_t total = 0, types = 0, j
    cdef int n = 0
    with nogil:
        while n < count and shmring.receive(c, timeout, &r):
            for j in range(r.length):
                total += r.data[j]
            types += r.type
            shmring.release(c, r.pos)
            n += 1
    return n, total, types

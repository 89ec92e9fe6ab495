# cython: language_level=3, boundscheck=False, wraparound=False
"""The benchmark's shmring loops in C: what a user's Cython extension gets
from `cimport shmring`.  Built by nogil.py against the installed package."""
from libc.stdint cimport uint8_t, uint64_t, int64_t
from libc.string cimport memcpy
from posix.time cimport clock_gettime, CLOCK_MONOTONIC, timespec

cimport shmring

import array


cdef inline uint64_t touch(const uint8_t *data, uint64_t n) noexcept nogil:
    """The same bytes as harness.touch reads."""
    cdef uint64_t i = 0, acc = data[0] + data[n >> 1] + data[n - 1]
    if n >= 65536:
        while i < n:
            acc += data[i]
            i += n >> 4
    return acc


cdef inline int64_t now_ns() noexcept nogil:
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return ts.tv_sec * 1_000_000_000 + ts.tv_nsec


def produce(shmring.Producer producer, Py_ssize_t count, const uint8_t[::1] payload):
    cdef shmring.ProducerState *p = shmring.producer_state(producer)
    cdef uint8_t *data
    cdef uint64_t n = payload.shape[0]
    cdef Py_ssize_t _i
    with nogil:
        for _i in range(count):
            shmring.claim(p, n, 0, shmring.FOREVER, &data)
            memcpy(data, &payload[0], n)
            shmring.commit(p)


def consume(shmring.Consumer consumer, Py_ssize_t total):
    cdef shmring.ConsumerState *c = shmring.consumer_state(consumer)
    cdef shmring.Received r
    cdef uint64_t acc = 0
    cdef Py_ssize_t _i
    with nogil:
        for _i in range(total):
            shmring.receive(c, shmring.FOREVER, &r)
            acc += touch(r.data, r.length)
            shmring.release(c, r.pos)
    return acc


def echo(shmring.Consumer rx, shmring.Producer tx, Py_ssize_t n):
    cdef shmring.ConsumerState *c = shmring.consumer_state(rx)
    cdef shmring.ProducerState *p = shmring.producer_state(tx)
    cdef shmring.Received r
    cdef uint8_t *data
    cdef Py_ssize_t _i
    with nogil:
        for _i in range(n):
            shmring.receive(c, shmring.FOREVER, &r)
            shmring.claim(p, r.length, 0, shmring.FOREVER, &data)
            memcpy(data, r.data, r.length)
            shmring.commit(p)
            shmring.release(c, r.pos)


def ping(shmring.Producer tx, shmring.Consumer rx, Py_ssize_t n, const uint8_t[::1] payload):
    """Round-trip times in ns."""
    if n == 0:
        return []
    cdef shmring.ProducerState *p = shmring.producer_state(tx)
    cdef shmring.ConsumerState *c = shmring.consumer_state(rx)
    cdef shmring.Received r
    cdef uint8_t *data
    cdef uint64_t size = payload.shape[0]
    out = array.array("q", [0]) * n
    cdef int64_t[::1] times = out
    cdef int64_t t
    cdef Py_ssize_t i
    with nogil:
        for i in range(n):
            t = now_ns()
            shmring.claim(p, size, 0, shmring.FOREVER, &data)
            memcpy(data, &payload[0], size)
            shmring.commit(p)
            shmring.receive(c, shmring.FOREVER, &r)
            shmring.release(c, r.pos)
            times[i] = now_ns() - t
    return out.tolist()

# cython: language_level=3
"""Ring, Producer, Reservation, Consumer and Frame: the Python API over the
nogil algorithms in _core, and the C API that other extensions cimport.

One extension built from one room per concern (docs/design.md, "Where things
live"), included in the order they depend on each other."""
cimport cython
from cpython.buffer cimport (
    PyObject_GetBuffer, PyBuffer_Release, PyBuffer_FillInfo, PyBUF_SIMPLE)
from cpython.exc cimport PyErr_CheckSignals
from libc cimport errno as c_errno
from libc.stdint cimport uint8_t, uint32_t, uint64_t, int64_t
from libc.stdlib cimport calloc, free
from libc.string cimport memcpy, memset
from posix.mman cimport mmap, munmap, PROT_READ, PROT_WRITE, MAP_SHARED, MAP_FAILED
from posix.unistd cimport close as c_close, unlink as c_unlink
from posix.stat cimport struct_stat, lstat

from shmring cimport _core
from shmring._core cimport (
    owner_pid,
    OK, EMPTY, PENDING, TIMEOUT, INTERRUPTED, SEALED, ERR_TOO_LARGE, ERR_CORRUPT,
    ERR_CONSUMER_GONE, NOWAIT, NO_DEADLINE, BELL_BASE, RingView, ProducerState, ConsumerState,
    Received)
from shmring.includes.sockets cimport (
    AF_UNIX, SOCK_DGRAM, SOCK_NONBLOCK, SOCK_CLOEXEC, MSG_DONTWAIT, sockaddr, sockaddr_un,
    socklen_t, socket, bind as c_bind, recv)
from shmring.includes.atomics cimport (
    RELAXED, ACQUIRE, RELEASE, load32, store32, load64, cas32, fetch_add32, cpu_relax)
from shmring.layout cimport (
    SegmentHeader, Slot, RecordHeader, MAGIC, VERSION, MIN_CAPACITY, DEFAULT_SLOTS,
    MAX_NDIM, ALIGN, STATE_MASK)

import contextlib
import errno
import fcntl
import hashlib
import os
import re
import secrets
import stat as _stat
import struct
import weakref

from shmring.errors import (
    RingError, Full, Empty, FrameTooLarge, IncompatibleRing, ConsumerExists,
    ConsumerGone, RingCorrupted, Sealed)

include "status.pxi"
include "waits.pxi"
include "arrays.pxi"
include "segment.pxi"
include "doorbell.pxi"
include "ring.pxi"
include "producer.pxi"
include "consumer.pxi"
include "frame.pxi"
include "capi.pxi"

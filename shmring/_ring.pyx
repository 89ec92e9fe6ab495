# cython: language_level=3
"""Ring, Producer, Reservation, Consumer and Frame: the Python API over the
nogil algorithms in _core, and the C API that other extensions cimport."""
cimport cython
from cpython.buffer cimport (
    PyObject_GetBuffer, PyBuffer_Release, PyBuffer_FillInfo, PyBUF_SIMPLE)
from cpython.exc cimport PyErr_CheckSignals
from libc.stdint cimport uint8_t, uint32_t, uint64_t, int64_t
from libc.string cimport memcpy, memset
from posix.mman cimport mmap, munmap, PROT_READ, PROT_WRITE, MAP_SHARED, MAP_FAILED

from shmring cimport _core
from shmring._core cimport (
    OK, TIMEOUT, INTERRUPTED, ERR_TOO_LARGE, ERR_CORRUPT, ERR_CONSUMER_GONE,
    NOWAIT, FOREVER, RingView, ProducerState, ConsumerState)
from shmring.includes.lab cimport LAB_BUILD
from shmring.layout cimport (
    SegmentHeader, Slot, RecordHeader, MAGIC, VERSION, MIN_CAPACITY,
    DEFAULT_SLOTS, MAX_NDIM)

import errno
import os
import re
import secrets
import stat as _stat
import struct
import weakref

from shmring.errors import (
    RingError, Full, Empty, FrameTooLarge, IncompatibleRing, ConsumerExists,
    ConsumerGone, RingCorrupted)

cdef uint64_t COPY_WITHOUT_GIL = 64 * 1024   # larger copies let other threads run
# A nontemporal producer streams copies from this size up (None: it cannot).
NONTEMPORAL_MIN = _core.stream_threshold() or None
cdef uint8_t RAW = 0xff                      # Frame.ndim of a frame sent as bytes
_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,199}\Z")
# What dtype.str looks like for the dtypes send_array() accepts ('<f8', '|S3',
# '<M8[ms]').  Anything else is refused before numpy parses it: np.dtype()
# raises SyntaxError for ',' and warns for deprecated aliases such as 'a'.
_DTYPE_CODE = re.compile(r"[<>|][biufcmMSUV][0-9]{1,5}(\[[0-9]{0,3}[A-Za-z]{1,2}\])?\Z")
_np = None


cdef object numpy():
    global _np
    if _np is None:
        import numpy
        _np = numpy
    return _np


def segment_dir():
    """Where segments live: $SHMRING_DIR, else /dev/shm."""
    return os.environ.get("SHMRING_DIR", "/dev/shm")


def segment_path(name):
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(
            f"bad ring name {name!r}: use 1-200 of A-Z a-z 0-9 . _ -, "
            "not starting with '.'")
    return os.path.join(segment_dir(), "shmring." + name)


cdef int64_t deadline_for(object timeout) except? -1:
    if timeout is None:
        return FOREVER
    t = float(timeout)
    if not t >= 0:
        raise ValueError(f"timeout must be None or a number >= 0, not {timeout!r}")
    return _core.deadline_after(t)


cdef uint32_t check_type(object type) except? 0xffffffff:
    if not isinstance(type, int) or not 0 <= type <= 0xfffffffe:
        raise ValueError(f"type must be an integer in [0, 2**32 - 2], not {type!r}")
    return type


# --- the segment mapping ----------------------------------------------------

cdef class Segment:
    """One mapping of a segment file.  Rings, producers, consumers and frames
    share it; it is unmapped when the last of them goes."""

    @staticmethod
    cdef Segment map(int fd, uint64_t size, str name, str path):
        cdef Segment seg = Segment.__new__(Segment)
        cdef void *addr = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)
        if addr == MAP_FAILED:
            raise OSError(errno.ENOMEM, f"cannot map {path} ({size} bytes)")
        seg.base = <uint8_t *>addr
        seg.size = size
        seg.name = name
        seg.path = path
        return seg

    def __dealloc__(self):
        if self.base != NULL:
            munmap(self.base, self.size)


def _read_identity(int fd, str path, uint64_t size):
    """Check what a foreign segment claims to be, with messages that say
    which check failed; ring_view then re-checks everything it relies on."""
    if size < sizeof(SegmentHeader):
        raise IncompatibleRing(f"{path} is {size} bytes, too small for a shmring header")
    raw = os.pread(fd, 24, 0)
    magic, version, offset, capacity = struct.unpack("=QIIQ", raw[:24])
    if magic == 0 and version == 0:
        raise IncompatibleRing(f"{path} is not initialized yet (or not a shmring segment)")
    if magic != MAGIC:
        raise IncompatibleRing(f"{path} is not a shmring segment (bad magic {magic:#x})")
    if version != VERSION:
        raise IncompatibleRing(
            f"{path} has layout version {version}; this shmring reads version {VERSION}")
    if capacity < MIN_CAPACITY or capacity & (capacity - 1):
        raise IncompatibleRing(f"{path} has an invalid capacity {capacity}")
    if offset + capacity != size:
        raise IncompatibleRing(
            f"{path} is {size} bytes but its header describes {offset + capacity}")


# --- Ring -------------------------------------------------------------------

cdef class Ring:
    """A frame ring in one shared-memory segment.

    Make one with Ring.create(name, capacity) and open it elsewhere with
    Ring.attach(name).  Any number of producers, one consumer."""

    def __init__(self):
        raise TypeError("use Ring.create(name, capacity) or Ring.attach(name)")

    @staticmethod
    def create(name, capacity, *, max_frame=None, mode=0o600,
               producers=DEFAULT_SLOTS, _start=0):
        """Create the segment.  capacity is the data area in bytes, a power of
        two >= 4096; frames may be up to max_frame (default and largest:
        capacity // 2 - 64).  producers bounds how many can be open at once."""
        path = segment_path(name)
        capacity = int(capacity)
        if capacity < MIN_CAPACITY or capacity & (capacity - 1) or capacity > 1 << 46:
            raise ValueError(f"capacity must be a power of two >= {MIN_CAPACITY}, not {capacity}")
        limit = _core.max_frame_for(capacity)
        max_frame = limit if max_frame is None else int(max_frame)
        if not 0 <= max_frame <= limit:
            raise ValueError(
                f"max_frame must be in [0, {limit}] for capacity {capacity}, not {max_frame}")
        if not 1 <= producers <= 65535:
            raise ValueError(f"producers must be in [1, 65535], not {producers}")
        offset = _core.data_offset_for(producers)
        size = offset + capacity
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
        try:
            os.fchmod(fd, mode)         # the umask must not decide who can read frames
            _reserve(fd, size, path)
            seg = Segment.map(fd, size, name, path)
            _core.ring_format(seg.base, capacity, max_frame, producers,
                              int.from_bytes(secrets.token_bytes(8), "little"),
                              _start & 0xffffffffffffffff)
            if _core.ring_view(&seg.view, seg.base, size) != OK:
                raise RingCorrupted(f"{path} failed validation right after creation")
        except BaseException:
            os.unlink(path)
            raise
        finally:
            os.close(fd)
        return Ring.wrap(seg)

    @staticmethod
    def attach(name):
        """Open an existing ring by name."""
        path = segment_path(name)
        fd = _open_segment(path)
        try:
            st = os.fstat(fd)
            if not _stat.S_ISREG(st.st_mode):
                raise IncompatibleRing(f"{path} is not a regular file")
            _read_identity(fd, path, st.st_size)
            seg = Segment.map(fd, st.st_size, name, path)
        finally:
            os.close(fd)
        if _core.ring_view(&seg.view, seg.base, seg.size) != OK:
            raise IncompatibleRing(f"{path} failed header validation")
        return Ring.wrap(seg)

    @staticmethod
    cdef Ring wrap(Segment seg):
        cdef Ring ring = Ring.__new__(Ring)
        ring.seg = seg
        return ring

    cdef Segment live(self):
        if self.closed:
            raise RingError("ring is closed")
        return self.seg

    @property
    def name(self):
        return self.seg.name

    @property
    def path(self):
        return self.seg.path

    @property
    def capacity(self):
        return self.seg.view.capacity

    @property
    def max_frame(self):
        return self.seg.view.max_frame

    @property
    def closed(self):
        return self.closed

    @property
    def producer_slots(self):
        """How many producers can be open at once."""
        return self.seg.view.nslots

    @property
    def creator_pid(self):
        return self.seg.view.hdr.creator & 0xffffff

    @property
    def created(self):
        """Creation time, seconds since the epoch."""
        return self.seg.view.hdr.created_ns / 1e9

    def producer(self, *, spin=0, nontemporal=False):
        """A new producer.  spin is how many times to poll for room before
        sleeping; it trades CPU for latency.  nontemporal makes send(),
        send_many() and send_array() copy frames of 1 MiB or more past the
        CPU cache (see docs/usage.md)."""
        return Producer.open(self, spin, nontemporal)

    def consumer(self, *, spin=0, stall_timeout=1.0):
        """Become the ring's consumer (one live consumer per ring).  A claim
        pending stall_timeout seconds is checked for a dead producer."""
        return Consumer.open(self, spin, stall_timeout)

    def stats(self):
        """Counters from the segment, as a dict."""
        cdef RingView *v = &self.live().view
        cdef SegmentHeader *h = v.hdr
        cdef Slot *s
        cdef uint32_t i
        frames = nbytes = aborted = waits = live = 0
        for i in range(v.nslots):
            s = &v.slots[i]
            frames += s.frames
            nbytes += s.bytes
            aborted += s.aborted
            waits += s.full_waits
            if s.owner and _core.owner_alive(s.owner):
                live += 1
        head, tail = h.head, h.tail
        return {
            "capacity": v.capacity, "max_frame": v.max_frame,
            "head": head, "tail": tail, "fill": (tail - head) & 0xffffffffffffffff,
            "producers": live,
            "consumer_pid": (h.consumer & 0xffffff) or None,
            "frames_committed": frames, "bytes_committed": nbytes,
            "frames_aborted": aborted,
            "frames_received": h.received_frames, "bytes_received": h.received_bytes,
            "frames_abandoned": h.abandoned_frames, "bytes_abandoned": h.abandoned_bytes,
            "producer_waits": waits, "consumer_waits": h.consumer_waits,
            "producer_wakeups": h.producer_wakeups, "consumer_wakeups": h.consumer_wakeups,
        }

    def close(self):
        """Drop this handle.  Producers, consumers and frames made from it
        keep the mapping until they are gone."""
        self.closed = True

    def unlink(self):
        """Remove the segment's name.  Processes that have it open keep it."""
        os.unlink(self.seg.path)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __reduce__(self):
        return (_attach_in, (self.seg.name, os.path.dirname(self.seg.path)))

    def __repr__(self):
        return (f"<shmring.Ring {self.seg.name!r} capacity={self.seg.view.capacity} "
                f"max_frame={self.seg.view.max_frame}{' closed' if self.closed else ''}>")


def _open_segment(str path):
    """Open an existing segment for attach, with errors that say why."""
    try:
        return os.open(path, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise IncompatibleRing(f"{path} is a symbolic link; shmring does not follow "
                                   "links in the segment directory") from None
        if e.errno in (errno.EISDIR, errno.ENXIO):
            raise IncompatibleRing(f"{path} is not a regular file") from None
        if e.errno in (errno.EACCES, errno.EPERM):
            try:
                st = os.lstat(path)
                who = f"owned by uid {st.st_uid} with mode {_stat.S_IMODE(st.st_mode):04o}"
            except OSError:
                who = "not accessible"
            raise PermissionError(
                e.errno, f"cannot attach to {path}: it is {who} and this process runs as "
                f"uid {os.geteuid()}; create rings with mode= for other users", path) from None
        raise


def _attach_in(name, directory):
    """Unpickle a Ring: attach by name, in the directory it was created in."""
    if directory != segment_dir():
        os.environ["SHMRING_DIR"] = directory
    return Ring.attach(name)


def _reserve(int fd, uint64_t size, str path):
    """Give the segment its pages now, so a full tmpfs fails here with a clear
    error instead of SIGBUS on first touch."""
    try:
        os.posix_fallocate(fd, 0, size)
    except OSError as e:
        if e.errno in (errno.EOPNOTSUPP, errno.EINVAL):
            os.ftruncate(fd, size)
            return
        if e.errno in (errno.ENOSPC, errno.EFBIG):
            raise OSError(
                e.errno,
                f"no room for a {size}-byte ring in {os.path.dirname(path)} "
                f"({os.strerror(e.errno)}).  Docker's default /dev/shm is 64 MB: "
                "raise it with --shm-size, or pick a smaller capacity", path) from None
        raise


# --- Producer ---------------------------------------------------------------

cdef class Producer:
    """Writes frames into a ring.  Use one producer per thread."""

    def __init__(self):
        raise TypeError("use ring.producer()")

    @staticmethod
    cdef Producer open(Ring ring, object spin, bint nontemporal):
        cdef Producer p = Producer.__new__(Producer)
        p.closed = True                 # until it holds a slot
        p.seg = ring.live()
        p.ring = ring
        if _core.producer_open(&p.st, &p.seg.view) < 0:
            raise RingError(f"all {p.seg.view.nslots} producer slots of ring "
                            f"{p.seg.name!r} are in use")
        p.closed = False
        p.st.spin = spin
        p.nontemporal = nontemporal
        p.gen = _core.generation()
        return p

    cdef int enter(self) except -1:
        if self.closed:
            raise RingError("producer is closed")
        if self.busy:
            raise RingError("producer is in use by another thread; "
                            "give each thread its own producer")
        if self.gen != _core.generation():
            # A forked child: the slot and any open claim are the parent's.
            spin = self.st.spin
            if _core.producer_open(&self.st, &self.seg.view) < 0:
                self.closed = True
                raise RingError("no free producer slot for the forked child")
            self.st.spin = spin
            self.gen = _core.generation()
        return 0

    cdef int claim_or_raise(self, uint64_t nbytes, object type, object timeout) except -1:
        cdef uint32_t t = check_type(type)
        if self.st.reserved:
            raise RingError("this producer has an open reservation: commit or abort it first")
        if not self.claim_by(nbytes, t, deadline_for(timeout)):
            raise_producer_error(&self.st, TIMEOUT, nbytes)
        return 0

    cdef int claim_by(self, uint64_t nbytes, uint32_t type, int64_t deadline) except -1:
        """Claim nbytes: 1, or 0 if no room came before deadline.  The first
        try keeps the GIL; only a wait releases it."""
        cdef int st = _core.producer_claim(&self.st, nbytes, type, NOWAIT)
        if st == TIMEOUT and deadline != NOWAIT:
            self.busy = True
            try:
                with nogil:
                    st = OK if claim_until(&self.st, nbytes, type, deadline) else TIMEOUT
            finally:
                self.busy = False
        if st == TIMEOUT:
            return 0
        if st != OK:
            raise_producer_error(&self.st, st, nbytes)
        return 1

    def send(self, data, *, type=0, timeout=None):
        """Copy one frame into the ring.  data is any C-contiguous buffer.
        Raises Full if the timeout runs out, FrameTooLarge beyond max_frame."""
        cdef Py_buffer buf
        cdef uint8_t *dst
        cdef Py_ssize_t half
        self.enter()
        try:
            PyObject_GetBuffer(data, &buf, PyBUF_SIMPLE)
        except (BufferError, ValueError) as e:
            raise ValueError(f"send() needs a C-contiguous buffer ({e}); "
                             "send_array() takes any numpy array") from None
        try:
            self.claim_or_raise(buf.len, type, timeout)
            dst = _core.payload_at(&self.st.ring, self.st.res_pos)
            if LAB_BUILD:                   # lab builds copy in two halves, pausing between
                half = (buf.len // 2) & ~63     # on a line, so that both halves can stream
                _core.copy_payload(dst, <uint8_t *>buf.buf, half, self.nontemporal)
                _core.pause_mid_payload()
                _core.copy_payload(dst + half, <uint8_t *>buf.buf + half, buf.len - half,
                                   self.nontemporal)
            elif <uint64_t>buf.len < COPY_WITHOUT_GIL:
                memcpy(dst, buf.buf, buf.len)
            else:
                self.busy = True
                with nogil:
                    _core.copy_payload(dst, <uint8_t *>buf.buf, buf.len, self.nontemporal)
                self.busy = False
            _core.producer_commit(&self.st)
        finally:
            PyBuffer_Release(&buf)

    def reserve(self, nbytes, *, type=0, timeout=None):
        """Claim nbytes in the ring and return a writable Reservation to fill
        in place.  It commits on a clean exit from `with` (or .commit()) and
        aborts on an exception (or .abort())."""
        if nbytes < 0:
            raise ValueError(f"nbytes must be >= 0, not {nbytes}")
        self.enter()
        self.claim_or_raise(nbytes, type, timeout)
        return Reservation.wrap(self, None, None)

    def reserve_array(self, shape, dtype, *, type=0, timeout=None):
        """Like reserve(), for an array: .array() gives a writable ndarray of
        this shape and dtype, and the consumer's Frame.array() gets the same."""
        np = numpy()
        dt = np.dtype(dtype)
        shape = tuple(int(n) for n in ((shape,) if isinstance(shape, int) else shape))
        code = array_code(dt, shape)
        nbytes = dt.itemsize
        for n in shape:
            nbytes *= n
        self.enter()
        self.claim_or_raise(nbytes, type, timeout)
        write_array_header(&self.st, code, shape)
        return Reservation.wrap(self, dt, shape)

    def send_array(self, arr, *, type=0, timeout=None):
        """Send a numpy array so that its dtype and shape travel with it.
        Any strides are fine: the one copy goes straight into the ring."""
        cdef Py_buffer buf
        arr = numpy().asarray(arr)
        with self.reserve_array(arr.shape, arr.dtype, type=type, timeout=timeout) as r:
            if not (self.nontemporal and arr.flags.c_contiguous and NONTEMPORAL_MIN is not None
                    and arr.nbytes >= NONTEMPORAL_MIN):
                r.array()[...] = arr
                return
            PyObject_GetBuffer(arr, &buf, PyBUF_SIMPLE)
            try:
                self.busy = True
                with nogil:
                    _core.copy_payload(_core.payload_at(&self.st.ring, self.st.res_pos),
                                       <uint8_t *>buf.buf, buf.len, True)
                self.busy = False
            finally:
                PyBuffer_Release(&buf)

    def close(self):
        """Give the producer slot back, aborting an open reservation (whose
        views must be gone: BufferError otherwise)."""
        cdef Reservation r
        if self.closed:
            return
        if self.busy:
            raise RingError("producer is in use by another thread")
        r = self.reservation() if self.reservation is not None else None
        if r is not None and r.open and r.exports:
            raise BufferError(f"{r.exports} view(s) of the open reservation are still alive; "
                              "delete them before closing the producer")
        self.closed = True
        if self.gen == _core.generation():
            _core.producer_close(&self.st)

    def __dealloc__(self):
        if not self.closed and self.gen == _core.generation():
            _core.producer_close(&self.st)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __reduce__(self):
        return (_producer_in, (self.ring, self.st.spin, self.nontemporal))

    def __repr__(self):
        return f"<shmring.Producer slot={self.st.slot} of {self.seg.name!r}>"

    # --- batches: many frames per call, for small frames ----------------------

    def send_many(self, buffers, *, type=0, timeout=None):
        """Copy each buffer of an iterable into the ring as its own frame, in
        order.  timeout bounds the whole call.  Returns how many were sent:
        all of them, unless the timeout ran out first."""
        cdef Py_buffer buf
        cdef uint32_t t = check_type(type)
        cdef int64_t deadline = deadline_for(timeout)
        cdef Py_ssize_t sent = 0
        self.enter()
        if self.st.reserved:
            raise RingError("this producer has an open reservation: commit or abort it first")
        for data in buffers:
            try:
                PyObject_GetBuffer(data, &buf, PyBUF_SIMPLE)
            except (BufferError, ValueError) as e:
                raise ValueError(f"send_many() needs C-contiguous buffers ({e})") from None
            try:
                if not self.claim_by(buf.len, t, deadline):
                    return sent
                _core.copy_payload(_core.payload_at(&self.st.ring, self.st.res_pos),
                                   <uint8_t *>buf.buf, buf.len, self.nontemporal)
                _core.producer_commit(&self.st)
            finally:
                PyBuffer_Release(&buf)
            sent += 1
        return sent


def _producer_in(ring, spin, nontemporal=False):
    """Unpickle a Producer: a fresh producer on the same ring."""
    return ring.producer(spin=spin, nontemporal=nontemporal)


cdef bint forbidden(object dt):
    """A dtype no frame may carry: objects, structs, subarrays, empty items."""
    return dt.hasobject or dt.fields is not None or dt.subdtype is not None or dt.itemsize == 0


cdef object array_code(object dt, tuple shape):
    if forbidden(dt):
        raise ValueError(f"cannot send arrays of dtype {dt}: plain numeric, bytes "
                         "and datetime dtypes only")
    code = dt.str.encode("ascii")
    if len(code) > 8:
        raise ValueError(f"dtype {dt} has a name longer than 8 characters")
    if len(shape) > MAX_NDIM:
        raise ValueError(f"arrays of at most {MAX_NDIM} dimensions, not {len(shape)}")
    for n in shape:
        if not 0 <= n <= 0xffffffff:
            raise ValueError(f"array dimension {n} out of range")
    return code


def dtype_from_code(code):
    """The dtype named by a dtype.str code as a frame header carries it (up to
    8 bytes, NUL padded), if it is one send_array() accepts; ValueError
    otherwise.  The code is untrusted: it is matched before numpy parses it."""
    try:
        text = code.rstrip(b"\0").decode("ascii")
        if not _DTYPE_CODE.match(text):
            raise ValueError
        dt = numpy().dtype(text)
        if dt.str != text:
            raise ValueError
    except Exception:
        raise ValueError(f"an unreadable dtype {bytes(code)!r}") from None
    if forbidden(dt):
        raise ValueError(f"a forbidden dtype {dt}")
    return dt


cdef void write_array_header(ProducerState *p, bytes code, tuple shape) noexcept:
    cdef RecordHeader *rec = _core.header_at(&p.ring, p.res_pos)
    cdef Py_ssize_t i
    memset(rec.dtype, 0, 8)
    memcpy(rec.dtype, <char *>code, len(code))
    for i in range(MAX_NDIM):
        rec.shape[i] = shape[i] if i < len(shape) else 0
    rec.ndim = <uint8_t>len(shape) if shape else 0
    rec.flags = 1                       # an array, even when 0-d


cdef int raise_producer_error(ProducerState *p, int st, uint64_t nbytes) except -1:
    if st == TIMEOUT:
        raise Full(f"no room for a {nbytes}-byte frame before the timeout")
    if st == ERR_TOO_LARGE:
        raise FrameTooLarge(f"frame of {nbytes} bytes exceeds max_frame={p.ring.max_frame}")
    if st == ERR_CONSUMER_GONE:
        raise ConsumerGone("the ring's consumer died while this producer waited for space")
    raise RingCorrupted(f"ring failed a consistency check (status {st})")


cdef int raise_consumer_error(int st, ConsumerState *c=NULL) except -1:
    if st == TIMEOUT:
        raise Empty("no frame arrived before the timeout")
    raise RingCorrupted("the ring's shared memory holds impossible values; "
                        "it cannot be trusted any more" + corrupt_detail(c))


cdef str corrupt_detail(ConsumerState *c):
    """Where the consumer stood and what it found there, for RingCorrupted.
    Plain reads: the values are only reported."""
    cdef RingView *v
    cdef RecordHeader *rec
    cdef uint64_t pos, word
    if c == NULL:
        return ""
    v = &c.ring
    pos = c.cursor
    msg = (f": consumer at position {pos} (offset {pos & v.mask} of the data area), "
           f"head {v.hdr.head}, tail {v.hdr.tail}, capacity {v.capacity}")
    if pos & 63:
        return msg + "; that position is not 64-byte aligned"
    rec = _core.header_at(v, pos)
    word = rec.commit
    tag_ok = (word & ~<uint64_t>63) == ((pos ^ v.secret) & ~<uint64_t>63)
    return msg + (f"; record header there: commit {word:#x} (position tag "
                  f"{'matches' if tag_ok else 'wrong'}, state {word & 63}), "
                  f"length {rec.length}, slot {rec.slot}")


cdef int claim_until(ProducerState *p, uint64_t nbytes, uint32_t type,
                     int64_t deadline) except -1 nogil:
    """Claim, waiting as long as deadline allows: 1 if claimed, 0 if not."""
    cdef int st
    while True:
        st = _core.producer_claim(p, nbytes, type, deadline)
        if st == OK:
            return 1
        if st == TIMEOUT:
            return 0
        with gil:
            if st != INTERRUPTED:
                raise_producer_error(p, st, nbytes)
            PyErr_CheckSignals()


cdef int receive_until(ConsumerState *c, uint64_t *pos, int64_t deadline) except -1 nogil:
    """Receive, waiting as long as deadline allows: 1 if received, 0 if not."""
    cdef int st
    while True:
        st = _core.consumer_receive(c, pos, deadline)
        if st == OK:
            return 1
        if st == TIMEOUT:
            return 0
        with gil:
            if st != INTERRUPTED:
                raise_consumer_error(st, c)
            PyErr_CheckSignals()


# --- Reservation ------------------------------------------------------------

cdef class Reservation:
    """Writable space claimed in the ring, filled in place (zero copy)."""

    def __init__(self):
        raise TypeError("use producer.reserve(nbytes)")

    @staticmethod
    cdef Reservation wrap(Producer producer, object dtype, object shape):
        cdef Reservation r = Reservation.__new__(Reservation)
        r.producer = producer
        r.pos = producer.st.res_pos
        r.data = _core.payload_at(&producer.st.ring, producer.st.res_pos)
        r.length = producer.st.res_len
        producer.reservation = weakref.ref(r)
        r.gen = producer.gen
        r.open = True
        r.dtype = dtype
        r.shape = shape
        return r

    def __getbuffer__(self, Py_buffer *buffer, int flags):
        if not self.open:
            raise ValueError("reservation is already committed or aborted")
        PyBuffer_FillInfo(buffer, self, self.data, self.length, 0, flags)
        self.exports += 1

    def __releasebuffer__(self, Py_buffer *buffer):
        self.exports -= 1

    def __len__(self):
        return self.length

    def array(self):
        """A writable ndarray over the reservation: the reserve_array() shape
        and dtype, else 1-D uint8."""
        np = numpy()
        if self.dtype is None:
            return np.frombuffer(self, dtype=np.uint8)
        return np.frombuffer(self, dtype=self.dtype).reshape(self.shape)

    cdef int finish(self, bint keep) except -1:
        cdef Producer p = self.producer
        if not self.open:
            raise RingError("reservation is already committed or aborted")
        if self.gen != _core.generation():
            raise RingError("this reservation was made before fork, in the parent; "
                            "only the parent can commit or abort it")
        if self.exports:
            raise BufferError(f"{self.exports} view(s) of this reservation are still "
                              "alive; delete them before commit or abort")
        self.open = False
        if p.closed or not p.st.reserved or p.st.res_pos != self.pos:
            raise RingError("reservation is no longer open: its producer was closed")
        if keep:
            _core.producer_commit(&p.st)
        else:
            _core.producer_abort(&p.st)
        return 0

    def commit(self):
        """Deliver the frame."""
        self.finish(True)

    def abort(self):
        """Discard the frame; it is never delivered."""
        self.finish(False)

    @property
    def committed(self):
        return not self.open

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if not self.open:
            return False
        if exc_type is None:
            self.finish(True)
        elif not self.exports and self.gen == _core.generation():
            self.finish(False)
        return False

    def __dealloc__(self):
        # Dropped while open: abort, so that the consumer is not held up.
        if self.open and self.gen == _core.generation() and self.producer is not None \
                and self.producer.st.reserved and not self.producer.closed \
                and self.producer.st.res_pos == self.pos:
            _core.producer_abort(&self.producer.st)


# --- Consumer ---------------------------------------------------------------

cdef class Consumer:
    """Reads frames in place.  Use it, and release its frames, from one thread."""

    def __init__(self):
        raise TypeError("use ring.consumer()")

    @staticmethod
    cdef Consumer open(Ring ring, object spin, object stall_timeout):
        cdef Consumer c = Consumer.__new__(Consumer)
        if not stall_timeout > 0:
            raise ValueError(f"stall_timeout must be > 0, not {stall_timeout!r}")
        c.closed = True
        c.dropped = []
        c.seg = ring.live()
        c.ring = ring
        if _core.consumer_open(&c.st, &c.seg.view) < 0:
            raise ConsumerExists(f"ring {c.seg.name!r} already has a live consumer "
                                 f"(pid {c.seg.view.hdr.consumer & 0xffffff})")
        c.closed = False
        c.st.spin = spin
        c.st.stall_ns = <int64_t>(min(stall_timeout, 1e9) * 1e9)
        c.gen = _core.generation()
        return c

    cdef int enter(self) except -1:
        if self.closed:
            raise RingError("consumer is closed")
        if self.gen != _core.generation():
            raise RingError("this consumer belongs to the parent process; "
                            "a forked child must not use it")
        if self.busy:
            raise RingError("consumer is busy in recv() on another thread")
        return 0

    cdef Frame next_frame(self, object timeout):
        cdef uint64_t pos
        self.enter()
        if not self.take(&pos, deadline_for(timeout)):
            raise_consumer_error(TIMEOUT)
        return self.make_frame(pos)

    cdef Frame make_frame(self, uint64_t pos):
        cdef RecordHeader *rec = _core.header_at(&self.st.ring, pos)
        cdef Frame f = Frame.__new__(Frame)
        f.consumer = self
        f.pos = pos
        f.data = _core.payload_at(&self.st.ring, pos)
        f.length = self.st.delivered_length
        f._type = rec.type
        f.ndim = rec.ndim if rec.flags & 1 else RAW
        return f

    def recv(self, timeout=None):
        """The next frame, a zero-copy read-only view.  Release it when done
        (or use `with`).  Raises Empty if the timeout runs out."""
        return self.next_frame(timeout)

    def recv_bytes(self, timeout=None):
        """The next frame's contents as bytes, released at once."""
        cdef Frame f = self.next_frame(timeout)
        data = (<char *>f.data)[:f.length]
        f.release()
        return data

    def __iter__(self):
        return self

    def __next__(self):
        return self.next_frame(None)

    cdef int release_dropped(self) except -1:
        """Release the frames other threads dropped while recv() waited."""
        while self.dropped:
            if _core.consumer_release(&self.st, self.dropped.pop()) != OK:
                raise_consumer_error(ERR_CORRUPT, &self.st)
        return 0

    cdef int give_back(self, uint64_t pos) except -1:
        if self.closed or self.gen != _core.generation():
            return 0                    # the next consumer redelivers it
        if self.busy:
            raise RingError("consumer is busy in recv() on another thread")
        if _core.consumer_release(&self.st, pos) != OK:
            raise_consumer_error(ERR_CORRUPT, &self.st)
        return 0

    @property
    def held(self):
        """Frames delivered and not yet released."""
        return self.st.held

    def close(self):
        """Stop being the consumer.  Frames not yet released will be
        delivered again to the next consumer."""
        if self.closed:
            return
        if self.busy:
            raise RingError("consumer is busy in recv() on another thread")
        self.closed = True
        if self.gen == _core.generation():
            _core.consumer_close(&self.st)

    def __dealloc__(self):
        if not self.closed and self.gen == _core.generation():
            _core.consumer_close(&self.st)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __reduce__(self):
        raise TypeError("a Consumer cannot be pickled: open one in the process that reads")

    # --- batches: many frames per call, for small frames ----------------------

    cdef int take(self, uint64_t *pos, int64_t deadline) except -1:
        """Receive one record: 1, or 0 if none came before deadline."""
        cdef int st = _core.consumer_receive(&self.st, pos, NOWAIT)
        if st == TIMEOUT and deadline != NOWAIT:
            self.busy = True
            try:
                with nogil:
                    st = OK if receive_until(&self.st, pos, deadline) else TIMEOUT
            finally:
                self.busy = False
            self.release_dropped()
        if st == TIMEOUT:
            return 0
        if st != OK:
            raise_consumer_error(st, &self.st)
        return 1

    def recv_many(self, Py_ssize_t max_frames, timeout=None):
        """Up to max_frames frames, zero copy: waits as long as timeout for
        the first, then takes only frames already committed.  An empty list
        if the timeout runs out.  Release each frame as after recv();
        dropping the list releases those still held."""
        cdef uint64_t pos
        cdef int64_t deadline = deadline_for(timeout)
        cdef list frames = []
        if max_frames < 1:
            raise ValueError(f"max_frames must be >= 1, not {max_frames}")
        self.enter()
        while len(frames) < max_frames and self.take(&pos, deadline if not frames else NOWAIT):
            frames.append(self.make_frame(pos))
        return frames

    def recv_bytes_many(self, Py_ssize_t max_frames, timeout=None):
        """Like recv_many(), but each frame's contents as bytes, its space
        released at once: the cheapest way to drain small frames."""
        cdef uint64_t pos
        cdef int64_t deadline = deadline_for(timeout)
        cdef list out = []
        if max_frames < 1:
            raise ValueError(f"max_frames must be >= 1, not {max_frames}")
        self.enter()
        while len(out) < max_frames and self.take(&pos, deadline if not out else NOWAIT):
            try:
                out.append((<char *>_core.payload_at(&self.st.ring, pos))[:self.st.delivered_length])
            finally:
                if _core.consumer_release(&self.st, pos) != OK:
                    raise_consumer_error(ERR_CORRUPT)
        return out


# --- Frame ------------------------------------------------------------------

@cython.freelist(64)
cdef class Frame:
    """A received frame: a read-only view of its record in shared memory."""

    def __init__(self):
        raise TypeError("frames come from consumer.recv()")

    cdef int check(self) except -1:
        if self.released:
            raise ValueError("frame was released; its memory belongs to the ring again")
        return 0

    def __getbuffer__(self, Py_buffer *buffer, int flags):
        self.check()
        PyBuffer_FillInfo(buffer, self, <void *>self.data, self.length, 1, flags)
        self.exports += 1

    def __releasebuffer__(self, Py_buffer *buffer):
        self.exports -= 1

    def __len__(self):
        self.check()
        return self.length

    @property
    def type(self):
        return self._type

    @property
    def released(self):
        return self.released

    @property
    def producer(self):
        """The slot index of the producer that wrote the frame."""
        self.check()
        return _core.header_at(&self.consumer.st.ring, self.pos).slot

    @property
    def layout(self):
        """(dtype, shape) as sent by send_array() or reserve_array(), or None
        for a frame sent as bytes; validated like array(), without making one."""
        self.check()
        return None if self.ndim == RAW else self.array_meta(numpy())

    def array(self):
        """A read-only ndarray over the frame: dtype and shape as sent by
        send_array(), otherwise 1-D uint8."""
        self.check()
        np = numpy()
        if self.ndim == RAW:
            return np.frombuffer(self, dtype=np.uint8)
        dt, shape = self.array_meta(np)
        return np.frombuffer(self, dtype=dt).reshape(shape)

    cdef tuple array_meta(self, np):
        """Read and validate dtype and shape: the producer's header is untrusted."""
        cdef RecordHeader *rec = _core.header_at(&self.consumer.st.ring, self.pos)
        cdef int i
        try:
            dt = dtype_from_code((<char *>rec.dtype)[:8])
        except ValueError as e:
            raise RingCorrupted(f"frame at position {self.pos} carries {e}") from None
        if self.ndim > MAX_NDIM:
            raise RingCorrupted(f"frame claims {self.ndim} dimensions")
        shape = tuple(rec.shape[i] for i in range(self.ndim))
        n = dt.itemsize
        for d in shape:
            n *= d
        if n != self.length:
            raise RingCorrupted(f"frame of {self.length} bytes cannot hold {dt} {shape}")
        return dt, shape

    def release(self):
        """Give the frame's space back to the ring.  Views of it must be gone
        first (BufferError otherwise); releasing twice does nothing."""
        if self.released:
            return
        if self.exports:
            raise BufferError(f"{self.exports} view(s) of this frame are still alive; "
                              "delete them before release")
        try:
            self.consumer.give_back(self.pos)
        except RingCorrupted:
            self.released = True        # given back as far as a corrupted ring allows
            raise
        self.released = True

    def __dealloc__(self):
        # Dropped unreleased: give the space back (views keep a frame alive).
        # While another thread waits in recv(), that thread releases it later.
        if self.released or self.consumer is None or self.consumer.closed \
                or self.consumer.gen != _core.generation():
            return
        if self.consumer.busy:
            self.consumer.dropped.append(self.pos)
        else:
            _core.consumer_release(&self.consumer.st, self.pos)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.release()

    def __bytes__(self):
        self.check()
        return (<char *>self.data)[:self.length]

    def __repr__(self):
        state = "released" if self.released else f"{self.length} bytes"
        return f"<shmring.Frame type={self._type} {state}>"


# --- the Cython API ---------------------------------------------------------

cdef ProducerState *producer_state(Producer producer) except NULL:
    producer.enter()
    return &producer.st

cdef ConsumerState *consumer_state(Consumer consumer) except NULL:
    consumer.enter()
    return &consumer.st

cdef int claim(ProducerState *p, uint64_t nbytes, uint32_t type, double timeout,
               uint8_t **data) except -1 nogil:
    if p.reserved:
        with gil:
            raise RingError("this producer has an open claim: commit or abort it first")
    if not claim_until(p, nbytes, type, _core.deadline_after(timeout)):
        return 0
    data[0] = _core.payload_at(&p.ring, p.res_pos)
    return 1

cdef int commit(ProducerState *p) except -1 nogil:
    if not p.reserved:
        with gil:
            raise RingError("commit without an open claim")
    _core.producer_commit(p)
    return 1

cdef int abort(ProducerState *p) except -1 nogil:
    if not p.reserved:
        with gil:
            raise RingError("abort without an open claim")
    _core.producer_abort(p)
    return 1

cdef int receive(ConsumerState *c, double timeout, Received *out) except -1 nogil:
    cdef RecordHeader *rec
    if not receive_until(c, &out.pos, _core.deadline_after(timeout)):
        return 0
    rec = _core.header_at(&c.ring, out.pos)
    out.data = _core.payload_at(&c.ring, out.pos)
    out.length = c.delivered_length
    out.type = rec.type
    return 1

cdef int release(ConsumerState *c, uint64_t pos) except -1 nogil:
    if _core.consumer_release(c, pos) != OK:
        with gil:
            raise_consumer_error(ERR_CORRUPT, c)
    return 1

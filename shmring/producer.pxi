# Producer and Reservation: frames into the ring, copied once or filled in place.

cdef uint64_t COPY_WITHOUT_GIL = 64 * 1024   # larger copies let other threads run
# A nontemporal producer streams copies from this size up (None: it cannot).
NONTEMPORAL_MIN = _core.stream_threshold() or None


cdef uint32_t check_type(object type) except? 0xffffffff:
    if not isinstance(type, int) or not 0 <= type <= 0xfffffffe:
        raise ValueError(f"type must be an integer in [0, 2**32 - 2], not {type!r}")
    return type


@cython.no_gc_clear   # __dealloc__ uses the mapping: the cyclic GC must not drop seg first
cdef class Producer:
    """Writes frames into a ring.  Use one producer per thread."""

    def __init__(self):
        raise TypeError("use ring.producer()")

    @staticmethod
    cdef Producer open(Ring ring, uint32_t spin, bint nontemporal, bint drops):
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
        p.drops = drops
        p.gen = _core.generation()
        return p

    cdef int ensure_usable(self) except -1:
        """Refuse a closed or busy producer; in a forked child, take a slot of
        its own first (the one it holds, and any open claim, are the parent's)."""
        cdef uint32_t spin
        if self.closed:
            raise RingError("producer is closed")
        if self.busy:
            raise_status(PRODUCER_BUSY)
        if self.gen != _core.generation():
            spin = self.st.spin
            if _core.producer_open(&self.st, &self.seg.view) < 0:
                self.closed = True
                raise RingError("no free producer slot for the forked child")
            self.st.spin = spin
            self.gen = _core.generation()
        return 0

    cdef int64_t room_deadline(self, object timeout) except? -1:
        """deadline_for(timeout), except that a dropping producer's default
        is not to wait: None means "as the producer's on_full says"."""
        if timeout is None and self.drops:
            return NOWAIT
        return deadline_for(timeout)

    cdef int open_record(self, uint64_t nbytes, uint32_t type, int64_t deadline,
                         bint must) except -1:
        """Claim nbytes: 1, or 0 if no room came before deadline (Full if must,
        unless the producer drops: then the drop is counted in its slot).
        The first try keeps the GIL; only a wait releases it."""
        cdef int st
        if self.st.reserved:
            raise_status(OPEN_CLAIM)
        st = _core.producer_claim(&self.st, nbytes, type, NOWAIT)
        if st == TIMEOUT and deadline != NOWAIT:
            self.busy = True
            try:
                with nogil:
                    st = OK if claim_blocking(&self.st, nbytes, type, deadline) else TIMEOUT
            finally:
                self.busy = False
        if st == OK:
            return 1
        if st == TIMEOUT and self.drops:
            _core.producer_drop(&self.st)
            return 0
        if st != TIMEOUT or must:
            raise_status(st, &self.st, NULL, nbytes)
        return 0

    cdef int copy_in(self, object data, uint32_t type, int64_t deadline, bint must) except -1:
        """Claim a frame for a buffer, copy it in and commit: the one way a
        copy enters the ring.  Large copies release the GIL.  Returns 0 if the
        claim ran out of time."""
        cdef Py_buffer buf
        cdef bint ok = False
        try:
            PyObject_GetBuffer(data, &buf, PyBUF_SIMPLE)
        except (BufferError, ValueError) as e:
            raise ValueError(f"frames must be C-contiguous buffers ({e}); "
                             "send_array() takes any numpy array") from None
        except TypeError:
            raise TypeError(f"frames must be bytes-like objects (bytes, bytearray, memoryview, "
                            f"numpy arrays), not {data.__class__.__name__}; encode strings "
                            "first") from None
        try:
            if not self.open_record(buf.len, type, deadline, must):
                return 0
            self.fill(<uint8_t *>buf.buf, buf.len)
            _core.producer_commit(&self.st)
            ok = True
        finally:
            PyBuffer_Release(&buf)
        return ok

    cdef int fill(self, const uint8_t *src, size_t n) except -1:
        """Copy n bytes into the open claim (copy_payload: streaming stores for
        a nontemporal producer's large copies, two halves in lab builds)."""
        if n < COPY_WITHOUT_GIL:
            _core.copy_payload(self.st.res_data, src, n, self.nontemporal)
            return 0
        self.busy = True
        with nogil:
            _core.copy_payload(self.st.res_data, src, n, self.nontemporal)
        self.busy = False
        return 0

    def send(self, data, *, type=0, timeout=None):
        """Copy one frame into the ring and return True.  data is any
        C-contiguous buffer.  Raises Full if the timeout runs out (a dropping
        producer returns False instead), FrameTooLarge beyond max_frame,
        Sealed once the ring is sealed."""
        cdef uint32_t t = check_type(type)
        cdef int64_t deadline = self.room_deadline(timeout)
        self.ensure_usable()
        return bool(self.copy_in(data, t, deadline, True))

    def send_many(self, buffers, *, type=0, timeout=None):
        """Copy each buffer of an iterable into the ring as its own frame, in
        order.  timeout bounds the whole call.  Returns how many were sent:
        all of them, unless the timeout ran out first (a dropping producer
        drops each frame that finds no room, and goes on)."""
        cdef Py_ssize_t sent = 0
        cdef uint32_t t = check_type(type)
        cdef int64_t deadline = self.room_deadline(timeout)
        self.ensure_usable()
        if self.st.reserved:
            raise_status(OPEN_CLAIM)
        try:
            for data in buffers:
                if self.copy_in(data, t, deadline, False):
                    sent += 1
                elif not self.drops:
                    break
        except Sealed as e:
            raise Sealed(f"{e}; {sent} frame(s) of this call were sent before the seal") from None
        return sent

    def reserve(self, nbytes, *, type=0, timeout=None):
        """Claim nbytes in the ring and return a writable Reservation to fill
        in place.  It commits on a clean exit from `with` (or .commit()) and
        aborts on an exception (or .abort()).  A dropping producer returns
        None for a frame it dropped."""
        cdef uint32_t t = check_type(type)
        cdef int64_t deadline = self.room_deadline(timeout)
        if nbytes < 0:
            raise ValueError(f"nbytes must be >= 0, not {nbytes}")
        self.ensure_usable()
        if not self.open_record(nbytes, t, deadline, True):
            return None
        return Reservation.wrap(self, None, None)

    def reserve_array(self, shape, dtype, *, type=0, timeout=None):
        """Like reserve(), for an array: .array() gives a writable ndarray of
        this shape and dtype, and the consumer's Frame.array() gets the same."""
        np = numpy()
        dt = np.dtype(dtype)
        shape = tuple(int(n) for n in ((shape,) if isinstance(shape, int) else shape))
        code = dtype_code(dt)
        nbytes = array_nbytes(dt, shape)
        if nbytes > self.seg.view.max_frame:
            raise FrameTooLarge(f"array of {nbytes} bytes exceeds max_frame={self.seg.view.max_frame}")
        t = check_type(type)
        deadline = self.room_deadline(timeout)
        self.ensure_usable()
        if not self.open_record(nbytes, t, deadline, True):
            return None
        write_array_header(_core.header_at(&self.st.ring, self.st.res_pos), code, shape)
        return Reservation.wrap(self, dt, shape)

    def send_array(self, arr, *, type=0, timeout=None):
        """Send a numpy array so that its dtype and shape travel with it, and
        return True (False: a dropping producer dropped it).  Any strides are
        fine: the one copy goes straight into the ring."""
        cdef Py_buffer buf
        arr = numpy().asarray(arr)
        r = self.reserve_array(arr.shape, arr.dtype, type=type, timeout=timeout)
        if r is None:
            return False
        with r:
            if not arr.flags.c_contiguous:
                r.array()[...] = arr        # numpy's strided copy
                return True
            PyObject_GetBuffer(arr, &buf, PyBUF_SIMPLE)
            try:
                self.fill(<uint8_t *>buf.buf, buf.len)
            finally:
                PyBuffer_Release(&buf)
        return True

    def close(self):
        """Give the producer slot back, aborting an open reservation (whose
        views must be gone: BufferError otherwise)."""
        cdef Reservation r
        if self.closed:
            return
        if self.busy:
            raise_status(PRODUCER_BUSY)
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

    @property
    def on_full(self):
        """"wait" or "drop": what a frame that finds the ring full does."""
        return "drop" if self.drops else "wait"

    def __reduce__(self):
        return (_producer_in, (self.ring, self.st.spin, self.nontemporal, self.on_full))

    def __repr__(self):
        drops = " on_full='drop'" if self.drops else ""
        return f"<shmring.Producer slot={self.st.slot} of {self.seg.name!r}{drops}>"


def _producer_in(ring, spin, nontemporal=False, on_full="wait"):
    """Unpickle a Producer: a fresh producer on the same ring."""
    return ring.producer(spin=spin, nontemporal=nontemporal, on_full=on_full)


@cython.no_gc_clear   # __dealloc__ uses the mapping: the cyclic GC must not drop seg first
cdef class Reservation:
    """Writable space claimed in the ring, filled in place (zero copy)."""

    def __init__(self):
        raise TypeError("use producer.reserve(nbytes)")

    @staticmethod
    cdef Reservation wrap(Producer producer, object dtype, object shape):
        cdef Reservation r = Reservation.__new__(Reservation)
        r.producer = producer
        r.pos = producer.st.res_pos
        r.length = producer.st.res_len
        producer.reservation = weakref.ref(r)
        r.gen = producer.gen
        r.open = True
        r.dtype = dtype
        r.shape = shape
        return r

    cdef int check_own(self) except -1:
        """Every way to the memory checks what commit checks: the claim is
        still open, in this process, and still this reservation's (a closed
        producer's later claims are not)."""
        cdef Producer p = self.producer
        if not self.open:
            raise RingError("reservation is already committed or aborted")
        if self.gen != _core.generation():
            raise RingError("this reservation was made before fork, in the parent; "
                            "only the parent can use it")
        if p.closed or not p.st.reserved or p.st.res_pos != self.pos:
            raise RingError("reservation is no longer open: its producer was closed")
        return 0

    def __getbuffer__(self, Py_buffer *buffer, int flags):
        if not self.open:
            raise ValueError("reservation is already committed or aborted")
        self.check_own()
        PyBuffer_FillInfo(buffer, self, self.producer.st.res_data, self.length, 0, flags)
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
        self.check_own()
        if self.exports:
            raise BufferError(f"{self.exports} view(s) of this reservation are still "
                              "alive; delete them before commit or abort")
        self.open = False
        if keep:
            _core.producer_commit(&self.producer.st)
        else:
            _core.producer_abort(&self.producer.st)
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

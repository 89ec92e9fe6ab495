# Producer and Reservation: frames into the ring, copied once or filled in place.

cdef uint64_t COPY_WITHOUT_GIL = 64 * 1024   # larger copies let other threads run
# A nontemporal producer streams copies from this size up (None: it cannot).
NONTEMPORAL_MIN = _core.stream_threshold() or None


cdef double ROOM_WATCHDOG = 1.0    # an awaiting producer looks at the ring at least this often


cdef uint32_t check_type(object type) except? 0xffffffff:
    if not isinstance(type, int) or not 0 <= type <= 0xfffffffe:
        raise ValueError(f"type must be an integer in [0, 2**32 - 2], not {type!r}")
    return type


cdef int frame_buffer(object data, Py_buffer *buf) except -1:
    """Export the bytes of a frame to send, with the errors send() documents."""
    try:
        PyObject_GetBuffer(data, buf, PyBUF_SIMPLE)
    except (BufferError, ValueError) as e:
        raise ValueError(f"frames must be C-contiguous buffers ({e}); "
                         "send_array() takes any numpy array") from None
    except TypeError:
        raise TypeError(f"frames must be bytes-like objects (bytes, bytearray, memoryview, "
                        f"numpy arrays), not {data.__class__.__name__}; encode strings "
                        "first") from None
    return 0


cdef tuple array_claim(object shape, object dtype, uint64_t max_frame):
    """(dtype, shape, header code, nbytes) of an array frame, checked."""
    np = numpy()
    dt = np.dtype(dtype)
    shape = tuple(int(n) for n in ((shape,) if isinstance(shape, int) else shape))
    code = dtype_code(dt)
    nbytes = array_nbytes(dt, shape)
    if nbytes > max_frame:
        raise FrameTooLarge(f"array of {nbytes} bytes exceeds max_frame={max_frame}")
    return dt, shape, code, nbytes


cdef object sealed_after(object e, Py_ssize_t sent):
    """The Sealed of a send_many() or asend_many() that sent some frames first."""
    return Sealed(f"{e}; {sent} frame(s) of this call were sent before the seal")


@cython.no_gc_clear   # __dealloc__ uses the mapping: the cyclic GC must not drop seg first
cdef class Producer:
    """Writes frames into a ring.  Use one producer per thread."""

    def __init__(self):
        raise TypeError("use ring.producer()")

    @staticmethod
    cdef Producer open(Ring ring, uint32_t spin, bint nontemporal, bint drops, bint rewind):
        cdef Producer p = Producer.__new__(Producer)
        p.closed = True                 # until it holds a slot
        p.seg = ring.live()
        p.ring = ring
        if _core.producer_open(&p.st, &p.seg.view) < 0:
            raise RingError(f"all {p.seg.view.nslots} producer slots of ring "
                            f"{p.seg.name!r} are in use")
        p.closed = False
        p.st.spin = spin
        p.st.rewind = rewind
        p.nontemporal = nontemporal
        p.drops = drops
        p.gen = _core.generation()
        return p

    cdef int ensure_usable(self) except -1:
        """Refuse a closed or busy producer; in a forked child, take a slot of
        its own first (the one it holds, and any open claim, are the parent's)."""
        cdef uint32_t spin
        cdef bint rewind
        if self.closed:
            raise RingError("producer is closed")
        if self.busy:
            raise_status(PRODUCER_BUSY)
        if self.gen != _core.generation():
            spin, rewind = self.st.spin, self.st.rewind
            if self.st.bell_fd >= 0:
                c_close(self.st.bell_fd)    # our copy of the parent's socket
            if _core.producer_open(&self.st, &self.seg.view) < 0:
                self.closed = True
                raise RingError("no free producer slot for the forked child")
            self.st.spin, self.st.rewind = spin, rewind
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
        """Claim nbytes: 1, or 0 if no room came before deadline (no_room).
        The first try keeps the GIL; only a wait releases it."""
        cdef bint claimed
        if self.try_claim(nbytes, type):
            return 1
        if deadline != NOWAIT:
            self.busy = True
            try:
                with nogil:
                    claimed = claim_blocking(&self.st, nbytes, type, deadline)
            finally:
                self.busy = False
            if claimed:
                return 1
        return self.no_room(nbytes, must)

    cdef int try_claim(self, uint64_t nbytes, uint32_t type) except -1:
        """Claim nbytes if there is room now: 1, or 0 (nothing counted)."""
        cdef int st
        if self.st.reserved:
            raise_status(OPEN_CLAIM)
        st = _core.producer_claim(&self.st, nbytes, type, NOWAIT)
        if st == OK:
            return 1
        if st != TIMEOUT:
            raise_status(st, &self.st, NULL, nbytes)
        return 0

    cdef int no_room(self, uint64_t nbytes, bint must) except -1:
        """No room came before the deadline: a dropping producer counts the
        drop in its slot; otherwise Full if must.  0."""
        if self.drops:
            _core.producer_drop(&self.st)
        elif must:
            raise_status(TIMEOUT, &self.st, NULL, nbytes)
        return 0

    cdef int copy_in(self, object data, uint32_t type, int64_t deadline, bint must) except -1:
        """Claim a frame for a buffer, copy it in and commit: the one way a
        copy enters the ring.  Large copies release the GIL.  Returns 0 if the
        claim ran out of time."""
        cdef Py_buffer buf
        cdef bint ok = False
        frame_buffer(data, &buf)
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
            raise sealed_after(e, sent) from None
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
        dt, shape, code, nbytes = array_claim(shape, dtype, self.seg.view.max_frame)
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
        arr = numpy().asarray(arr)
        r = self.reserve_array(arr.shape, arr.dtype, type=type, timeout=timeout)
        if r is None:
            return False
        with r:
            self.fill_array(r, arr)
        return True

    cdef int fill_array(self, Reservation r, object arr) except -1:
        """Copy arr into the open reservation r of its shape and dtype."""
        cdef Py_buffer buf
        if not arr.flags.c_contiguous:
            r.array()[...] = arr        # numpy's strided copy
            return 0
        PyObject_GetBuffer(arr, &buf, PyBUF_SIMPLE)
        try:
            self.fill(<uint8_t *>buf.buf, buf.len)
        finally:
            PyBuffer_Release(&buf)
        return 0

    # --- awaitable sends (asyncio, trio, anyio): they await room -------------

    async def asend(self, data, *, type=0, timeout=None):
        """Awaitable send(): awaits room while the ring is full, without a
        thread or polling, and returns True.  Raises Full if the timeout runs
        out (a dropping producer returns False instead, and by default does
        not await room at all), Sealed once the ring is sealed."""
        cdef uint32_t t = check_type(type)
        cdef int64_t deadline = self.room_deadline(timeout)
        self.ensure_usable()
        return await _send_awaiting(self, data, t, deadline, True)

    async def asend_many(self, buffers, *, type=0, timeout=None):
        """Awaitable send_many(): returns how many were sent, all of them
        unless the timeout (for the whole call) ran out first (a dropping
        producer drops each frame that finds no room, and goes on)."""
        cdef Py_ssize_t sent = 0
        cdef uint32_t t = check_type(type)
        cdef int64_t deadline = self.room_deadline(timeout)
        self.ensure_usable()
        if self.st.reserved:
            raise_status(OPEN_CLAIM)
        try:
            for data in buffers:
                if await _send_awaiting(self, data, t, deadline, False):
                    sent += 1
                elif not self.drops:
                    break
        except Sealed as e:
            raise sealed_after(e, sent) from None
        return sent

    async def asend_array(self, arr, *, type=0, timeout=None):
        """Awaitable send_array(): True, or False if a dropping producer
        dropped it."""
        arr = numpy().asarray(arr)
        dt, shape, code, nbytes = array_claim(arr.shape, arr.dtype, self.seg.view.max_frame)
        async with PendingReservation.make(self, nbytes, type, timeout, dt, shape) as r:
            if r is None:
                return False
            self.fill_array(r, arr)
        return True

    def areserve(self, nbytes, *, type=0, timeout=None):
        """Awaitable reserve(): `async with producer.areserve(n) as r:`
        awaits room, then gives the Reservation, committed on a clean exit and
        aborted on an exception (a cancel included); None for a frame that a
        dropping producer dropped."""
        if nbytes < 0:
            raise ValueError(f"nbytes must be >= 0, not {nbytes}")
        return PendingReservation.make(self, nbytes, type, timeout, None, None)

    # --- the doorbell, for event loops that are neither asyncio nor trio -----

    def fileno(self):
        """The doorbell's file descriptor: it becomes readable when the
        consumer rings the doorbell that arm() armed."""
        self.ensure_usable()
        return self.doorbell().fd

    def arm(self, nbytes):
        """Arm the doorbell after a send with timeout=0 raised Full.  Returns
        how long to wait at most, in seconds, for fileno() to become readable
        before trying again; 0.0 when there is room for nbytes now, or the
        ring is sealed (nothing is armed; the send raises Sealed).  Raises
        ConsumerGone if the consumer died.  After the wait, call drain()."""
        if self.awaiting:
            raise RingError("another task is awaiting this producer; one waiting at a time")
        self.ensure_usable()
        self.doorbell()                 # it must exist before anyone can ring it
        return self.arm_for(nbytes, NO_DEADLINE)

    def drain(self):
        """Empty the doorbell and disarm it: after fileno() became readable,
        or when you stop waiting.  Returns how many rings it held."""
        self.ensure_usable()
        _core.producer_disarm(&self.st)
        return 0 if self.bell is None else self.bell.drain()

    cdef Doorbell doorbell(self):
        """This producer's doorbell, bound on first use; a new one in a forked
        child, whose slot is its own."""
        if self.bell is not None and self.bell.gen != _core.generation():
            self.bell.close()           # the parent's: close our copy, keep its name
            self.bell = None
        if self.bell is None:
            self.bell = Doorbell.bind(self.seg, &self.st.ring, <int>self.st.slot,
                                      self.seg.view.slots[self.st.slot].owner)
        return self.bell

    cdef double arm_for(self, uint64_t nbytes, int64_t deadline) except -2:
        """Arm the doorbell after a claim found no room.  Seconds to await it
        (at most ROOM_WATCHDOG, which bounds how late a dead consumer is
        noticed, and deadline); 0 when there is room (try again now); -1 when
        deadline has passed."""
        cdef int64_t now = _core.now_ns()
        cdef double wait = ROOM_WATCHDOG
        cdef int st
        if deadline != NO_DEADLINE and now >= deadline:
            return -1
        st = _core.producer_arm(&self.st, nbytes)
        if st == OK:
            return 0
        if st != PENDING:
            raise_status(st, &self.st, NULL, nbytes)
        if deadline != NO_DEADLINE and (deadline - now) / 1e9 < wait:
            wait = (deadline - now) / 1e9
        return wait

    cdef Doorbell enter_await(self):
        cdef Doorbell bell
        if self.awaiting:
            raise RingError("another task is awaiting this producer; "
                            "give each task its own producer")
        bell = self.doorbell()
        self.awaiting = True
        return bell

    cdef int leave_await(self) except -1:
        """The await is over: leave no flag armed."""
        self.awaiting = False
        if not self.closed:
            _core.producer_disarm(&self.st)
        return 0

    def close(self):
        """Give the producer slot back, aborting an open reservation (whose
        views must be gone: BufferError otherwise)."""
        cdef Reservation r
        if self.closed:
            return
        if self.busy:
            raise_status(PRODUCER_BUSY)
        if self.awaiting:
            raise RingError("a task is awaiting room on this producer; cancel it before closing")
        r = self.reservation() if self.reservation is not None else None
        if r is not None and r.open and r.exports:
            raise BufferError(f"{r.exports} view(s) of the open reservation are still alive; "
                              "delete them before closing the producer")
        self.closed = True
        if self.bell is not None:
            self.bell.close()           # in a forked child, only its copy of the socket
        if self.gen == _core.generation():
            _core.producer_close(&self.st)

    def __dealloc__(self):
        if self.bell is not None:
            self.bell.close()           # leave the event loop now, not when it closes
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

    @property
    def rewind(self):
        """Whether this producer may pad to the end of a lap to reuse the
        ring's start (docs/usage.md, "Working set")."""
        return self.st.rewind

    def __reduce__(self):
        spin = None if self.st.spin == SPIN_ADAPT else self.st.spin
        return (_producer_in, (self.ring, spin, self.nontemporal, self.on_full, self.st.rewind))

    def __repr__(self):
        drops = " on_full='drop'" if self.drops else ""
        return f"<shmring.Producer slot={self.st.slot} of {self.seg.name!r}{drops}>"


def _producer_in(ring, spin=None, nontemporal=False, on_full="wait", rewind=True):
    """Unpickle a Producer: a fresh producer on the same ring."""
    return ring.producer(spin=spin, nontemporal=nontemporal, on_full=on_full, rewind=rewind)


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
        if self.dtype is None:
            return bytes_array(self)
        return numpy().frombuffer(self, dtype=self.dtype).reshape(self.shape)

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


cdef class PendingReservation:
    """What producer.areserve() returns: `async with` awaits room, claims it
    and gives the Reservation; it commits on a clean exit and aborts on an
    exception, a cancel included."""

    def __init__(self):
        raise TypeError("use producer.areserve(nbytes)")

    @staticmethod
    cdef PendingReservation make(Producer producer, uint64_t nbytes, object type,
                                 object timeout, object dtype, object shape):
        cdef PendingReservation pr = PendingReservation.__new__(PendingReservation)
        pr.producer = producer
        pr.nbytes = nbytes
        pr.type = check_type(type)
        deadline_for(timeout)           # checked now, counted from the await
        pr.timeout = timeout
        pr.dtype = dtype
        pr.shape = shape
        return pr

    async def __aenter__(self):
        cdef Producer p = self.producer
        cdef int64_t deadline = p.room_deadline(self.timeout)
        if self.reservation is not None:
            raise RingError("this areserve() was already entered; call areserve() again")
        p.ensure_usable()
        if not await _claim_awaiting(p, self.nbytes, self.type, deadline, True):
            return None                 # a dropping producer dropped it
        if self.dtype is not None:
            write_array_header(_core.header_at(&p.st.ring, p.st.res_pos),
                               dtype_code(self.dtype), self.shape)
        self.reservation = Reservation.wrap(p, self.dtype, self.shape)
        return self.reservation

    async def __aexit__(self, exc_type, exc, tb):
        return False if self.reservation is None else self.reservation.__exit__(exc_type, exc, tb)


async def _claim_awaiting(Producer p, uint64_t nbytes, uint32_t type, int64_t deadline,
                          bint must):
    """Claim nbytes, awaiting room: try; while there is none, arm the doorbell,
    await it (or the time arm_for allows) and try again.  True once
    claimed; False if deadline came first (no_room: Full if must, or a
    dropping producer's drop).  The claim is made without an await after it,
    so a cancel never leaves one open; the flag is taken back however it
    ends."""
    cdef double seconds
    cdef uint64_t heard
    cdef Doorbell bell
    if p.try_claim(nbytes, type):
        return True
    if deadline != NOWAIT:
        bell = p.enter_await()
        try:
            while True:
                seconds = p.arm_for(nbytes, deadline)
                if seconds < 0:
                    break
                if seconds > 0:
                    heard = bell.heard
                    await bell.wait(seconds)
                    _core.producer_awaited(&p.st, bell.fd, bell.heard != heard)    # the lab's judge
                if p.try_claim(nbytes, type):
                    return True
        finally:
            p.leave_await()
    p.no_room(nbytes, must)
    return False


async def _send_awaiting(Producer p, object data, uint32_t type, int64_t deadline, bint must):
    """One frame of asend() or asend_many(): claim awaiting room, then copy and
    commit with no await between.  True if sent; False if deadline came first
    (Full if must, unless the producer drops)."""
    cdef Py_buffer buf
    cdef bint ok = False
    frame_buffer(data, &buf)
    try:
        if await _claim_awaiting(p, buf.len, type, deadline, must):
            p.fill(<uint8_t *>buf.buf, buf.len)
            _core.producer_commit(&p.st)
            ok = True
    finally:
        PyBuffer_Release(&buf)
    return ok

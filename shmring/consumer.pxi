# Consumer: frames out of the ring, in place.
#
# One thread at a time may be inside a call on a consumer's state, and a
# Frame dropped on another thread (or while a call waits) must not release
# its record at the same time.  A guard word in the state says who is inside:
# a call (Python or the C API) holds it for its whole length; a Frame that
# finds it taken queues its position in `dropped`, and the holder releases
# the queue before it lets go.

cdef enum:
    FREE = 0
    CALLER = 1                      # a receive, release or close, Python or C API
    DROPPER = 2                     # a Frame releasing itself as it is dropped


cdef inline bint hold(ConsumerState *c, uint32_t who) noexcept nogil:
    cdef uint32_t free = FREE
    return cas32(&c.in_use, &free, who, False, ACQUIRE, RELAXED)  # pairs with let_go's release store: the last holder's changes are visible


cdef inline void let_go(ConsumerState *c) noexcept nogil:
    store32(&c.in_use, FREE, RELEASE)  # pairs with hold's acquire CAS


# recv_latest() and recv_latest_each(): the core's receive and release in a
# loop without the GIL, no step of their own in the protocol.  The loop ends
# at the tail it saw first, so producers that keep committing cannot keep it
# going, and at a claim still being written, which receive waits for.

cdef int skip_to_newest(ConsumerState *c, Received *r, Received *by_slot,
                        uint64_t *skipped) noexcept nogil:
    """r is a record just delivered.  Receive each record committed after it,
    up to the tail of now, keeping only the newest: of all of them in r
    (by_slot NULL), or of each producer in by_slot[its slot], r's included.
    Each record replaced is released unread and counted in skipped.  OK, or
    an error status (records in hand then stay held: the ring is corrupt)."""
    cdef uint64_t limit = _core.tail_pos(load64(&c.ring.hdr.tail, RELAXED))  # a bound only: receive loads tail again with acquire
    cdef Received later
    cdef int st = OK
    if by_slot != NULL:
        st = keep_newest(c, by_slot, r, skipped)
    while st == OK and limit - c.cursor - 1 < c.ring.capacity:   # the cursor is before limit
        st = _core.consumer_receive(c, &later, NOWAIT)
        if st == TIMEOUT or st == SEALED:
            return OK                   # pending, or the end: what we have is the newest
        if st != OK:
            return st
        if by_slot != NULL:
            st = keep_newest(c, by_slot, &later, skipped)
        else:
            st = _core.consumer_skip(c, r.pos)
            skipped[0] += st == OK
            r[0] = later
    return st


cdef int keep_newest(ConsumerState *c, Received *by_slot, Received *r,
                     uint64_t *skipped) noexcept nogil:
    """File r under its producer's slot, skipping the record it replaces."""
    cdef uint32_t slot = _core.header_at(&c.ring, r.pos).slot
    cdef int st
    if slot >= c.ring.nslots:
        return ERR_CORRUPT              # no producer has that slot
    if by_slot[slot].data != NULL:
        st = _core.consumer_skip(c, by_slot[slot].pos)
        if st != OK:
            return st
        skipped[0] += 1
    by_slot[slot] = r[0]
    return OK


@cython.no_gc_clear   # __dealloc__ uses the mapping: the cyclic GC must not drop seg first
cdef class Consumer:
    """Reads frames in place.  Use it from one thread at a time."""

    def __init__(self):
        raise TypeError("use ring.consumer()")

    @staticmethod
    cdef Consumer open(Ring ring, uint32_t spin, double stall_timeout):
        cdef Consumer c = Consumer.__new__(Consumer)
        c.closed = True
        c.dropped = []
        c.seg = ring.live()
        c.ring = ring
        if _core.consumer_open(&c.st, &c.seg.view) < 0:
            raise ConsumerExists(f"ring {c.seg.name!r} already has a live consumer "
                                 f"(pid {owner_pid(c.seg.view.hdr.consumer)})")
        c.closed = False
        c.st.spin = spin
        c.st.stall_ns = <int64_t>(min(stall_timeout, 1e9) * 1e9)
        c.st.wrapper = <void *>c
        c.gen = _core.generation()
        remove_stale_doorbells(c.seg.path, c.seg.name)
        return c

    cdef int usable(self) except -1:
        if self.closed:
            raise RingError("consumer is closed")
        if self.gen != _core.generation():
            raise RingError("this consumer belongs to the parent process; "
                            "a forked child must not use it")
        if self.corrupted:
            raise_status(ERR_CORRUPT, NULL, &self.st)
        return 0

    cdef int not_awaited(self) except -1:
        """One waiting at a time: no other receive while a task awaits."""
        if self.awaiting:
            raise RingError("another task is awaiting this consumer; one waiting at a time")
        return 0

    cdef int begin(self) except -1:
        """Enter a call: hold the state, then release what was dropped meanwhile."""
        self.usable()
        if not hold(&self.st, CALLER):
            raise_status(CONSUMER_BUSY)
        if self.dropped:
            try:
                self.release_dropped()
            except BaseException:
                let_go(&self.st)
                raise
        return 0

    cdef int end(self) except -1:
        """Leave a call, whatever happened in it: release what was dropped
        meanwhile (even after Ctrl-C or RingCorrupted), then let go."""
        if not self.dropped:
            let_go(&self.st)
            return 0
        try:
            self.release_dropped()
        finally:
            let_go(&self.st)
        return 0

    cdef int release_dropped(self) except -1:
        """Release the frames dropped while another caller held the state.
        The caller holds it."""
        cdef int st
        while self.dropped:
            fetch_add32(&self.st.dropped, <uint32_t>-1, RELAXED)  # a count only: the list (GIL) carries the positions
            st = _core.consumer_release(&self.st, self.dropped.pop())
            if st != OK:
                raise_status(st, NULL, &self.st)
        return 0

    cdef int next_record(self, Received *r, int64_t deadline) except -1:
        """Receive one record inside a call: OK, TIMEOUT if none came before
        deadline, or SEALED if none ever will; the caller decides what those mean."""
        cdef int st = _core.consumer_receive(&self.st, r, NOWAIT)
        if st == TIMEOUT and deadline != NOWAIT:
            with nogil:
                st = receive_blocking(&self.st, r, deadline)
        if st != OK and st != TIMEOUT and st != SEALED:
            raise_status(st, NULL, &self.st)
        return st

    cdef int give_back(self, uint64_t pos) except -1:
        """Release one record (Frame.release())."""
        cdef int st
        if self.closed or self.gen != _core.generation():
            return 0                    # the next consumer redelivers it
        self.begin()
        try:
            st = _core.consumer_release(&self.st, pos)
            if st != OK:
                raise_status(st, NULL, &self.st)
        finally:
            self.end()
        return 0

    cdef object receive(self, bint as_bytes, Py_ssize_t max_frames, int64_t deadline,
                        Frame done):
        """The body of every receive, blocking or awaitable: release done
        first (recv(release=)), then wait as long as deadline allows for the
        first record, then take only records already committed.  max_frames
        0: one Frame (bytes if as_bytes), or None if none came; else a list
        of up to max_frames, empty if none came.  Sealed instead of nothing
        once the ring is sealed and every frame was received."""
        cdef Received r
        cdef list out
        cdef int st
        self.begin()
        try:
            if done is not None and not done.released:
                done.released = True
                st = _core.consumer_release(&self.st, done.pos)
                if st != OK:
                    raise_status(st, NULL, &self.st)
            if max_frames == 0:
                st = self.next_record(&r, deadline)
                if st == OK:
                    return self.copy_out(&r) if as_bytes else make_frame(self, &r)
                if st == SEALED:
                    raise_status(st, NULL, &self.st)
                return None
            out = []
            while len(out) < max_frames:
                st = self.next_record(&r, deadline if not out else NOWAIT)
                if st != OK:
                    break
                out.append(self.copy_out(&r) if as_bytes else make_frame(self, &r))
            if st == SEALED and not out:
                raise_status(st, NULL, &self.st)
            return out
        finally:
            self.end()

    def recv(self, timeout=None, *, release=None):
        """The next frame, a zero-copy read-only view.  Release it when done
        (or use `with`).  Raises Empty if the timeout runs out, Sealed once
        the ring is sealed and every frame was received.  release: a frame
        of this consumer to release first, as its release() would, in the
        same call (`frame = c.recv(release=frame)`)."""
        cdef int64_t deadline = deadline_for(timeout)
        cdef Frame done = self.releasable(release) if release is not None else None
        self.not_awaited()
        got = self.receive(False, 0, deadline, done)
        if got is None:
            raise_status(TIMEOUT, NULL, &self.st)
        return got

    cdef Frame releasable(self, object frame):
        """recv(release=frame)'s checks, those of frame.release() first."""
        cdef Frame f = <Frame?>frame
        if f.consumer is not self:
            raise ValueError("release= takes a frame received from this consumer")
        if f.exports and not f.released:
            f.refuse_release()
        return f

    def recv_into(self, buffer, timeout=None):
        """Copy the next frame into buffer (any writable C-contiguous buffer)
        and release it at once; returns its length.  The cheapest way to take
        one small frame.  A frame longer than buffer raises ValueError and
        stays in the ring, the next to be received."""
        cdef int64_t deadline = deadline_for(timeout)
        self.not_awaited()
        got = self.receive_into(buffer, deadline)
        if got is None:
            raise_status(TIMEOUT, NULL, &self.st)
        return got

    cdef object receive_into(self, object buffer, int64_t deadline):
        """recv_into()'s body, blocking or awaitable: the frame's length, or
        None if none came before deadline; Sealed as receive() raises it."""
        cdef Received r
        cdef Py_buffer buf
        cdef int st
        try:
            PyObject_GetBuffer(buffer, &buf, PyBUF_WRITABLE)
        except (BufferError, ValueError) as e:
            raise ValueError(f"recv_into needs a writable C-contiguous buffer ({e})") from None
        try:
            self.begin()
            try:
                st = self.next_record(&r, deadline)
                if st == TIMEOUT:
                    return None
                if st != OK:
                    raise_status(st, NULL, &self.st)
                if r.length > <uint64_t>buf.len:
                    _core.consumer_unreceive(&self.st, &r)
                    raise ValueError(f"the next frame has {r.length} bytes, more than the "
                                     f"buffer's {buf.len}; it stays in the ring")
                memcpy(buf.buf, r.data, r.length)
                st = _core.consumer_release(&self.st, r.pos)
                if st != OK:
                    raise_status(st, NULL, &self.st)
                return r.length
            finally:
                self.end()
        finally:
            PyBuffer_Release(&buf)

    def recv_bytes(self, timeout=None):
        """The next frame's contents as bytes, released at once."""
        cdef int64_t deadline = deadline_for(timeout)
        self.not_awaited()
        got = self.receive(True, 0, deadline, None)
        if got is None:
            raise_status(TIMEOUT, NULL, &self.st)
        return got

    cdef bytes copy_out(self, Received *r):
        """The record's bytes; the record is released even if the copy fails."""
        cdef int st
        try:
            return (<char *>r.data)[:r.length]
        finally:
            st = _core.consumer_release(&self.st, r.pos)
            if st != OK:
                raise_status(st, NULL, &self.st)

    def recv_latest(self, timeout=None):
        """The newest frame: waits as long as timeout for a frame, as recv()
        does, then also takes every frame committed after it by then and
        returns the last, releasing the older ones unread (counted in
        stats()["frames_skipped"] and in .skipped).  Frames behind a claim
        still being written wait for the next call.  Frames already held are
        left alone.  Raises Empty at the deadline, and Sealed once the ring
        is sealed and every frame was received."""
        cdef int64_t deadline = deadline_for(timeout)
        cdef Received r
        cdef uint64_t skipped = 0
        cdef int st
        self.not_awaited()
        self.begin()
        try:
            st = self.next_record(&r, deadline)
            if st != OK:
                raise_status(st, NULL, &self.st)
            with nogil:
                st = skip_to_newest(&self.st, &r, NULL, &skipped)
            self.skipped += skipped
            if st != OK:
                raise_status(st, NULL, &self.st)
            return make_frame(self, &r)
        finally:
            self.end()

    def recv_latest_each(self, timeout=None):
        """Each producer's newest frame: recv_latest() for several cameras.
        Waits as long as timeout for a frame, then takes every frame committed
        by then, and returns a dict {producer slot: Frame} (the slot is
        Frame.producer) holding each producer's last, in the order they were
        sent; a producer that sent nothing since the last call is absent.
        The older frames are released unread and counted as recv_latest()
        counts them.  Raises Empty and Sealed as recv_latest() does."""
        cdef int64_t deadline = deadline_for(timeout)
        cdef Received r
        cdef Received *by_slot
        cdef uint64_t skipped = 0
        cdef uint32_t i, nslots = self.st.ring.nslots
        cdef int st
        self.not_awaited()
        self.begin()
        try:
            if self.by_slot == NULL:
                self.by_slot = <Received *>calloc(nslots, sizeof(Received))
                if self.by_slot == NULL:
                    raise MemoryError()
            by_slot = self.by_slot
            st = self.next_record(&r, deadline)
            if st != OK:
                raise_status(st, NULL, &self.st)
            try:
                with nogil:
                    st = skip_to_newest(&self.st, &r, by_slot, &skipped)
                self.skipped += skipped
                if st != OK:
                    raise_status(st, NULL, &self.st)
                newest = sorted([(by_slot[i].pos - self.st.head, i, make_frame(self, &by_slot[i]))
                                 for i in range(nslots) if by_slot[i].data != NULL])
                return {i: frame for _, i, frame in newest}     # in ring order
            finally:
                memset(by_slot, 0, nslots * sizeof(Received))
        finally:
            self.end()

    def __iter__(self):
        return self

    def __next__(self):
        """The next frame, waiting as long as it takes; the iteration ends
        once the ring is sealed and every frame was received."""
        self.not_awaited()
        try:
            return self.receive(False, 0, NO_DEADLINE, None)
        except Sealed:
            raise StopIteration from None

    def recv_many(self, Py_ssize_t max_frames, timeout=None):
        """Up to max_frames frames, zero copy: waits as long as timeout for
        the first, then takes only frames already committed.  An empty list
        if the timeout runs out; Sealed instead once the ring is sealed and
        every frame was received.  Release each frame as after recv();
        dropping the list releases those still held."""
        cdef int64_t deadline = deadline_for(timeout)
        check_batch(max_frames)
        self.not_awaited()
        return self.receive(False, max_frames, deadline, None)

    def recv_bytes_many(self, Py_ssize_t max_frames, timeout=None):
        """Like recv_many(), but each frame's contents as bytes, its space
        released at once: the cheapest way to drain small frames."""
        cdef int64_t deadline = deadline_for(timeout)
        check_batch(max_frames)
        self.not_awaited()
        return self.receive(True, max_frames, deadline, None)

    # --- awaitable receives (asyncio, trio, anyio): _await_records below -----

    async def arecv(self, timeout=None, *, release=None):
        """Awaitable recv(): the next frame, awaited without a thread or
        polling.  Raises Empty if the timeout runs out, Sealed once the ring
        is sealed and every frame was received.  release: as for recv(), a
        frame released at once, before the await (a cancel does not undo it)."""
        cdef Frame done = self.releasable(release) if release is not None else None
        return await _await_records(self, False, 0, timeout, done, None)

    async def arecv_into(self, buffer, timeout=None):
        """Awaitable recv_into(): the length of the frame copied into buffer."""
        return await _await_records(self, False, 0, timeout, None, buffer)

    async def arecv_bytes(self, timeout=None):
        """Awaitable recv_bytes()."""
        return await _await_records(self, True, 0, timeout, None, None)

    async def arecv_many(self, Py_ssize_t max_frames, timeout=None):
        """Awaitable recv_many(): an empty list if the timeout runs out."""
        check_batch(max_frames)
        return await _await_records(self, False, max_frames, timeout, None, None)

    async def arecv_bytes_many(self, Py_ssize_t max_frames, timeout=None):
        """Awaitable recv_bytes_many(): an empty list if the timeout runs out."""
        check_batch(max_frames)
        return await _await_records(self, True, max_frames, timeout, None, None)

    def __aiter__(self):
        return self

    async def __anext__(self):
        """The next frame, awaited as long as it takes; `async for` ends once
        the ring is sealed and every frame was received."""
        try:
            return await _await_records(self, False, 0, None, None, None)
        except Sealed:
            raise StopAsyncIteration from None

    # --- the doorbell, for event loops that are neither asyncio nor trio -----

    def fileno(self):
        """The doorbell's file descriptor: it becomes readable when a producer
        rings the doorbell that arm() armed.  For selectors, GUI loops and
        the like; asyncio, trio and anyio use arecv()."""
        self.usable()
        return self.doorbell().fd

    def arm(self):
        """Arm the doorbell after recv(timeout=0) raised Empty.  Returns how
        long to wait at most, in seconds, for fileno() to become readable
        before trying recv(timeout=0) again; 0.0 when a frame is ready now,
        or the ring is sealed and drained (nothing is armed).  After the wait, call drain()."""
        self.not_awaited()
        self.usable()
        self.doorbell()                 # it must exist before anyone can ring it
        return self.arm_for(NO_DEADLINE)

    def drain(self):
        """Empty the doorbell and disarm it: after fileno() became readable,
        or when you stop waiting.  Returns how many rings it held."""
        self.usable()
        _core.consumer_disarm(&self.st)
        return 0 if self.bell is None else self.bell.drain()

    cdef Doorbell doorbell(self):
        """This consumer's doorbell, bound on first use."""
        if self.bell is None:
            self.bell = Doorbell.bind(self.seg, &self.st.ring, -1, self.st.owner)
            self.st.bell_id = self.bell.id
        return self.bell

    cdef double arm_for(self, int64_t deadline) except -2:
        """Arm the doorbell after a try found nothing.  Seconds to await it:
        until the next stall check of a pending claim, or stall_timeout (which
        also bounds how long a producer killed between winning the flag and
        ringing can delay us), or deadline; 0 when a record is ready (try
        again now); -1 when deadline has passed."""
        cdef int64_t now = _core.now_ns(), wait, left
        cdef int st
        if deadline != NO_DEADLINE and now >= deadline:
            return -1
        self.begin()
        try:
            st = _core.consumer_arm(&self.st)
        finally:
            self.end()
        if st == OK:
            return 0
        if st != EMPTY and st != PENDING:
            raise_status(st, NULL, &self.st)
        wait = self.st.stall_ns
        if st == PENDING and self.st.stall_pos == self.st.cursor and self.st.stall_since:
            left = self.st.stall_since + self.st.stall_ns - now
            if left > 0:
                wait = left
        if deadline != NO_DEADLINE and deadline - now < wait:
            wait = deadline - now
        return wait / 1e9

    cdef Doorbell enter_await(self):
        cdef Doorbell bell = self.doorbell()
        self.awaiting = True
        return bell

    cdef int leave_await(self) except -1:
        """The await is over (a frame, the deadline, an error, a cancel):
        leave no flag armed."""
        self.awaiting = False
        _core.consumer_disarm(&self.st)
        return 0

    @property
    def held(self):
        """Frames delivered and not yet released."""
        return self.st.held

    def close(self):
        """Stop being the consumer.  Frames dropped but not yet released are
        released; frames still held will be delivered again to the next
        consumer."""
        if self.closed:
            return
        if self.awaiting:
            raise RingError("a task is awaiting this consumer; cancel it before closing")
        if self.bell is not None:
            self.bell.close()           # in a forked child, only its copy of the socket
        if self.gen != _core.generation():
            self.closed = True          # the parent's: nothing of it is ours to close
            return
        if not hold(&self.st, CALLER):
            raise_status(CONSUMER_BUSY)
        try:
            self.closed = True
            try:
                self.release_dropped()
            finally:
                _core.consumer_close(&self.st)
        finally:
            let_go(&self.st)

    def __dealloc__(self):
        if self.bell is not None:
            self.bell.close()           # leave the event loop now, not when it closes
        if not self.closed and self.gen == _core.generation():
            _core.consumer_close(&self.st)
        free(self.by_slot)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __reduce__(self):
        raise TypeError("a Consumer cannot be pickled: open one in the process that reads")


cdef int check_batch(Py_ssize_t max_frames) except -1:
    if max_frames < 1:
        raise ValueError(f"max_frames must be >= 1, not {max_frames}")
    return 0


cdef inline bint nothing(object got):
    """A receive's result when nothing came: None, or an empty list."""
    return got is None or (type(got) is list and not got)


cdef object _try_records(Consumer c, bint as_bytes, Py_ssize_t max_frames, Frame done,
                         object into):
    """One try of an awaitable receive, waiting for nothing."""
    if into is None:
        return c.receive(as_bytes, max_frames, NOWAIT, done)
    return c.receive_into(into, NOWAIT)


async def _await_records(Consumer c, bint as_bytes, Py_ssize_t max_frames, object timeout,
                         Frame done, object into):
    """The awaitable receives: try; while nothing comes, arm the doorbell, await
    it (or the time arm_for allows) and try again.  No frame is taken
    at an await, so a cancel loses none; the flag is taken back however it
    ends.  A seal rings the doorbell: the next try raises Sealed.  done is
    released by the first try; into makes each try a receive_into()."""
    cdef int64_t deadline = deadline_for(timeout)
    cdef double seconds
    cdef uint64_t heard
    cdef Doorbell bell
    c.not_awaited()
    got = _try_records(c, as_bytes, max_frames, done, into)
    if nothing(got) and deadline != NOWAIT:
        bell = c.enter_await()
        try:
            while nothing(got):
                seconds = c.arm_for(deadline)
                if seconds < 0:
                    break
                if seconds > 0:
                    heard = bell.heard
                    await bell.wait(seconds)
                    _core.consumer_awaited(&c.st, bell.fd, bell.heard != heard)    # the lab's judge
                got = _try_records(c, as_bytes, max_frames, None, into)
        finally:
            c.leave_await()
    if got is None:
        raise_status(TIMEOUT, NULL, &c.st)
    return got

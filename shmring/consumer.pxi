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
        return c

    cdef int begin(self) except -1:
        """Enter a call: hold the state, then release what was dropped meanwhile."""
        if self.closed:
            raise RingError("consumer is closed")
        if self.gen != _core.generation():
            raise RingError("this consumer belongs to the parent process; "
                            "a forked child must not use it")
        if self.corrupted:
            raise_status(ERR_CORRUPT, NULL, &self.st)
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

    def recv(self, timeout=None, *, release=None):
        """The next frame, a zero-copy read-only view.  Release it when done
        (or use `with`).  Raises Empty if the timeout runs out, Sealed once
        the ring is sealed and every frame was received.  release: a frame
        of this consumer to release first, as its release() would, in the
        same call (`frame = c.recv(release=frame)`)."""
        cdef int64_t deadline = deadline_for(timeout)
        cdef Received r
        cdef int st
        cdef Frame done = self.releasable(release) if release is not None else None
        self.begin()
        try:
            if done is not None and not done.released:
                done.released = True
                st = _core.consumer_release(&self.st, done.pos)
                if st != OK:
                    raise_status(st, NULL, &self.st)
            st = self.next_record(&r, deadline)
            if st != OK:
                raise_status(st, NULL, &self.st)
            return make_frame(self, &r)
        finally:
            self.end()

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
        cdef Received r
        cdef int st
        self.begin()
        try:
            st = self.next_record(&r, deadline)
            if st != OK:
                raise_status(st, NULL, &self.st)
            return self.copy_out(&r)
        finally:
            self.end()

    cdef bytes copy_out(self, Received *r):
        """The record's bytes; the record is released even if the copy fails."""
        cdef int st
        try:
            return (<char *>r.data)[:r.length]
        finally:
            st = _core.consumer_release(&self.st, r.pos)
            if st != OK:
                raise_status(st, NULL, &self.st)

    def __iter__(self):
        return self

    def __next__(self):
        """The next frame, waiting as long as it takes; the iteration ends
        once the ring is sealed and every frame was received."""
        cdef Received r
        self.begin()
        try:
            if self.next_record(&r, NO_DEADLINE) == SEALED:
                raise StopIteration
            return make_frame(self, &r)
        finally:
            self.end()

    def recv_many(self, Py_ssize_t max_frames, timeout=None):
        """Up to max_frames frames, zero copy: waits as long as timeout for
        the first, then takes only frames already committed.  An empty list
        if the timeout runs out; Sealed instead once the ring is sealed and
        every frame was received.  Release each frame as after recv();
        dropping the list releases those still held."""
        cdef int64_t deadline = deadline_for(timeout)
        cdef Received r
        cdef list frames = []
        cdef int st = OK
        if max_frames < 1:
            raise ValueError(f"max_frames must be >= 1, not {max_frames}")
        self.begin()
        try:
            while len(frames) < max_frames:
                st = self.next_record(&r, deadline if not frames else NOWAIT)
                if st != OK:
                    break
                frames.append(make_frame(self, &r))
            if st == SEALED and not frames:
                raise_status(st, NULL, &self.st)
        finally:
            self.end()
        return frames

    def recv_bytes_many(self, Py_ssize_t max_frames, timeout=None):
        """Like recv_many(), but each frame's contents as bytes, its space
        released at once: the cheapest way to drain small frames."""
        cdef int64_t deadline = deadline_for(timeout)
        cdef Received r
        cdef list out = []
        cdef int st = OK
        if max_frames < 1:
            raise ValueError(f"max_frames must be >= 1, not {max_frames}")
        self.begin()
        try:
            while len(out) < max_frames:
                st = self.next_record(&r, deadline if not out else NOWAIT)
                if st != OK:
                    break
                out.append(self.copy_out(&r))
            if st == SEALED and not out:
                raise_status(st, NULL, &self.st)
        finally:
            self.end()
        return out

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
        if not self.closed and self.gen == _core.generation():
            _core.consumer_close(&self.st)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __reduce__(self):
        raise TypeError("a Consumer cannot be pickled: open one in the process that reads")

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
        try:
            self.release_dropped()
        except BaseException:
            let_go(&self.st)
            raise
        return 0

    cdef int end(self) except -1:
        """Leave a call, whatever happened in it: release what was dropped
        meanwhile (even after Ctrl-C or RingCorrupted), then let go."""
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

    def recv(self, timeout=None):
        """The next frame, a zero-copy read-only view.  Release it when done
        (or use `with`).  Raises Empty if the timeout runs out, Sealed once
        the ring is sealed and every frame was received."""
        cdef int64_t deadline = deadline_for(timeout)
        cdef Received r
        cdef int st
        self.begin()
        try:
            st = self.next_record(&r, deadline)
            if st != OK:
                raise_status(st, NULL, &self.st)
            return make_frame(self, &r)
        finally:
            self.end()

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
        free(self.by_slot)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __reduce__(self):
        raise TypeError("a Consumer cannot be pickled: open one in the process that reads")

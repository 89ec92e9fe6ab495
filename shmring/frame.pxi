# Frame: a delivered record, read in place.  Its space goes back to the ring
# when it is released: explicitly, at the end of a `with` block, or when it
# is dropped; a view (memoryview, numpy array) keeps it until the view dies.

@cython.no_gc_clear   # __dealloc__ uses the mapping: the cyclic GC must not drop seg first
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
        if self.exports == 0 and self.release_unviewed:
            self.drop()

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
        if self.ndim == RAW:
            return None
        return read_array_header(
            _core.header_at(&self.consumer.st.ring, self.pos), self.length, self.ndim)

    def array(self):
        """A read-only ndarray over the frame: dtype and shape as sent by
        send_array(), otherwise 1-D uint8.  It keeps the frame's space until
        it dies."""
        np = numpy()
        layout = self.layout
        if layout is None:
            return np.frombuffer(self, dtype=np.uint8)
        return np.frombuffer(self, dtype=layout[0]).reshape(layout[1])

    def release(self):
        """Give the frame's space back to the ring now.  Views of it must be
        gone first (BufferError otherwise); releasing twice does nothing."""
        if self.released:
            return
        if self.exports:
            raise BufferError(f"{self.exports} view(s) of this frame are still alive; "
                              "delete them before release, or leave the frame to be "
                              "released when the last view dies")
        self.released = True
        self.consumer.give_back(self.pos)

    cdef void drop(self) noexcept:
        """Release without raising: for a frame dropped, or left by `with`, or
        whose last view died.  If another call holds the consumer (on another
        thread, or around us), it releases the frame before it returns."""
        cdef Consumer c = self.consumer
        if self.released or c is None or c.closed or c.gen != _core.generation():
            return
        self.released = True
        if hold(&c.st, DROPPER):
            if _core.consumer_release(&c.st, self.pos) != OK:
                c.corrupted = True      # raised by the consumer's next call
            let_go(&c.st)
        else:
            c.dropped.append(self.pos)
            fetch_add32(&c.st.dropped, 1, RELAXED)  # a count only: the list (GIL) carries the positions

    def __dealloc__(self):
        self.drop()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.exports:
            self.release_unviewed = True    # views outlive the block: the last one releases
        else:
            self.drop()

    def __bytes__(self):
        self.check()
        return (<char *>self.data)[:self.length]

    def __repr__(self):
        state = "released" if self.released else f"{self.length} bytes"
        return f"<shmring.Frame type={self._type} {state}>"


cdef Frame make_frame(Consumer consumer, Received *r):
    cdef RecordHeader *rec = _core.header_at(&consumer.st.ring, r.pos)
    cdef Frame f = Frame.__new__(Frame)
    f.consumer = consumer
    f.pos = r.pos
    f.data = r.data
    f.length = r.length
    f._type = r.type
    f.ndim = rec.ndim if rec.flags & IS_ARRAY else RAW
    return f

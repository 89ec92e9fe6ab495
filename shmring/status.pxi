# The one way from a status code to an exception.  The core returns Status
# codes; the Python objects and the C API add the misuse codes below, so a
# mistake reads the same whichever API made it.

cdef enum Misuse:
    OPEN_CLAIM = -100       # claim while a claim is open
    NO_CLAIM = -101         # commit or abort without an open claim
    CONSUMER_BUSY = -102    # another thread is inside a call on this consumer
    PRODUCER_BUSY = -103    # another thread is inside a call on this producer


cdef int raise_status(int st, ProducerState *p=NULL, ConsumerState *c=NULL,
                      uint64_t nbytes=0) except -1:
    """Raise the exception for st.  p or c (whichever side failed) supplies
    the detail: a message should say where the ring stood."""
    if st == TIMEOUT and p != NULL:
        raise Full(f"no room for a {nbytes}-byte frame before the timeout" + fill_detail(&p.ring))
    if st == TIMEOUT:
        raise Empty("no frame arrived before the timeout")
    if st == ERR_TOO_LARGE:
        raise FrameTooLarge(f"frame of {nbytes} bytes exceeds max_frame={p.ring.max_frame}")
    if st == SEALED and c != NULL:
        raise Sealed("the ring was sealed (ring.seal()) and every frame in it was delivered: "
                     "no frame will come")
    if st == SEALED:
        raise Sealed("the ring was sealed (ring.seal()): it takes no new frames")
    if st == ERR_CONSUMER_GONE:
        raise ConsumerGone("the ring's consumer died while this producer waited for space")
    if st == OPEN_CLAIM:
        raise RingError("this producer has an open reservation: commit or abort it first")
    if st == NO_CLAIM:
        raise RingError("this producer has no open reservation to commit or abort")
    if st == CONSUMER_BUSY:
        raise RingError("consumer is busy in a call on another thread")
    if st == PRODUCER_BUSY:
        raise RingError("producer is in use by another thread; give each thread its own producer")
    if st == ERR_CORRUPT and c != NULL:
        if c.wrapper != NULL:
            (<Consumer>c.wrapper).corrupted = True  # every later call says so too
        raise RingCorrupted("the ring's shared memory holds impossible values; "
                            "it cannot be trusted any more" + consumer_detail(c))
    if st == ERR_CORRUPT:
        raise RingCorrupted("the ring's shared memory holds impossible values; "
                            "it cannot be trusted any more" + fill_detail(&p.ring))
    raise SystemError(f"shmring: unknown status {st}")


cdef str fill_detail(RingView *v):
    """Where the ring stood.  Plain reads: the values are only reported."""
    cdef uint64_t head = v.hdr.head, tail = _core.tail_pos(v.hdr.tail)
    return (f" (head {head}, tail {tail}: {tail - head} of {v.capacity} bytes in use; the "
            f"consumer holds {v.hdr.held_frames} frame(s) unreleased)")


cdef str consumer_detail(ConsumerState *c):
    """Where the consumer stood and what it found there."""
    cdef RingView *v = &c.ring
    cdef RecordHeader *rec
    cdef uint64_t pos = c.cursor, word
    msg = (f": consumer at position {pos} (offset {pos & v.mask} of the data area), "
           f"head {v.hdr.head}, tail {v.hdr.tail}, capacity {v.capacity}, "
           f"{c.held} frame(s) held")
    if pos & (ALIGN - 1):
        return msg + "; that position is not 64-byte aligned"
    rec = _core.header_at(v, pos)
    word = rec.commit
    tag_ok = (word & ~<uint64_t>STATE_MASK) == _core.tag(v, pos)
    return msg + (f"; record header there: commit {word:#x} (position tag "
                  f"{'matches' if tag_ok else 'wrong'}, state {word & STATE_MASK}), "
                  f"length {rec.length}, slot {rec.slot}")

# Ring: one handle on a segment, the factory of producers and consumers.

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
        segment_path(name)
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
        return Ring.wrap(create_segment(name, capacity, max_frame, mode, producers,
                                        _start & 0xffffffffffffffff))

    @staticmethod
    def attach(name):
        """Open an existing ring by name."""
        return Ring.wrap(attach_segment(name, None))

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
        return owner_pid(self.seg.view.hdr.creator)

    @property
    def created(self):
        """Creation time, seconds since the epoch."""
        return self.seg.view.hdr.created_ns / 1e9

    def producer(self, *, spin=0, nontemporal=False):
        """A new producer.  spin is how many times to poll for room before
        sleeping; it trades CPU for latency.  nontemporal makes send(),
        send_many() and send_array() copy frames of 1 MiB or more past the
        CPU cache (see docs/usage.md)."""
        return Producer.open(self, check_spin(spin), nontemporal)

    def consumer(self, *, spin=0, stall_timeout=1.0):
        """Become the ring's consumer (one live consumer per ring).  A claim
        pending stall_timeout seconds is checked for a dead producer."""
        if not stall_timeout > 0:
            raise ValueError(f"stall_timeout must be > 0, not {stall_timeout!r}")
        return Consumer.open(self, check_spin(spin), stall_timeout)

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
            "consumer_pid": owner_pid(h.consumer),
            "frames_committed": frames, "bytes_committed": nbytes,
            "frames_aborted": aborted,
            "frames_received": h.received_frames, "bytes_received": h.received_bytes,
            "frames_abandoned": h.abandoned_frames, "bytes_abandoned": h.abandoned_bytes,
            "producer_waits": waits, "consumer_waits": h.consumer_waits,
            "producer_wakeups": h.producer_wakeups, "consumer_wakeups": h.consumer_wakeups,
            "doorbell_rings": h.doorbell_rings,
        }

    def close(self):
        """Drop this handle.  Producers, consumers and frames made from it
        keep the mapping until they are gone."""
        self.closed = True

    def unlink(self):
        """Remove the segment's name, and the doorbells of its dead owners.
        Processes that have it open keep it."""
        os.unlink(self.seg.path)
        remove_stale_doorbells(self.seg)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __reduce__(self):
        return (_attach_in, (self.seg.name, os.path.dirname(self.seg.path)))

    def __repr__(self):
        return (f"<shmring.Ring {self.seg.name!r} capacity={self.seg.view.capacity} "
                f"max_frame={self.seg.view.max_frame}{' closed' if self.closed else ''}>")


cdef uint32_t check_spin(object spin) except? 0xffffffff:
    """Validated before a slot or the consumer word is taken."""
    if not isinstance(spin, int) or not 0 <= spin <= 0xfffffffe:
        raise ValueError(f"spin must be an integer in [0, 2**32 - 2], not {spin!r}")
    return spin

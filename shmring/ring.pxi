# Ring: one handle on a segment, the factory of producers and consumers.

cdef class Ring:
    """A frame ring in one shared-memory segment.

    Make one with Ring.create(name, capacity) and open it elsewhere with
    Ring.attach(name), or call Ring.open_or_create(name, capacity) in each.
    Any number of producers, one consumer."""

    def __init__(self):
        raise TypeError("use Ring.create(name, capacity) or Ring.attach(name)")

    @staticmethod
    def create(name, capacity, *, max_frame=None, mode=0o600,
               producers=DEFAULT_SLOTS, replace_stale=False, _start=0):
        """Create the segment.  capacity is the data area in bytes, a power of
        two >= 4096; frames may be up to max_frame (default and largest:
        capacity // 2 - 64).  producers bounds how many can be open at once.
        A ring of that name raises FileExistsError, unless it is stale (its
        creator, consumer and producers all dead) and replace_stale is true:
        then it is replaced."""
        capacity, max_frame = check_config(name, capacity, max_frame, producers)
        return Ring.wrap(create_segment(name, capacity, max_frame, mode, producers,
                                        _start & 0xffffffffffffffff, replace_stale))

    @staticmethod
    def attach(name):
        """Open an existing ring by name."""
        return Ring.wrap(attach_segment(name, None))

    @staticmethod
    def open_or_create(name, capacity, *, max_frame=None, mode=0o600,
                       producers=DEFAULT_SLOTS, replace_stale=False):
        """Attach to the ring called name, or create it as Ring.create() would
        (iceoryx2's open_or_create).  The ring found must have this capacity,
        at least this max_frame and at least this many producer slots;
        otherwise IncompatibleRing says what differs.  Processes that call it
        at once get one ring: one creates it, the others attach to it once it
        is complete."""
        capacity, max_frame = check_config(name, capacity, max_frame, producers)
        for attempt in range(REPLACE_TRIES):
            try:
                return Ring.create(name, capacity, max_frame=max_frame, mode=mode,
                                   producers=producers, replace_stale=replace_stale)
            except FileExistsError:
                pass
            try:
                ring = Ring.attach(name)
            except FileNotFoundError:
                if attempt == REPLACE_TRIES - 1:
                    raise
                continue                # removed between the two: create it after all
            check_compatible(ring, capacity, max_frame, producers)
            return ring

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

    @property
    def sealed(self):
        """Whether seal() was called, by any process."""
        return _core.ring_sealed(&self.seg.view)

    def seal(self):
        """End of stream: close the ring to new frames, for good.  From now on
        send(), reserve() and the rest raise Sealed; frames already sent, or
        claimed and being written, are still delivered, and the consumer's
        iteration ends once it has them all (recv() then raises Sealed).  Tasks
        that await a frame or room are woken to see it.  Any process holding
        the ring may seal it; sealing again does nothing."""
        _core.ring_seal(&self.live().view)

    def producer(self, *, spin=None, nontemporal=False, on_full="wait", rewind=True):
        """A new producer.  spin is how many times to poll for room before
        sleeping; None polls as a consumer does, for up to 64 microseconds
        while room has been coming soon, for frames up to 64 KiB
        (docs/usage.md).  nontemporal makes send(),
        send_many() and send_array() copy frames of 1 MiB or more past the
        CPU cache; rewind=False keeps it from padding to the end of a lap to
        reuse the ring's start (both in docs/usage.md).  on_full="drop" makes
        a frame that finds no room be dropped, and counted, instead of waited
        for: send() returns False, reserve() None (docs/usage.md, "Latest
        frames")."""
        if on_full not in ("wait", "drop"):
            raise ValueError(f"on_full must be 'wait' or 'drop', not {on_full!r}")
        return Producer.open(self, check_spin(spin), nontemporal, on_full == "drop", rewind)

    def consumer(self, *, spin=None, stall_timeout=1.0):
        """Become the ring's consumer (one live consumer per ring).  spin is
        how many times to poll for a frame before sleeping; None polls for up
        to 64 microseconds, and only while frames have been coming soon
        (docs/usage.md).  A claim pending stall_timeout seconds is checked
        for a dead producer."""
        if not stall_timeout > 0:
            raise ValueError(f"stall_timeout must be > 0, not {stall_timeout!r}")
        return Consumer.open(self, check_spin(spin), stall_timeout)

    def stats(self):
        """Counters from the segment, as a dict."""
        cdef RingView *v = &self.live().view
        cdef SegmentHeader *h = v.hdr
        cdef Slot *s
        cdef uint32_t i
        frames = nbytes = aborted = dropped = rewound = waits = live = opened = 0
        for i in range(v.nslots):
            s = &v.slots[i]
            frames += s.frames
            nbytes += s.bytes
            aborted += s.aborted
            dropped += s.dropped
            rewound += s.rewinds
            waits += s.full_waits
            opened += s.opens
            if s.owner and _core.owner_alive(s.owner):
                live += 1
        head, tail = h.head, _core.tail_pos(h.tail)
        return {
            "capacity": v.capacity, "max_frame": v.max_frame,
            "head": head, "tail": tail, "fill": (tail - head) & 0xffffffffffffffff,
            "sealed": _core.ring_sealed(v),
            "producers": live, "producers_opened": opened,
            "consumer_pid": owner_pid(h.consumer),
            "frames_committed": frames, "bytes_committed": nbytes,
            "frames_aborted": aborted, "frames_dropped": dropped, "frames_rewound": rewound,
            "frames_received": h.received_frames, "bytes_received": h.received_bytes,
            "frames_skipped": h.skipped_frames, "frames_held": h.held_frames,
            "frames_abandoned": h.abandoned_frames, "bytes_abandoned": h.abandoned_bytes,
            "producer_waits": waits, "consumer_waits": h.consumer_waits,
            "wakeups_to_consumer": h.wakeups_to_consumer,
            "wakeups_to_producers": h.wakeups_to_producers,
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
        remove_stale_doorbells(self.seg.path, self.seg.name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __reduce__(self):
        return (_attach_in, (self.seg.name, os.path.dirname(self.seg.path)))

    def __repr__(self):
        return (f"<shmring.Ring {self.seg.name!r} capacity={self.seg.view.capacity} "
                f"max_frame={self.seg.view.max_frame}{' closed' if self.closed else ''}>")


cdef tuple check_config(object name, object capacity, object max_frame, object producers):
    """Validate what create() and open_or_create() take: (capacity, max_frame)."""
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
    return capacity, max_frame


cdef check_compatible(Ring ring, uint64_t capacity, uint64_t max_frame, uint32_t producers):
    """IncompatibleRing, saying what differs, if ring cannot serve as asked."""
    cdef RingView *v = &ring.seg.view
    differs = []
    if v.capacity != capacity:
        differs.append(f"capacity {v.capacity}, not {capacity}")
    if v.max_frame < max_frame:
        differs.append(f"max_frame {v.max_frame}, less than {max_frame}")
    if v.nslots < producers:
        differs.append(f"{v.nslots} producer slots, fewer than {producers}")
    if differs:
        ring.close()
        raise IncompatibleRing(f"ring {ring.seg.name!r} exists with {'; '.join(differs)}: "
                               "ask for what it has, or use another name")


cdef uint32_t check_spin(object spin) except? 0xffffffff:   # SPIN_ADAPT
    """The spin setting, SPIN_ADAPT for None (the adaptive poll); validated
    before a slot or the consumer word is taken."""
    if spin is None:
        return SPIN_ADAPT
    if not isinstance(spin, int) or not 0 <= spin <= 0xfffffffe:
        raise ValueError(f"spin must be None or an integer in [0, 2**32 - 2], not {spin!r}")
    return spin

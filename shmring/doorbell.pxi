# Doorbells: how an event loop awaits a ring without a thread or polling.
#
# The waiting side (an awaiting consumer, or a producer awaiting room) owns a
# unix datagram socket bound beside the segment, named for its owner:
#     shmring.<name>@c.<owner>           the consumer's
#     shmring.<name>@p<slot>.<owner>     a producer slot's
# It arms a flag in the segment and awaits the socket; the publisher that
# wins the flag sends one byte (_core: ring_consumer, ring_producers).  The byte is only a hint:
# after any wake the waiter looks at the ring itself, so a spurious wake costs
# a look and a lost one cannot happen (docs/design.md, "Doorbells").

_DOORBELL = re.compile(r"(shmring\..+@)(c|p(\d+))\.([0-9a-f]{1,16})\Z")
cdef int MAX_DRAIN = 64             # reads per drain: a flooding sender cannot hold us
cdef uint32_t bound = 0             # doorbells bound by this process: the next one's id


def doorbell_prefix(name):
    """The start of the file names of ring `name`'s doorbells, `shmring.<name>@`.
    A name longer than 40 characters is cut and hashed, so that the longest
    doorbell path fits a socket address; '@' and '~' never occur in a ring's
    name, so a doorbell is never taken for a segment."""
    segment_path(name)                  # the same checks as every name
    if len(name) > 40:
        name = f"{name[:23]}~{hashlib.blake2b(name.encode(), digest_size=8).hexdigest()}"
    return f"shmring.{name}@"


def doorbells(directory=None, name=None):
    """The doorbell files in directory (default segment_dir()), of the ring
    called name or of every ring, as dicts: path, prefix (which ring: see
    doorbell_prefix), role ("consumer" or "producer"), slot (None for the
    consumer), pid, and alive (whether its owner still runs)."""
    directory = segment_dir() if directory is None else directory
    want = None if name is None else doorbell_prefix(name)
    try:
        entries = sorted(os.listdir(directory))
    except FileNotFoundError:
        return []
    out = []
    for entry in entries:
        m = _DOORBELL.match(entry)
        if m is None or (want is not None and m.group(1) != want):
            continue
        owner = int(m.group(4), 16)
        out.append({"path": os.path.join(directory, entry), "prefix": m.group(1),
                    "role": "consumer" if m.group(2) == "c" else "producer",
                    "slot": None if m.group(3) is None else int(m.group(3)),
                    "pid": owner_pid(owner), "alive": _core.owner_alive(owner)})
    return out


cdef remove_stale_doorbells(str path, str name):
    """Remove the doorbells of the dead owners of ring name, whose segment is
    path (a new consumer does it as it opens).  An owner word is never reused, so a live doorbell cannot be
    removed by mistake.  What it may not list or remove (another user's, in a
    sticky directory) stays, for `shmring rm`: opening never fails for it."""
    with contextlib.suppress(OSError):
        for bell in doorbells(os.path.dirname(path) or ".", name):
            if not bell["alive"]:
                with contextlib.suppress(OSError):
                    os.unlink(bell["path"])


def current_async_library():
    """"asyncio" or "trio" (anyio runs on either): what runs the current task.
    sniffio tells them apart where trio or anyio is installed; without it,
    only asyncio can be running."""
    try:
        import sniffio
    except ImportError:
        return "asyncio"
    try:
        lib = sniffio.current_async_library()
    except sniffio.AsyncLibraryNotFoundError:
        raise RuntimeError("awaitable shmring calls need a running asyncio or trio "
                           "event loop") from None
    if lib not in ("asyncio", "trio"):
        raise RuntimeError(f"shmring awaits under asyncio and trio (anyio runs on either), not "
                           f"{lib}; other loops can wait on fileno() with arm() and drain()")
    return lib


def _wake(fut):
    if fut is not None and not fut.done():
        fut.set_result(None)


cdef class Doorbell:
    """The socket an awaiting consumer or producer waits on."""

    def __cinit__(self):
        self.fd = -1

    def __init__(self):
        raise TypeError("a consumer or producer makes its doorbell when it first awaits")

    @staticmethod
    cdef Doorbell bind(Segment seg, RingView *v, int slot, uint64_t owner):
        """Bind the doorbell of the consumer (slot -1) or of a producer slot,
        with the segment's permission bits.  Any file of that name is a
        leftover of this very owner: it is replaced."""
        global bound
        cdef Doorbell bell = Doorbell.__new__(Doorbell)
        cdef sockaddr_un addr
        cdef int n
        bound = bound + 1 if bound < 0xffffffff else 1
        bell.id = bound                 # with the owner in its name: this very socket
        bell.gen = _core.generation()
        n = _core.bell_address(v, slot, owner, &addr)
        path = <bytes>addr.sun_path
        bell.fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)
        if bell.fd < 0:
            e = c_errno.errno
            raise OSError(e, f"cannot make a doorbell socket: {os.strerror(e)}")
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        if c_bind(bell.fd, <sockaddr *>&addr, <socklen_t>n) < 0:
            e = c_errno.errno
            raise OSError(e, f"cannot bind the doorbell {os.fsdecode(path)!r} beside the segment: "
                          f"{os.strerror(e)}; awaiting needs write access to its directory")
        bell.path = path
        os.chmod(path, seg.mode)        # who may ring it: whoever may use the segment
        st = os.lstat(path)
        bell.dev, bell.ino = st.st_dev, st.st_ino
        return bell

    def fileno(self):
        return self.fd

    cdef int drain(self) except -1:
        """Read the rings queued so far; how many there were."""
        cdef int n = 0
        while n < MAX_DRAIN and self.take_ring():
            n += 1
        return n

    cdef bint take_ring(self) noexcept:
        """Read one ring, if one is queued: one system call."""
        cdef char buf[16]
        if recv(self.fd, buf, sizeof(buf), MSG_DONTWAIT) < 0:
            return False
        self.heard += 1
        return True

    def _rung(self):
        """asyncio's reader callback: read the ring and wake the task that
        awaits, if any.  Level-triggered: a ring queued later calls it again."""
        self.take_ring()
        _wake(self.waiter)

    async def wait(self, double seconds):
        """Until a ring, or until `seconds` have passed.  asyncio: the
        descriptor stays registered with the loop (no system call to start or
        end a wait); trio: wait_readable (anyio runs on either)."""
        if current_async_library() == "trio":
            import trio
            self.unregister()
            with trio.move_on_after(seconds):
                await trio.lowlevel.wait_readable(self.fd)
            self.take_ring()
            return
        import asyncio
        loop = asyncio.get_running_loop()
        if self.loop is not loop:
            self.unregister()
            loop.add_reader(self.fd, self._rung)
            self.loop = loop
        self.waiter = loop.create_future()
        timer = loop.call_later(seconds, _wake, self.waiter)
        try:
            await self.waiter
        finally:
            self.waiter = None
            timer.cancel()

    cdef int unregister(self) except -1:
        """Leave the asyncio loop it is registered with.  A forked child only
        forgets it: the parent's loop shares its epoll instance with the child."""
        loop, self.loop = self.loop, None
        if loop is not None and self.gen == _core.generation() and not loop.is_closed():
            loop.remove_reader(self.fd)
        return 0

    cdef int close(self) except -1:
        """Close the socket; remove its name, unless this is a forked child
        (the name is the parent's)."""
        self.unregister()
        if self.fd >= 0:
            c_close(self.fd)
            self.fd = -1
        self.unlink()
        return 0

    cdef void unlink(self) noexcept:
        """Remove its name if the file there is still this socket: the same
        owner may have bound a new doorbell of that name since."""
        cdef struct_stat st
        if self.path is not None and self.gen == _core.generation() and \
                lstat(self.path, &st) == 0 and st.st_dev == self.dev and st.st_ino == self.ino:
            c_unlink(self.path)
        self.path = None

    def __dealloc__(self):
        if self.fd >= 0:
            c_close(self.fd)
        self.unlink()

    def __reduce__(self):
        raise TypeError("a Doorbell cannot be pickled")

# Segment files and their mappings: naming, creating (formatted before it is
# named, mode, pages reserved up front), replacing a stale one, attaching
# (identity checked with messages that say which check failed), and
# unmapping when the last user goes.

cdef extern from "<fcntl.h>" nogil:
    int linkat(int olddirfd, const char *oldpath, int newdirfd, const char *newpath, int flags)
    const int AT_FDCWD
    const int AT_SYMLINK_FOLLOW

_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,199}\Z")
cdef int REPLACE_TRIES = 3              # a stale ring replaced by another process meanwhile: look again


def segment_dir():
    """Where segments live: $SHMRING_DIR, else /dev/shm."""
    return os.environ.get("SHMRING_DIR", "/dev/shm")


def segment_path(name, directory=None):
    """The segment file of the ring called name, in directory (default
    segment_dir())."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(
            f"bad ring name {name!r}: use 1-200 of A-Z a-z 0-9 . _ -, "
            "not starting with '.'")
    return os.path.join(segment_dir() if directory is None else directory, "shmring." + name)


cdef class Segment:
    """One mapping of a segment file.  Rings, producers, consumers and frames
    share it; it is unmapped when the last of them goes."""

    @staticmethod
    cdef Segment map(int fd, uint64_t size, str name, str path):
        cdef Segment seg = Segment.__new__(Segment)
        cdef void *addr = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)
        if addr == MAP_FAILED:
            raise OSError(errno.ENOMEM, f"cannot map {path} ({size} bytes)")
        seg.base = <uint8_t *>addr
        seg.size = size
        seg.name = name
        seg.path = path
        seg.mode = _stat.S_IMODE(os.fstat(fd).st_mode)
        seg.dirfd = -1
        return seg

    cdef int locate_doorbells(self) except -1:
        """Where this process finds the ring's doorbells: beside the segment,
        or, where that path is too long for a socket address (108 bytes with
        the longest name), through /proc/self/fd and a descriptor of the
        directory."""
        directory = os.path.dirname(self.path) or "."
        prefix = os.fsencode(doorbell_prefix(self.name))
        base = os.fsencode(directory) + b"/" + prefix
        if len(base) >= BELL_BASE:     # BELL_BASE leaves room for the longest suffix
            self.dirfd = os.open(directory, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
            base = b"/proc/self/fd/%d/" % self.dirfd + prefix
        memcpy(self.view.bell_base, <char *>base, len(base))
        self.view.bell_len = len(base)
        return 0

    def __dealloc__(self):
        if self.base != NULL:
            munmap(self.base, self.size)
        if self.dirfd >= 0:
            os.close(self.dirfd)


cdef Segment create_segment(str name, uint64_t capacity, uint64_t max_frame, int mode,
                            uint32_t producers, uint64_t start, bint replace_stale):
    """Create a new segment.  If the name is taken: a stale ring is replaced
    when replace_stale, and anything else raises FileExistsError saying what
    is there.  The arguments were validated by Ring.create."""
    cdef Segment seg
    path = segment_path(name)
    for _ in range(REPLACE_TRIES):
        try:
            seg = new_segment(name, path, capacity, max_frame, mode, producers, start)
        except FileExistsError:
            if not (replace_stale and remove_stale(path)):
                raise exists_error(name, path) from None
            remove_stale_doorbells(path, name)  # the stale ring's waiters are all dead
            continue
        seg.locate_doorbells()
        return seg
    raise exists_error(name, path)


cdef Segment new_segment(str name, str path, uint64_t capacity, uint64_t max_frame, int mode,
                         uint32_t producers, uint64_t start):
    """Format the segment in an unnamed file (O_TMPFILE) and only then link it
    to its name: no process ever attaches to a half-made ring, and a creator
    killed half way leaves nothing behind.  Where the filesystem cannot do
    that, the file is made in place (O_EXCL) and removed again on failure."""
    cdef Segment seg
    try:
        fd = os.open(os.path.dirname(path), os.O_TMPFILE | os.O_RDWR | os.O_CLOEXEC, mode)
    except OSError as e:
        if e.errno not in (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL):
            raise
        fd = None
    if fd is not None:
        try:
            seg = format_segment(fd, name, path, capacity, max_frame, mode, producers, start)
            if link_to(fd, path):
                return mapped_by_name(seg, fd, path)
        finally:
            os.close(fd)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    try:
        return format_segment(fd, name, path, capacity, max_frame, mode, producers, start)
    except BaseException:
        os.unlink(path)
        raise
    finally:
        os.close(fd)


cdef Segment format_segment(int fd, str name, str path, uint64_t capacity, uint64_t max_frame,
                            int mode, uint32_t producers, uint64_t start):
    """Size, map and format the file fd as a new ring."""
    cdef Segment seg
    size = _core.data_offset_for(producers) + capacity
    os.fchmod(fd, mode)                 # the umask must not decide who can read frames
    reserve_pages(fd, size, path)
    seg = Segment.map(fd, size, name, path)
    _core.ring_format(seg.base, capacity, max_frame, producers,
                      int.from_bytes(secrets.token_bytes(8), "little"), start)
    if _core.ring_view(&seg.view, seg.base, size) != OK:
        raise RingCorrupted(f"{path} failed validation right after creation")
    return seg


cdef bint link_to(int fd, str path) except -1:
    """Give the unnamed file fd the name path, atomically: FileExistsError if
    the name is taken.  linkat through /proc/self/fd needs no privilege;
    False where it cannot work (no /proc, no hard links)."""
    src = f"/proc/self/fd/{fd}".encode()
    dst = os.fsencode(path)
    if linkat(AT_FDCWD, src, AT_FDCWD, dst, AT_SYMLINK_FOLLOW) == 0:
        return True
    err = c_errno.errno
    if err == errno.EEXIST:
        raise FileExistsError(err, os.strerror(err), path)
    if err in (errno.ENOENT, errno.EPERM, errno.EOPNOTSUPP, errno.EXDEV):
        return False
    raise OSError(err, os.strerror(err), path)


cdef Segment mapped_by_name(Segment seg, int fd, str path):
    """The new segment mapped again through its name, so that /proc/PID/maps
    names it (a mapping made before the link shows as '#inode (deleted)');
    seg itself if the name points elsewhere already."""
    cdef Segment named
    try:
        nfd = os.open(path, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError:
        return seg
    try:
        a, b = os.fstat(nfd), os.fstat(fd)
        if (a.st_dev, a.st_ino) != (b.st_dev, b.st_ino):
            return seg
        named = Segment.map(nfd, seg.size, seg.name, path)
    finally:
        os.close(nfd)
    if _core.ring_view(&named.view, named.base, named.size) != OK:
        return seg
    return named


cdef object remove_stale(str path):
    """Unlink the segment at path if it is stale: its creator, consumer and
    producers all dead (shmring.segments.read_ring judges).  True if the name
    is free now, by us or by another replacer; False if it is in use or not a
    ring.  Replacers take turns (flock) and check that the name still points
    to the file they judged, so none removes a ring that another just made."""
    from shmring import segments
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except FileNotFoundError:
        return True
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            named = os.stat(path, follow_symlinks=False)
        except FileNotFoundError:
            return True
        held = os.fstat(fd)
        if (named.st_dev, named.st_ino) != (held.st_dev, held.st_ino):
            return True                 # replaced meanwhile: the caller looks at the new one
        if not segments.read_ring(path)["stale"]:
            return False
        os.unlink(path)
        return True
    finally:
        os.close(fd)


cdef object exists_error(str name, str path):
    """FileExistsError for a taken name, saying what holds it and the ways out."""
    from shmring import segments
    info = segments.read_ring(path)
    if info["stale"]:
        why = (f"ring {name!r} already exists and is stale: its creator, consumer and "
               "producers are all dead.  Replace it with Ring.create(..., replace_stale=True), "
               f"or remove it with `shmring rm {name}`")
    elif info["error"]:
        why = f"{path} already exists and is not a usable ring ({info['error']})"
    else:
        why = (f"ring {name!r} already exists and is in use ({', '.join(segments.users(info))}); "
               "attach to it with Ring.attach() or Ring.open_or_create(), or pick another name")
    return FileExistsError(errno.EEXIST, why, path)


cdef Segment attach_segment(str name, object directory):
    """Map an existing segment after checking that it is a ring we can read."""
    cdef Segment seg
    path = segment_path(name, directory)
    fd = open_segment(path)
    try:
        st = os.fstat(fd)
        if not _stat.S_ISREG(st.st_mode):
            raise IncompatibleRing(f"{path} is not a regular file")
        check_identity(fd, path, st.st_size)
        seg = Segment.map(fd, st.st_size, name, path)
    finally:
        os.close(fd)
    if _core.ring_view(&seg.view, seg.base, seg.size) != OK:
        raise IncompatibleRing(f"{path} failed header validation")
    seg.locate_doorbells()
    return seg


cdef object open_segment(str path):
    """Open an existing segment for attach, with errors that say why."""
    try:
        return os.open(path, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise IncompatibleRing(f"{path} is a symbolic link; shmring does not follow "
                                   "links in the segment directory") from None
        if e.errno in (errno.EISDIR, errno.ENXIO):
            raise IncompatibleRing(f"{path} is not a regular file") from None
        if e.errno in (errno.EACCES, errno.EPERM):
            try:
                st = os.lstat(path)
                who = f"owned by uid {st.st_uid} with mode {_stat.S_IMODE(st.st_mode):04o}"
            except OSError:
                who = "not accessible"
            raise PermissionError(
                e.errno, f"cannot attach to {path}: it is {who} and this process runs as "
                f"uid {os.geteuid()}; create rings with mode= for other users", path) from None
        raise


cdef check_identity(int fd, str path, uint64_t size):
    """Check what a foreign segment claims to be, with messages that say
    which check failed; ring_view then re-checks everything it relies on."""
    if size < sizeof(SegmentHeader):
        raise IncompatibleRing(f"{path} is {size} bytes, too small for a shmring header")
    raw = os.pread(fd, 24, 0)
    magic, version, offset, capacity = struct.unpack("=QIIQ", raw[:24])
    if magic == 0 and version == 0:
        raise IncompatibleRing(f"{path} is not initialized yet (or not a shmring segment)")
    if magic != MAGIC:
        raise IncompatibleRing(f"{path} is not a shmring segment (bad magic {magic:#x})")
    if version != VERSION:
        raise IncompatibleRing(
            f"{path} has layout version {version}; this shmring reads version {VERSION}")
    if capacity < MIN_CAPACITY or capacity & (capacity - 1):
        raise IncompatibleRing(f"{path} has an invalid capacity {capacity}")
    if offset + capacity != size:
        raise IncompatibleRing(
            f"{path} is {size} bytes but its header describes {offset + capacity}")


cdef reserve_pages(int fd, uint64_t size, str path):
    """Give the segment its pages now, so a full tmpfs fails here with a clear
    error instead of SIGBUS on first touch."""
    try:
        os.posix_fallocate(fd, 0, size)
    except OSError as e:
        if e.errno in (errno.EOPNOTSUPP, errno.EINVAL):
            os.ftruncate(fd, size)
            return
        if e.errno in (errno.ENOSPC, errno.EFBIG):
            where = os.path.dirname(path)
            hint = ("Docker's default /dev/shm is 64 MB: raise it with --shm-size, "
                    if where == "/dev/shm" else "free space there, ")
            raise OSError(
                e.errno, f"no room for a {size}-byte ring in {where} "
                f"({os.strerror(e.errno)}).  {hint}or pick a smaller capacity", path) from None
        raise


def _attach_in(name, directory):
    """Unpickle a Ring: attach by name, in the directory it was created in."""
    return Ring.wrap(attach_segment(name, directory))

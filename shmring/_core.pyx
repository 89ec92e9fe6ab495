# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""The ring algorithms.  docs/design.md explains the protocol; each acquire
and release below names the operation it pairs with."""
from libc.errno cimport errno, EINTR, ENOENT, ESRCH, ETIMEDOUT
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t, int64_t, uintptr_t
from libc.stdio cimport snprintf
from libc.stdlib cimport strtoull
from libc.string cimport memcpy, memset, strrchr, strstr
from posix.fcntl cimport open as c_open, O_RDONLY, O_CLOEXEC
from posix.time cimport clock_gettime, CLOCK_MONOTONIC, CLOCK_REALTIME, timespec as c_timespec
from posix.unistd cimport read, close as c_close, getpid
from posix.signal cimport kill

from shmring.includes.atomics cimport (
    RELAXED, ACQUIRE, RELEASE, SEQ_CST, load64, store64, cas64, fetch_add64,
    load32, store32, exchange32, fetch_add32, cas32, cpu_relax)
from shmring.includes.futex cimport (
    FUTEX_WAIT, FUTEX_WAKE, SYS_futex, timespec, syscall, sched_yield)
from shmring.includes.sockets cimport (
    AF_UNIX, SOCK_DGRAM, SOCK_CLOEXEC, MSG_DONTWAIT, MSG_NOSIGNAL, sockaddr, sockaddr_un,
    socklen_t, socket, sendto, connect, send)
from shmring.includes.debug cimport debug_assert
from shmring.includes.stream cimport HAVE_STREAM, load128, stream128
from shmring.includes.lab cimport (
    LAB_BUILD, pause_point, lab_attach, lab_notes_attach, lab_load, lab_store, lab_data_mark,
    lab_space_mark, lab_seal_mark, lab_sealing, lab_deciding, lab_lost)
from shmring.includes.mutants cimport (
    COMMIT_ORDER, CLAIM_STATE, PAD_SHORT, RECOVERY, SEAL_RINGS, tag_mismatch, no_room,
    handshake_fence, stream_fence, seal_cas, bell_recheck, REWIND_SPAN, sleep_seq, freed,
    pad_needed, RECOVER_ORDER, OWNER_ORDER, rewind_watched)
from shmring.layout cimport (
    SegmentHeader, Slot, RecordHeader, MAGIC, VERSION, LINE, ALIGN, RECORD_HEADER,
    MIN_CAPACITY, DEFAULT_SLOTS, MAX_NDIM, BUSY, COMMITTED, PAD, RELEASED, STATE_MASK,
    TAIL_SEALED)

cdef extern from "<pthread.h>" nogil:
    int pthread_atfork(void (*prepare)() noexcept nogil,
                       void (*parent)() noexcept nogil,
                       void (*child)() noexcept nogil)

# Pause point ids for the stress lab (see stress/).
cdef enum:
    P_CLAIM_CAS = 1         # intent written, tail not yet claimed
    P_CLAIMED = 2           # tail claimed, no header written yet
    P_BUSY = 3              # BUSY header written, payload not yet
    P_COMMIT = 4            # payload written, about to commit
    P_COMMITTED = 5         # committed, waiter not yet woken
    P_PAYLOAD = 6           # half of a payload copied (copy_payload)
    P_HEADER = 7            # consumer about to load a record's commit word
    P_HEAD = 8              # consumer stored head, producers not yet woken
    P_DATA_WAIT = 9         # consumer announced itself as waiter, not re-checked
    P_SPACE_WAIT = 10       # producer announced itself as waiter, not re-checked
    P_SEAL = 11             # sealer loaded tail, not yet sealed it (CAS)
    P_SEALED = 12           # tail sealed, sleepers not yet woken
    P_DATA_ARM = 13         # awaiting consumer found nothing, doorbell not armed yet
    P_DATA_ARMED = 14       # awaiting consumer armed its doorbell, not re-checked
    P_SPACE_ARMED = 15      # awaiting producer armed its doorbell, not re-checked
    P_DATA_RING = 16        # producer won the consumer's doorbell flag, not rung yet
    P_SPACE_RING = 17       # consumer won a producer's doorbell flag, not rung yet
    P_DATA_SLEEP = 18       # consumer re-checked, found nothing, about to sleep
    P_SPACE_SLEEP = 19      # producer re-checked, found no room, about to sleep
    P_REWIND = 20           # producer chose to rewind (head loaded), no intent written yet
    P_WAITING = 21          # consumer announced it waits at its cursor (consumer_waiting_at), not polled yet

LAB_POINTS = {"claim_cas": P_CLAIM_CAS, "claimed": P_CLAIMED, "busy": P_BUSY,
              "payload": P_PAYLOAD, "commit": P_COMMIT, "committed": P_COMMITTED,
              "header": P_HEADER, "head": P_HEAD, "data_wait": P_DATA_WAIT,
              "space_wait": P_SPACE_WAIT, "seal": P_SEAL, "sealed": P_SEALED,
              "data_arm": P_DATA_ARM, "data_armed": P_DATA_ARMED,
              "space_armed": P_SPACE_ARMED, "data_ring": P_DATA_RING,
              "space_ring": P_SPACE_RING, "data_sleep": P_DATA_SLEEP,
              "space_sleep": P_SPACE_SLEEP, "rewind": P_REWIND, "waiting": P_WAITING}

# The lab's marks of a wake decision (includes/lab.pxd): low bits of a position.
cdef enum:
    LAB_DECIDING = 1
    LAB_DONE = 2
    LAB_TOOK = 4                    # took the futex flag (and bumped, and woke)
    LAB_RANG = 8                    # won the doorbell flag (and rang)


def lab_enabled():
    """True in a lab build (SHMRING_LAB=1): pause points are compiled in."""
    return bool(LAB_BUILD)


def _lab_install(size_t free_word, size_t cell):
    """Park this process at every pause point until the coordinator grants
    a turn (stress/control.py owns the layout).  Lab builds only."""
    if not lab_attach(<void *>free_word, <void *>cell):
        raise RuntimeError("pause points are compiled out: rebuild with SHMRING_LAB=1")


def _lab_notes(size_t notes):
    """Keep the handshake notes (includes/lab.pxd) in the shared area at
    address notes, with or without pause points.  Lab builds only."""
    if not lab_notes_attach(<void *>notes):
        raise RuntimeError("the lab's notes are compiled out: rebuild with SHMRING_LAB=1")


def _lab_futex_wait(size_t word, uint32_t seen, double timeout):
    """Sleep while the 32-bit word at address word holds seen, for at most
    timeout seconds (a wake, a signal or a changed word end it sooner).  The
    lab's coordinator waits on its control segment with this: the syscall's
    number comes from this machine's headers.  Lab builds only."""
    if not LAB_BUILD:
        raise RuntimeError("the lab's futex is compiled out: rebuild with SHMRING_LAB=1")
    with nogil:
        futex_wait(<uint32_t *>word, seen, <int64_t>(timeout * 1e9))


def _lab_futex_wake(size_t word, int count):
    """Wake up to count waiters on the 32-bit word at address word.  Lab builds only."""
    if not LAB_BUILD:
        raise RuntimeError("the lab's futex is compiled out: rebuild with SHMRING_LAB=1")
    futex_wake(<uint32_t *>word, count)


cdef int64_t WAIT_SLICE_NS = 100_000_000    # wake to re-check liveness and signals

# The adaptive poll (spin=None, the default).  Waking a sleeper
# costs the waker a futex_wake and the sleeper a trip through the scheduler:
# on another CPU that is microseconds, and tens of them where the CPU is a
# virtual one that halted (an IPI and a VM exit).  Polling first skips all of
# it when the frame comes that soon.  The window follows the waits, as the
# kernel's cpuidle-haltpoll does: a sleep that ended within POLL_USEFUL_NS of
# the wait's start doubles it (up to POLL_MAX_NS), a longer one halves it, so
# a consumer whose frames come far apart sleeps at once.  The cap must exceed
# a wake-up: two processes in a ping-pong that both sleep see each wait take
# two wake-ups, and only a window longer than one lets them both stay awake.

cdef int64_t POLL_MIN_NS = 2_000
cdef int64_t POLL_MAX_NS = 64_000
cdef int64_t POLL_USEFUL_NS = 200_000

cdef uint64_t PID_MASK = (1 << PID_BITS) - 1
cdef uint64_t START_MASK = (1 << 40) - 1
cdef uint64_t UNKNOWN_START = <uint64_t>-1

# --- clocks and processes ---------------------------------------------------

cdef int64_t now_ns() noexcept nogil:
    cdef c_timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return <int64_t>ts.tv_sec * 1_000_000_000 + ts.tv_nsec

cdef int64_t wall_ns() noexcept nogil:
    cdef c_timespec ts
    clock_gettime(CLOCK_REALTIME, &ts)
    return <int64_t>ts.tv_sec * 1_000_000_000 + ts.tv_nsec

cdef bint group_has_threads(int pid) noexcept nogil:
    """Whether a zombie thread-group leader still has live threads: a leader
    that called pthread_exit shows Z while its process runs on."""
    cdef char path[64]
    cdef char buf[4096]
    cdef char *p
    cdef int fd
    cdef long n
    snprintf(path, sizeof(path), "/proc/%d/status", pid)
    fd = c_open(path, O_RDONLY | O_CLOEXEC)
    if fd < 0:
        return False
    n = read(fd, buf, sizeof(buf) - 1)
    c_close(fd)
    if n <= 0:
        return False
    buf[n] = 0
    p = strstr(buf, "\nThreads:")
    return p != NULL and strtoull(p + 9, NULL, 10) > 1

cdef uint64_t proc_starttime(int pid) noexcept nogil:
    """Start time of pid in clock ticks; 0 if its thread group is gone or a
    zombie, and UNKNOWN_START if /proc cannot tell (then it is assumed alive)."""
    cdef char path[64]
    cdef char buf[1024]
    cdef char *p
    cdef int fd, _field
    cdef long n
    snprintf(path, sizeof(path), "/proc/%d/stat", pid)
    fd = c_open(path, O_RDONLY | O_CLOEXEC)
    if fd < 0:
        if errno != ENOENT and errno != ESRCH:
            return UNKNOWN_START
        # /proc may hide other users' processes (hidepid): only ESRCH is proof.
        return 0 if kill(pid, 0) == -1 and errno == ESRCH else UNKNOWN_START
    n = read(fd, buf, sizeof(buf) - 1)
    c_close(fd)
    if n <= 0:
        return 0 if n == 0 else UNKNOWN_START
    buf[n] = 0
    p = strrchr(buf, c')')             # the command name may hold ')' itself
    if p == NULL or p[1] == 0 or p[2] == 0:
        return UNKNOWN_START
    if (p[2] == c'Z' or p[2] == c'X') and not group_has_threads(pid):
        return 0
    p += 2                              # field 3 (state); starttime is field 22
    for _field in range(3, 22):
        while p[0] != 0 and p[0] != c' ':
            p += 1
        if p[0] == 0:
            return UNKNOWN_START
        p += 1
    return strtoull(p, NULL, 10) & START_MASK

cdef uint64_t cached_owner = 0

cdef unsigned long fork_generation = 0

cdef void forget_owner() noexcept nogil:
    global cached_owner, fork_generation
    cached_owner = 0                    # a forked child is a new process
    fork_generation += 1

cdef unsigned long generation() noexcept nogil:
    """Changes in a child after fork: state from the parent is stale."""
    return fork_generation

pthread_atfork(NULL, NULL, forget_owner)

cdef uint64_t self_owner() noexcept nogil:
    """This process as an owner word: pid plus start time, since pids are
    reused and a recycled pid must not look like the dead owner."""
    global cached_owner
    cdef int pid
    cdef uint64_t start
    if cached_owner != 0:
        return cached_owner
    pid = getpid()
    start = proc_starttime(pid)
    if start == UNKNOWN_START:
        return <uint64_t>pid & PID_MASK  # start 0: judged by the pid alone; retried next time
    cached_owner = (start << PID_BITS) | (<uint64_t>pid & PID_MASK)
    return cached_owner


def alive(uint64_t owner):
    """Whether the process in an owner word still runs (for shmring ls)."""
    return owner_alive(owner)


def pid_of(uint64_t owner):
    """The pid in an owner word; None for a free word (for shmring ls)."""
    return owner_pid(owner)


cdef bint owner_alive(uint64_t owner) noexcept nogil:
    cdef uint64_t start
    if owner == 0:
        return False
    start = proc_starttime(<int>(owner & PID_MASK))
    if start == UNKNOWN_START or (start != 0 and owner >> PID_BITS == 0):
        return True                     # cannot tell, or the owner's start was unknown
    return start != 0 and start == (owner >> PID_BITS)

# --- futex ------------------------------------------------------------------

cdef int futex_wait(uint32_t *word, uint32_t seen, int64_t timeout_ns) noexcept nogil:
    cdef timespec ts
    ts.tv_sec = timeout_ns // 1_000_000_000
    ts.tv_nsec = timeout_ns % 1_000_000_000
    if syscall(SYS_futex, word, <int>FUTEX_WAIT, <unsigned int>seen, &ts, NULL, 0) == -1:
        if errno == EINTR or errno == ETIMEDOUT:
            return INTERRUPTED          # let the caller check signals and stalls
    return OK

cdef void futex_wake(uint32_t *word, int count) noexcept nogil:
    syscall(SYS_futex, word, <int>FUTEX_WAKE, count, NULL, NULL, 0)

cdef int64_t slice_until(int64_t deadline) noexcept nogil:
    cdef int64_t left = deadline - now_ns()
    return WAIT_SLICE_NS if left > WAIT_SLICE_NS else left

# The wakers' half of the two handshakes (docs/design.md, "Waiting"), called
# after the caller published (a commit, head, the seal) and ran its fence.

cdef bint wake_consumer(SegmentHeader *h) noexcept nogil:
    """Whether we took the flag (and so woke the consumer): the lab notes it."""
    if load32(&h.data_waiting, RELAXED) and exchange32(&h.data_waiting, 0, RELAXED):
        fetch_add32(&h.data_seq, 1, RELEASE)  # pairs with wait_for_data's acquire load of data_seq
        futex_wake(&h.data_seq, 1)
        fetch_add64(&h.wakeups_to_consumer, 1, RELAXED)
        return True
    return False

cdef bint wake_producers(SegmentHeader *h) noexcept nogil:
    """Whether we took the flag (and so woke the waiting producers)."""
    if load32(&h.space_waiting, RELAXED) and exchange32(&h.space_waiting, 0, RELAXED):
        fetch_add32(&h.space_seq, 1, RELEASE)  # pairs with wait_for_space's acquire load of space_seq
        futex_wake(&h.space_seq, 0x7fffffff)
        fetch_add64(&h.wakeups_to_producers, 1, RELAXED)
        return True
    return False

# --- doorbells --------------------------------------------------------------
# An awaiting consumer or producer owns a unix datagram socket bound beside
# the segment (_ring's doorbell.pxi) and arms a flag in the segment; whoever
# wins the flag with an exchange sends it one byte.  The byte is only a hint
# that wakes an event loop: the waiter always looks at the ring itself.

cdef uint32_t bell_sender = 0       # this process's sending socket + 1; 0 until the first ring

cdef int sender() noexcept nogil:
    """The unbound socket this process rings doorbells with, made on first
    use (a forked child shares its parent's: it only sends)."""
    cdef uint32_t none = 0
    cdef int fd
    if load32(&bell_sender, RELAXED) == 0:
        fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0)
        if fd < 0:
            return -1
        if not cas32(&bell_sender, &none, <uint32_t>fd + 1, False, RELAXED, RELAXED):  # the fd only
            c_close(fd)                 # another thread made one first
    return <int>load32(&bell_sender, RELAXED) - 1

cdef int bell_address(RingView *v, int slot, uint64_t owner, void *addr) noexcept nogil:
    """Fill the sockaddr_un of a doorbell: the consumer's (slot -1) or a
    producer slot's.  Its name carries the owner word, so a stale doorbell is
    told from a live one by its name alone.  Returns the address length, 0
    if the ring has no doorbell directory."""
    cdef sockaddr_un *a = <sockaddr_un *>addr
    cdef int n
    if v.bell_len == 0:
        return 0
    a.sun_family = AF_UNIX
    memcpy(a.sun_path, v.bell_base, v.bell_len)
    if slot < 0:
        n = snprintf(a.sun_path + v.bell_len, sizeof(a.sun_path) - v.bell_len,
                     "c.%llx", <unsigned long long>owner)
    else:
        n = snprintf(a.sun_path + v.bell_len, sizeof(a.sun_path) - v.bell_len,
                     "p%d.%llx", slot, <unsigned long long>owner)
    return <int>((a.sun_path - <char *>a) + v.bell_len + n + 1)

cdef void ring_bell(RingView *v, int slot, uint64_t owner) noexcept nogil:
    """One byte to a doorbell, never blocking.  A full queue means a ring is
    pending already; a missing or closed doorbell (ENOENT, ECONNREFUSED) is a
    waiter that is gone.  Either way the ring is the truth: errors are ignored."""
    cdef sockaddr_un addr
    cdef char one = 1
    cdef int n
    if owner == 0:
        return                          # nobody there to wake
    n = bell_address(v, slot, owner, &addr)
    if n == 0:
        return
    fetch_add64(&v.hdr.doorbell_rings, 1, RELAXED)    # a statistic: orders nothing
    sendto(sender(), &one, 1, MSG_DONTWAIT | MSG_NOSIGNAL, <sockaddr *>&addr, <socklen_t>n)

cdef void ring_consumer(ProducerState *p, uint64_t owner, uint32_t bell) noexcept nogil:
    """Ring the consumer's doorbell through this producer's socket connected
    to it: its path is looked up once per doorbell, not once per ring.  The
    flag's value names the doorbell (a consumer that closed and opened again
    binds a new one of the same name), so a send that fails only means the
    consumer is gone: one wasted system call, and no retry."""
    cdef sockaddr_un addr
    cdef char one = 1
    cdef int n
    if owner == 0:
        return
    fetch_add64(&p.ring.hdr.doorbell_rings, 1, RELAXED)    # a statistic: orders nothing
    if p.bell_fd >= 0 and p.bell_owner == owner and p.bell_id == bell:
        send(p.bell_fd, &one, 1, MSG_DONTWAIT | MSG_NOSIGNAL)
        return
    if p.bell_fd < 0:
        p.bell_fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0)
    n = bell_address(&p.ring, -1, owner, &addr)
    p.bell_owner, p.bell_id = owner, bell
    if p.bell_fd >= 0 and n and connect(p.bell_fd, <sockaddr *>&addr, <socklen_t>n) == 0:
        send(p.bell_fd, &one, 1, MSG_DONTWAIT | MSG_NOSIGNAL)

cdef void ring_producers(RingView *v) noexcept nogil:
    """Ring every producer whose slot flag we win (advance_head won the
    summary flag).  O(slots), paid only while some producer awaits room."""
    cdef uint32_t i
    cdef Slot *s
    for i in range(v.nslots):
        s = &v.slots[i]
        if load32(&s.bell, RELAXED) and exchange32(&s.bell, 0, RELAXED):
            pause_point(P_SPACE_RING)
            ring_bell(v, <int>i, load64(&s.owner, RELAXED))

cdef void ring_waiters(RingView *v) noexcept nogil:
    """The seal's doorbells: ring every armed waiter, the consumer and each
    producer, as wake_consumer and wake_producers wake the sleepers."""
    cdef SegmentHeader *h = v.hdr
    if load32(&h.data_bell, RELAXED) and exchange32(&h.data_bell, 0, RELAXED):
        ring_bell(v, -1, load64(&h.consumer, RELAXED))
    if load32(&h.space_bell, RELAXED) and exchange32(&h.space_bell, 0, ACQUIRE):  # pairs with producer_arm's release exchange: slot flags are visible
        ring_producers(v)

# --- layout -----------------------------------------------------------------

cdef uint64_t max_frame_for(uint64_t capacity) noexcept nogil:
    # With padding at the wrap a record of size s always fits once
    # 2*s - 64 <= capacity; capacity/2 keeps that bound simple.
    return capacity // 2 - RECORD_HEADER

cdef uint64_t data_offset_for(uint32_t nslots) noexcept nogil:
    cdef uint64_t end = sizeof(SegmentHeader) + <uint64_t>nslots * sizeof(Slot)
    return (end + 4095) & ~<uint64_t>4095

# Lab builds stream every aligned copy of a line or more, so that the soaks
# run the streaming path and its fence with frames of every size.
cdef size_t STREAM_LEAST = 64 if LAB_BUILD else STREAM_MIN
cdef uint64_t streamed = 0          # copies that took the streaming path

cdef size_t stream_threshold() noexcept nogil:
    """The smallest copy a nontemporal producer streams; 0 where the CPU
    has no streaming stores (it then always copies with memcpy)."""
    return STREAM_LEAST if HAVE_STREAM else 0


def streamed_copies():
    """How many copies this process has streamed (for tests)."""
    return load64(&streamed, RELAXED)


cdef void copy_payload(uint8_t *dst, const uint8_t *src, size_t n,
                       bint nontemporal) noexcept nogil:
    """Fill a claimed payload: every copy into the ring goes through here.
    Lab builds copy in two halves with a pause point between, split on a line
    so that both halves can stream."""
    cdef size_t half
    cdef bint streamed_any
    if not LAB_BUILD:
        streamed_any = copy_span(dst, src, n, nontemporal)
    else:
        half = (n // 2) & ~<size_t>63
        streamed_any = copy_span(dst, src, half, nontemporal)
        pause_point(P_PAYLOAD)
        streamed_any |= copy_span(dst + half, src + half, n - half, nontemporal)
    if streamed_any:
        fetch_add64(&streamed, 1, RELAXED)    # a statistic: orders nothing

cdef bint copy_span(uint8_t *dst, const uint8_t *src, size_t n,
                    bint nontemporal) noexcept nogil:
    """memcpy; with nontemporal, a copy of STREAM_LEAST bytes or more uses
    streaming stores, which skip the cache: they do not first read each
    destination line (in a ring larger than the cache it is a lap old and
    cold) and do not evict anyone's working set.  docs/usage.md says when
    that pays.  True if it streamed."""
    cdef size_t i = 0
    if not nontemporal or not HAVE_STREAM or n < STREAM_LEAST or <uintptr_t>dst % 16:
        memcpy(dst, src, n)
        return False
    while i + 64 <= n:
        stream128(dst + i, load128(src + i))
        stream128(dst + i + 16, load128(src + i + 16))
        stream128(dst + i + 32, load128(src + i + 32))
        stream128(dst + i + 48, load128(src + i + 48))
        i += 64
    memcpy(dst + i, src + i, n - i)
    # Streaming stores are weakly ordered even on x86, so they need their own fence:
    stream_fence()  # orders them before publish's release store, which poll's acquire load pairs with
    return True

cdef void ring_format(uint8_t *base, uint64_t capacity, uint64_t max_frame,
                      uint32_t nslots, uint64_t secret, uint64_t start) noexcept nogil:
    """Lay out a fresh, zero-filled segment.  The magic is stored last, so an
    attacher that sees it sees a complete header."""
    cdef SegmentHeader *h = <SegmentHeader *>base
    h.version = VERSION
    h.data_offset = <uint32_t>data_offset_for(nslots)
    h.capacity = capacity
    h.max_frame = max_frame
    h.secret = secret & ~<uint64_t>STATE_MASK
    h.nslots = nslots
    h.header_size = sizeof(SegmentHeader)
    h.creator = self_owner()
    h.created_ns = wall_ns()
    h.tail = start
    h.head = start
    store64(&h.magic, MAGIC, RELEASE)  # pairs with ring_view's acquire load of magic

cdef int ring_view(RingView *v, uint8_t *base, uint64_t size) noexcept nogil:
    """Validate a mapped segment and fill v; ERR_CORRUPT if anything is off."""
    cdef SegmentHeader *h = <SegmentHeader *>base
    cdef uint64_t cap, offset
    if size < sizeof(SegmentHeader):
        return ERR_CORRUPT
    if load64(&h.magic, ACQUIRE) != MAGIC:  # pairs with ring_format's release store of magic
        return ERR_CORRUPT
    cap = h.capacity
    if h.version != VERSION or h.header_size != sizeof(SegmentHeader):
        return ERR_CORRUPT
    if cap < MIN_CAPACITY or cap & (cap - 1) or cap > (<uint64_t>1 << 46):
        return ERR_CORRUPT
    if h.nslots == 0 or h.nslots > 65535:
        return ERR_CORRUPT
    offset = data_offset_for(h.nslots)
    if h.data_offset != offset or size != offset + cap:
        return ERR_CORRUPT
    if h.max_frame > max_frame_for(cap):
        return ERR_CORRUPT
    v.hdr = h
    v.slots = <Slot *>(base + sizeof(SegmentHeader))
    v.data = base + offset
    v.capacity = cap
    v.mask = cap - 1
    v.secret = h.secret & ~<uint64_t>STATE_MASK
    v.max_frame = h.max_frame
    v.nslots = h.nslots
    return OK

# --- end of stream ----------------------------------------------------------

cdef bint ring_seal(RingView *v) noexcept nogil:
    """Close the ring to new frames: set TAIL_SEALED in tail.  A claim whose
    CAS on tail came first is delivered; one after it fails its CAS or sees
    the bit, and is refused.  Wakes every sleeper and rings every armed
    doorbell, so that the consumer sees the end and waiting producers their
    refusal.  True if this call sealed it."""
    cdef SegmentHeader *h = v.hdr
    cdef uint64_t tail = load64(&h.tail, RELAXED)
    while not tail & TAIL_SEALED:
        pause_point(P_SEAL)
        if seal_cas(&h.tail, &tail, tail | TAIL_SEALED):  # release pairs with poll's acquire load of tail (continuing the claims' release sequence)
            pause_point(P_SEALED)
            lab_store(lab_seal_mark(), LAB_DECIDING)
            handshake_fence()  # SEQ_CST; pairs with the fences of wait_for_data, wait_for_space and the two arms: we see their flags, or they see the seal
            wake_consumer(h)
            wake_producers(h)
            if SEAL_RINGS:
                ring_waiters(v)
            lab_store(lab_seal_mark(), LAB_DONE)
            return True
    return False

cdef bint ring_sealed(RingView *v) noexcept nogil:
    return (load64(&v.hdr.tail, RELAXED) & TAIL_SEALED) != 0  # a report: orders nothing

# --- producer ---------------------------------------------------------------

cdef int producer_open(ProducerState *p, RingView *v) noexcept nogil:
    """Take a free slot, or one whose owner died with no claim still inside
    the ring.  Returns the slot index, or -1 when all are in use."""
    cdef uint64_t me = self_owner(), owner, head, end
    cdef uint32_t i
    cdef Slot *s
    memset(p, 0, sizeof(ProducerState))
    p.ring = v[0]
    p.bell_fd = -1
    p.poll_ns = POLL_MAX_NS                # start awake, as a consumer does
    head = load64(&v.hdr.head, ACQUIRE)  # pairs with advance_head's release store of head
    for i in range(v.nslots):
        s = &v.slots[i]
        owner = load64(&s.owner, ACQUIRE)  # pairs with producer_close's release store of owner
        if owner != 0:
            if owner_alive(owner):
                continue
            # A dead owner's claim may still await recovery by the consumer.
            end = load64(&s.intent_pos, RELAXED) + load64(&s.intent_len, RELAXED)
            if load64(&s.intent_len, RELAXED) != 0 and end - head - 1 < v.capacity:
                continue
        if cas64(&s.owner, &owner, me, False, ACQUIRE, RELAXED):  # acquire pairs with producer_close's release store of owner
            store64(&s.intent_len, 0, RELAXED)
            store32(&s.bell, 0, RELAXED)   # a dead owner's armed flag would only cost a ring
            store64(&s.opens, s.opens + 1, RELAXED)
            p.slot = i
            p.head_cache = head
            return <int>i
    return -1

cdef void producer_close(ProducerState *p) noexcept nogil:
    if p.reserved:
        producer_abort(p)
    producer_disarm(p)
    if p.bell_fd >= 0:
        c_close(p.bell_fd)
        p.bell_fd = -1
    store64(&p.ring.slots[p.slot].owner, 0, OWNER_ORDER)  # RELEASE; pairs with producer_open's acquire of owner

cdef inline uint64_t claim_total(RingView *v, uint64_t tail, uint64_t need) noexcept nogil:
    """Bytes to claim at tail: the record, plus padding if it would wrap."""
    cdef uint64_t room = v.capacity - (tail & v.mask)
    return need + room if pad_needed(room, need) else need

# Rewinding (docs/design.md, "Rewind"): a claim at least rewind_at bytes
# into a lap looks at head (at most once per an eighth of that in claims) and,
# when the consumer is waiting for a record (inside a receive or an await)
# holding no frame, the start of the next lap is released, and rewind_at bytes
# of room would still be left, pads to the end of the lap and puts its record
# there.  A ring that the consumer keeps nearly empty then reuses the memory
# it just released, still in the cache, instead of walking its whole
# capacity.  The padding holds its room until the consumer passes it: a
# waiting consumer passes it as it receives on (often still behind the tail:
# it wakes after the producer has claimed again), while one that is not
# receiving (a single-threaded program putting a burst before it gets) would
# leave a burst that much less room than the ring has; a held frame in front
# of it would pin it too.  Lab builds rewind from a quarter of the ring, so
# that small rings do it.
cdef uint64_t REWIND_AT = 1 << 20

cdef inline uint64_t rewind_at(RingView *v) noexcept nogil:
    return v.capacity // 4 if LAB_BUILD else REWIND_AT

cdef uint64_t rewind_total(ProducerState *p, uint64_t tail, uint64_t need) noexcept nogil:
    """Bytes to claim at tail to rewind: padding to the end of the lap, then
    the record; 0 to claim as usual."""
    cdef RingView *v = &p.ring
    cdef uint64_t room = v.capacity - (tail & v.mask), least = rewind_at(v)
    if not p.rewind or tail & v.mask < least or room < need or tail - p.looked < least // 8:
        return 0
    p.looked = tail
    if load64(&v.hdr.held_frames, RELAXED) != 0:  # a hint that orders nothing: room is checked below
        return 0
    # Another hint (a stale one costs cache or a burst's room, never correctness:
    # room is checked below): the consumer is waiting for a record.
    if not rewind_watched(load64(&v.hdr.consumer_waiting_at, RELAXED)):
        return 0
    p.head_cache = load64(&v.hdr.head, ACQUIRE)  # pairs with advance_head's release store of head
    if no_room(tail, p.head_cache, REWIND_SPAN(room, need) + least, v.capacity):
        return 0                        # the next lap's start is not released (or barely)
    pause_point(P_REWIND)
    return room + need

cdef bint may_claim(ProducerState *p, uint64_t need) noexcept nogil:
    """Room for need bytes, or the ring is sealed: either way the claim
    should look again (and report the seal)."""
    cdef RingView *v = &p.ring
    cdef uint64_t tail = load64(&v.hdr.tail, RELAXED)
    if tail & TAIL_SEALED:
        return True
    p.head_cache = load64(&v.hdr.head, ACQUIRE)  # pairs with advance_head's release store of head
    return (tail - p.head_cache) + claim_total(v, tail, need) <= v.capacity

cdef int wait_for_space(ProducerState *p, uint64_t need, int64_t deadline) noexcept nogil:
    """Sleep until head may have moved or the ring was sealed.  OK means "try again"."""
    cdef SegmentHeader *h = p.ring.hdr
    cdef uint32_t seq
    cdef uint64_t consumer
    cdef int64_t timeout
    cdef bint due
    cdef int st
    if p.spun_for != p.head_cache + 1:     # poll once per head, not every wait slice
        p.spun_for = p.head_cache + 1
        p.wait_began = now_ns()
        if poll_for_room(p, need, deadline):
            return OK
    seq = load32(&h.space_seq, ACQUIRE)  # pairs with wake_producers' release increment of space_seq
    store32(&h.space_waiting, 1, RELAXED)
    pause_point(P_SPACE_WAIT)
    handshake_fence()  # SEQ_CST; pairs with advance_head's and ring_seal's fences: we see head or the seal, or they see our flag
    if may_claim(p, need):
        return OK
    timeout = slice_until(deadline)
    if timeout > 0:
        fetch_add64(&p.ring.slots[p.slot].full_waits, 1, RELAXED)
        pause_point(P_SPACE_SLEEP)
        due = LAB_BUILD and space_answered(p)
        st = futex_wait(&h.space_seq, seq, timeout)
        if due and st == INTERRUPTED and errno == ETIMEDOUT:
            lab_lost(1, p.head_cache)   # slept to the timeout through a wake that was due
        if p.spin == SPIN_ADAPT:
            p.poll_ns = poll_window_after(p.poll_ns, now_ns() - p.wait_began)
        if st == OK:
            return OK                   # woken: head moved, or the seal
    # A slice passed without a wake (or a signal came): is anyone still
    # reading?  Asked only now, since it reads /proc, a syscall per wait.
    consumer = load64(&h.consumer, RELAXED)
    if consumer != 0 and not owner_alive(consumer):
        return ERR_CONSUMER_GONE
    return TIMEOUT if timeout <= 0 else INTERRUPTED


cdef bint space_answered(ProducerState *p) noexcept nogil:
    """Lab builds: whether this producer's wake is already due.  It is when
    the consumer has moved head past the head our re-check saw (head_cache)
    and has made its wake decision for it (its mark), and no seal is taking
    flags.  Space has two wakers, the consumer and the seal: that decision,
    or one before it, took our flag and bumped space_seq after we read seq
    (or won our doorbell flag and rang), so a correct futex_wait cannot
    sleep (and a correct await hears the ring).  docs/lab.md has the argument."""
    cdef uint64_t mark = lab_load(lab_space_mark())
    return (mark & LAB_DONE and (mark & ~<uint64_t>63) - p.head_cache - 1 < (<uint64_t>1 << 63)
            and not lab_sealing())

cdef int producer_arm(ProducerState *p, uint64_t length) noexcept nogil:
    """Arm this slot's doorbell for an awaiting producer: wait_for_space's
    handshake with a flag in place of the futex.  PENDING: armed, no room for
    length yet: await the doorbell.  OK: room now, or the ring is sealed
    (the claim reports it); nothing armed.
    ERR_CONSUMER_GONE (nothing armed)."""
    cdef SegmentHeader *h = p.ring.hdr
    cdef Slot *s = &p.ring.slots[p.slot]
    cdef uint64_t consumer
    store32(&s.bell, 1, RELAXED)
    # An exchange, not a store: an RMW never breaks another producer's release sequence.
    exchange32(&h.space_bell, 1, RELEASE)  # pairs with advance_head's acquire exchange: our slot flag is visible first
    pause_point(P_SPACE_ARMED)
    handshake_fence()  # SEQ_CST; pairs with advance_head's and ring_seal's fences: we see head or the seal, or they see our flag
    if may_claim(p, record_size(length)):
        producer_disarm(p)
        return OK
    consumer = load64(&h.consumer, RELAXED)
    if consumer != 0 and not owner_alive(consumer):
        producer_disarm(p)
        return ERR_CONSUMER_GONE
    fetch_add64(&s.full_waits, 1, RELAXED)
    p.lab_due = LAB_BUILD and space_answered(p)
    return PENDING

cdef void producer_awaited(ProducerState *p, int bell_fd, bint heard) noexcept nogil:
    """The await that producer_arm armed is over and heard a ring or not
    (the caller's doorbell counts them).  Lab builds judge it as
    wait_for_space judges a sleep: without a ring, a wake that was due (when
    it armed, or now; marks read before the doorbell) was lost."""
    if LAB_BUILD and not heard and (p.lab_due or space_answered(p)) and not took_ring(bell_fd):
        lab_lost(1, p.head_cache)

cdef bint took_ring(int bell_fd) noexcept nogil:
    """Read one queued ring from a (non-blocking) doorbell, if there is one."""
    cdef char buf[16]
    return bell_fd >= 0 and read(bell_fd, buf, sizeof(buf)) >= 0

cdef void producer_disarm(ProducerState *p) noexcept nogil:
    """Take our flag back (the await ended or was cancelled).  If the consumer
    won it first, its ring is on the way: a spurious wake, drained later.
    The summary flag stays: it costs the consumer one pass over the slots."""
    exchange32(&p.ring.slots[p.slot].bell, 0, RELAXED)

cdef int producer_claim(ProducerState *p, uint64_t length, uint32_t type,
                        int64_t deadline) noexcept nogil:
    """Claim a record for length payload bytes and mark it BUSY.  Returns OK,
    TIMEOUT, INTERRUPTED (call again with the same deadline), ERR_TOO_LARGE
    (nothing written), SEALED (nothing claimed) or ERR_CONSUMER_GONE."""
    cdef RingView *v = &p.ring
    cdef SegmentHeader *h = v.hdr
    cdef Slot *s = &v.slots[p.slot]
    cdef uint64_t need, total, tail, room
    cdef RecordHeader *rec
    cdef bint rewound
    cdef int st
    if length > v.max_frame:
        return ERR_TOO_LARGE
    need = record_size(length)
    tail = load64(&h.tail, RELAXED)
    while True:
        if tail & TAIL_SEALED:
            return SEALED               # sealed before our CAS: refused, nothing claimed
        if tail & (ALIGN - 1):
            return ERR_CORRUPT          # a header at tail would cross the mapping's end
        total = rewind_total(p, tail, need)     # 0, or a rewind that fits before head
        rewound = total != 0
        if total == 0:
            total = claim_total(v, tail, need)
            if no_room(tail, p.head_cache, total, v.capacity):
                p.head_cache = load64(&h.head, ACQUIRE)  # pairs with advance_head's release store of head
                if no_room(tail, p.head_cache, total, v.capacity):
                    if tail != load64(&h.tail, RELAXED):
                        tail = load64(&h.tail, RELAXED)
                        continue
                    if deadline == NOWAIT:
                        return TIMEOUT
                    st = wait_for_space(p, need, deadline)
                    if st != OK:
                        return st
                    tail = load64(&h.tail, RELAXED)
                    continue
        store64(&s.intent_pos, tail, RELAXED)
        store64(&s.intent_len, total, RELAXED)
        pause_point(P_CLAIM_CAS)
        if cas64(&h.tail, &tail, tail + total, False, RELEASE, RELAXED):  # release pairs with recover_unwritten's acquire of tail: the intent is visible first
            break
        store64(&s.intent_len, 0, RELAXED)     # a stale intent must not hold up recovery
        # (the CAS failed: another claim, or the seal, changed tail; look again)
    if rewound:
        store64(&s.rewinds, s.rewinds + 1, RELAXED)    # counted for stats() and the lab's space checks
    pause_point(P_CLAIMED)
    if total != need:
        room = total - need
        rec = header_at(v, tail)
        rec.length = room - RECORD_HEADER - PAD_SHORT
        store64(&rec.commit, tag(v, tail) | PAD, RELEASE)  # pairs with poll's acquire load of commit
        tail += room
    rec = header_at(v, tail)
    rec.length = length
    rec.type = type
    rec.slot = <uint16_t>p.slot
    rec.ndim = 0
    rec.flags = 0
    store64(&rec.commit, tag(v, tail) | CLAIM_STATE, RELEASE)  # pairs with recover_busy's acquire load of commit: slot and length come with BUSY
    pause_point(P_BUSY)
    p.res_pos = tail
    p.res_data = payload_at(v, tail)
    p.res_len = length
    p.reserved = True
    return OK

cdef void publish(ProducerState *p, uint64_t state) noexcept nogil:
    cdef RingView *v = &p.ring
    cdef SegmentHeader *h = v.hdr
    cdef Slot *s = &v.slots[p.slot]
    cdef uint32_t bell
    cdef bint took
    debug_assert(p.reserved and p.slot < v.nslots)
    store64(&header_at(v, p.res_pos).commit, tag(v, p.res_pos) | state, COMMIT_ORDER)  # pairs with poll's acquire load of commit: the payload is visible first
    store64(&s.intent_len, 0, RELEASE)  # pairs with recover_unwritten's acquire of intent_len: commit is visible first
    p.reserved = False
    pause_point(P_COMMITTED)
    lab_store(lab_data_mark(p.slot), p.res_pos | LAB_DECIDING)
    handshake_fence()  # SEQ_CST; pairs with wait_for_data's and consumer_arm's fences: we see their flag, or they see our commit
    took = wake_consumer(h)
    bell = exchange32(&h.data_bell, 0, RELAXED) if load32(&h.data_bell, RELAXED) else 0
    if bell:                        # we won the flag; its value names the doorbell
        pause_point(P_DATA_RING)
        ring_consumer(p, load64(&h.consumer, RELAXED), bell)
    lab_store(lab_data_mark(p.slot),
              p.res_pos | LAB_DONE | (LAB_TOOK if took else 0) | (LAB_RANG if bell else 0))

cdef void producer_commit(ProducerState *p) noexcept nogil:
    cdef Slot *s = &p.ring.slots[p.slot]
    pause_point(P_COMMIT)
    store64(&s.frames, s.frames + 1, RELAXED)
    store64(&s.bytes, s.bytes + p.res_len, RELAXED)
    publish(p, COMMITTED)

cdef void producer_abort(ProducerState *p) noexcept nogil:
    cdef Slot *s = &p.ring.slots[p.slot]
    store64(&s.aborted, s.aborted + 1, RELAXED)
    publish(p, PAD)

cdef void producer_drop(ProducerState *p) noexcept nogil:
    """Count a frame that found no room and was dropped (on_full="drop"):
    nothing was claimed, so this is a report only."""
    cdef Slot *s = &p.ring.slots[p.slot]
    store64(&s.dropped, s.dropped + 1, RELAXED)

# --- consumer ---------------------------------------------------------------

cdef int consumer_open(ConsumerState *c, RingView *v) noexcept nogil:
    """Become the ring's consumer; -1 if a live one exists.  A dead one is
    replaced, and frames it held but never released are delivered again."""
    cdef uint64_t me = self_owner(), owner
    memset(c, 0, sizeof(ConsumerState))
    c.ring = v[0]
    owner = load64(&v.hdr.consumer, ACQUIRE)  # pairs with consumer_close's release store of consumer
    while True:
        if owner != 0 and owner_alive(owner):
            return -1
        if cas64(&v.hdr.consumer, &owner, me, False, ACQUIRE, ACQUIRE):  # pairs with consumer_close's release store of consumer
            break
    c.owner = me
    store64(&v.hdr.held_frames, 0, RELAXED)  # what a dead consumer held is delivered again
    store64(&v.hdr.consumer_waiting_at, 0, RELAXED)  # a dead consumer's wait: a hint, orders nothing
    c.head = load64(&v.hdr.head, ACQUIRE)  # pairs with the previous consumer's release store of head
    c.cursor = c.head
    c.tail_cache = c.head
    c.stall_ns = 1_000_000_000
    c.poll_ns = POLL_MAX_NS                # start awake: a quick stream never sleeps
    return OK

cdef void consumer_close(ConsumerState *c) noexcept nogil:
    cdef uint64_t me = c.owner
    consumer_disarm(c)
    store64(&c.ring.hdr.held_frames, 0, RELAXED)  # the next consumer gets them again
    cas64(&c.ring.hdr.consumer, &me, 0, False, RELEASE, RELAXED)  # pairs with consumer_open's acquire of consumer

cdef int checked_size(ConsumerState *c, uint64_t pos, uint64_t length) noexcept nogil:
    """The record at pos must lie inside the ring before the wrap and inside
    the claimed region; otherwise the segment was corrupted."""
    cdef uint64_t size, tail
    if length > c.ring.capacity:
        return 0
    size = record_size(length)
    if size > c.ring.capacity - (pos & c.ring.mask):
        return 0
    if size > c.tail_cache - pos:
        tail = tail_pos(load64(&c.ring.hdr.tail, ACQUIRE))  # pairs with producer_claim's release CAS of tail
        if size > tail - pos or tail - pos > c.ring.capacity:
            return 0                    # and a bad tail is not cached
        c.tail_cache = tail
    return 1

cdef int advance_head(ConsumerState *c) noexcept nogil:
    """Move head past the released prefix and wake producers waiting for space."""
    cdef RingView *v = &c.ring
    cdef SegmentHeader *h = v.hdr
    cdef uint64_t pos = c.head, word, state, length
    cdef RecordHeader *rec
    cdef bint took, rang
    while pos != c.cursor:
        rec = header_at(v, pos)
        word = load64(&rec.commit, RELAXED)
        state = word & STATE_MASK
        length = rec.length             # read once: another process may change it
        if (word & ~<uint64_t>STATE_MASK) != tag(v, pos) or not checked_size(c, pos, length):
            return ERR_CORRUPT
        if not freed(state):
            if c.held == 0:
                return ERR_CORRUPT      # a record behind the cursor that nobody holds:
            break                       # a claim judged dead committed after all
        pos += record_size(length)
        if pos - c.head > c.cursor - c.head:
            return ERR_CORRUPT
    if pos == c.head:
        return OK
    c.head = pos
    store64(&h.head, pos, RELEASE)  # pairs with producer_claim's acquire load of head: our reads are done
    pause_point(P_HEAD)
    handshake_fence()  # SEQ_CST; pairs with wait_for_space's and producer_arm's fences: we see their flag, or they see our head
    took = wake_producers(h)
    rang = load32(&h.space_bell, RELAXED) and exchange32(&h.space_bell, 0, ACQUIRE)  # pairs with producer_arm's release exchange: slot flags are visible
    if rang:
        ring_producers(v)
    lab_store(lab_space_mark(), pos | LAB_DONE | (LAB_TOOK if took else 0) | (LAB_RANG if rang else 0))
    return OK

cdef int poll(ConsumerState *c, Received *out) noexcept nogil:
    """Deliver the record at the cursor, skipping padding.  SEALED when the
    cursor reached a sealed tail: no frame will ever come again."""
    cdef RingView *v = &c.ring
    cdef SegmentHeader *h = v.hdr
    cdef uint64_t pos, word, state, length, tail
    cdef RecordHeader *rec
    while True:
        pos = c.cursor
        if pos == c.tail_cache:
            tail = load64(&h.tail, ACQUIRE)  # pairs with producer_claim's release CAS of tail (and ring_seal's)
            if tail == pos | TAIL_SEALED:
                return SEALED           # sealed and drained
            tail = tail_pos(tail)
            if tail - pos > v.capacity or (pos | tail) & (ALIGN - 1):
                return ERR_CORRUPT      # kept out of tail_cache, so the next call checks again
            c.tail_cache = tail         # (a misaligned cursor from head would put a header across the mapping's end)
            if pos == c.tail_cache:
                return EMPTY
        rec = header_at(v, pos)
        pause_point(P_HEADER)
        word = load64(&rec.commit, ACQUIRE)  # pairs with publish's release store of commit (and the BUSY/PAD stores in producer_claim)
        if tag_mismatch(word, tag(v, pos)):
            return PENDING
        state = word & STATE_MASK
        if state == BUSY:
            return PENDING
        length = rec.length
        if not checked_size(c, pos, length):
            return ERR_CORRUPT
        c.cursor = pos + record_size(length)
        debug_assert(c.cursor - c.head <= v.capacity)   # checked_size bounds it by tail
        if state == COMMITTED:
            if length > v.max_frame:
                return ERR_CORRUPT
            c.held += 1
            store64(&h.held_frames, c.held, RELAXED)
            store64(&h.received_frames, h.received_frames + 1, RELAXED)
            store64(&h.received_bytes, h.received_bytes + length, RELAXED)
            out.pos = pos
            out.data = payload_at(v, pos)
            out.length = length
            out.type = rec.type
            return OK
        if state != PAD and state != RELEASED:
            return ERR_CORRUPT
        if pos == c.head and advance_head(c) != OK:
            return ERR_CORRUPT

cdef bint ready(ConsumerState *c) noexcept nogil:
    cdef uint64_t word = load64(&header_at(&c.ring, c.cursor).commit, ACQUIRE)  # pairs with publish's release store of commit
    return (word & ~<uint64_t>STATE_MASK) == tag(&c.ring, c.cursor) and \
        (word & STATE_MASK) != BUSY

cdef int ready_checked(ConsumerState *c) noexcept nogil:
    """ready(), for wait_for_data: OK when poll will find the cursor's record
    ready or the ring sealed and drained, PENDING when not.  A ready header at
    the cursor with tail still at the cursor is impossible (the producer moved
    tail before writing it), so it is ERR_CORRUPT: poll would see an empty
    ring and we would spin."""
    cdef uint64_t tail
    if not ready(c):
        tail = load64(&c.ring.hdr.tail, RELAXED)  # poll loads it again with acquire
        return OK if tail == c.cursor | TAIL_SEALED else PENDING
    if tail_pos(load64(&c.ring.hdr.tail, ACQUIRE)) == c.cursor:  # pairs with producer_claim's release CAS of tail: it precedes the header ready() saw
        return ERR_CORRUPT
    return OK

cdef void mark_abandoned(ConsumerState *c, uint64_t pos, uint64_t end) noexcept nogil:
    """Turn a dead producer's claim [pos, end) into padding, one record per
    stretch before the wrap, and count it."""
    cdef RingView *v = &c.ring
    cdef RecordHeader *rec
    cdef uint64_t size
    store64(&v.hdr.abandoned_frames, v.hdr.abandoned_frames + 1, RELAXED)
    store64(&v.hdr.abandoned_bytes, v.hdr.abandoned_bytes + (end - pos), RELAXED)
    while pos != end:
        size = v.capacity - (pos & v.mask)
        if size > end - pos:
            size = end - pos
        rec = header_at(v, pos)
        rec.length = size - RECORD_HEADER
        store64(&rec.commit, tag(v, pos) | PAD, RELAXED)
        pos += size

cdef int recover_unwritten(ConsumerState *c) noexcept nogil:
    """The cursor's record was claimed but has no header.  If every slot whose
    intent covers it is dead, skip to the nearest end that is provably a
    record boundary: the tail, a tagged header, or another slot's intent."""
    cdef RingView *v = &c.ring
    cdef uint64_t pos = c.cursor, tail, ipos, ilen, end, best = 0, word
    cdef uint32_t i, j
    cdef bint found = False, proven
    tail = tail_pos(load64(&v.hdr.tail, ACQUIRE))  # pairs with producer_claim's release CAS of tail: intents are visible
    if tail - pos > v.capacity:
        return ERR_CORRUPT              # else mark_abandoned could loop for 2^64 / capacity laps
    for i in range(v.nslots):
        ilen = load64(&v.slots[i].intent_len, ACQUIRE)  # pairs with publish's release store of intent_len
        ipos = load64(&v.slots[i].intent_pos, RELAXED)
        if ilen == 0 or pos - ipos >= ilen:
            continue
        if owner_alive(load64(&v.slots[i].owner, RELAXED)):
            return PENDING
        end = ipos + ilen
        if end - pos > tail - pos or (found and end - pos >= best - pos) or end & (ALIGN - 1):
            continue                    # not a record boundary (a misaligned one could cross the mapping's end)
        proven = end == tail
        if not proven:
            word = load64(&header_at(v, end).commit, ACQUIRE)  # pairs with producer_claim's release store of BUSY/PAD
            proven = (word & ~<uint64_t>STATE_MASK) == tag(v, end)
        j = 0
        while not proven and j < v.nslots:
            proven = load64(&v.slots[j].intent_pos, RELAXED) == end and j != i
            j += 1
        if proven:
            best = end
            found = True
    if ready(c) or load64(&header_at(v, pos).commit, ACQUIRE) == (tag(v, pos) | BUSY):  # pairs with publish's release store of commit
        return OK                       # written meanwhile: poll again
    if not found:
        return ERR_CORRUPT
    mark_abandoned(c, pos, best)
    return OK

cdef int recover_busy(ConsumerState *c) noexcept nogil:
    """The cursor's record is BUSY.  Skip it if its producer died."""
    cdef RingView *v = &c.ring
    cdef RecordHeader *rec = header_at(v, c.cursor)
    cdef uint64_t length
    if load64(&rec.commit, RECOVER_ORDER) != (tag(v, c.cursor) | BUSY):  # ACQUIRE; pairs with producer_claim's release store of BUSY
        return OK
    length = rec.length
    if rec.slot >= v.nslots or length > v.max_frame or not checked_size(c, c.cursor, length):
        return ERR_CORRUPT
    if owner_alive(load64(&v.slots[rec.slot].owner, RELAXED)):
        return PENDING
    mark_abandoned(c, c.cursor, c.cursor + record_size(length))
    return OK

cdef int check_stall(ConsumerState *c) noexcept nogil:
    """Called while the cursor's record is pending.  After stall_ns without
    progress, look for a dead producer behind it."""
    cdef int64_t now = now_ns()
    cdef uint64_t word
    if c.stall_pos != c.cursor or c.stall_since == 0:
        c.stall_pos = c.cursor
        c.stall_since = now
        return PENDING
    if now - c.stall_since < c.stall_ns or not RECOVERY:
        return PENDING
    word = load64(&header_at(&c.ring, c.cursor).commit, ACQUIRE)  # pairs with producer_claim's release store of BUSY
    if (word & ~<uint64_t>STATE_MASK) == tag(&c.ring, c.cursor):
        return recover_busy(c)
    return recover_unwritten(c)

cdef void announce_waiting(ConsumerState *c) noexcept nogil:
    """Tell producers that we wait for the record at the cursor: the rewind's
    hint (rewind_total).  Stored once per wait, taken back by stop_waiting."""
    if c.waiting_at != c.cursor + 1:
        c.waiting_at = c.cursor + 1
        store64(&c.ring.hdr.consumer_waiting_at, c.waiting_at, RELAXED)  # a hint that orders nothing: rewind_total checks room itself
        pause_point(P_WAITING)

cdef inline void stop_waiting(ConsumerState *c) noexcept nogil:
    """The wait announced is over (a record, the deadline, the seal, an
    error, a disarm): no store when none was announced."""
    if c.waiting_at != 0:
        c.waiting_at = 0
        store64(&c.ring.hdr.consumer_waiting_at, 0, RELAXED)  # a hint that orders nothing

cdef int wait_for_data(ConsumerState *c, int64_t deadline) noexcept nogil:
    """Sleep until a producer may have committed.  OK means "poll again"."""
    cdef SegmentHeader *h = c.ring.hdr
    cdef uint32_t seq
    cdef int64_t timeout
    cdef int st
    cdef bint due
    announce_waiting(c)
    if c.spun_for != c.cursor + 1:         # poll once per record, not every wait slice
        c.spun_for = c.cursor + 1
        c.wait_began = now_ns()
        st = poll_before_sleep(c, deadline)
        if st != PENDING:
            return st
    seq = load32(&h.data_seq, ACQUIRE)  # pairs with wake_consumer's release increment of data_seq
    store32(&h.data_waiting, 1, RELAXED)
    pause_point(P_DATA_WAIT)
    handshake_fence()  # SEQ_CST; pairs with publish's and ring_seal's fences: we see the commit or the seal, or they see our flag
    st = ready_checked(c)
    if st != PENDING:
        return st
    timeout = slice_until(deadline)
    if timeout <= 0:
        return TIMEOUT
    store64(&h.consumer_waits, h.consumer_waits + 1, RELAXED)
    pause_point(P_DATA_SLEEP)
    due = LAB_BUILD and data_answered(c, seq, True)
    st = futex_wait(&h.data_seq, sleep_seq(seq, &h.data_seq), timeout)
    if LAB_BUILD and st == INTERRUPTED and errno == ETIMEDOUT and (due or data_answered(c, seq, False)):
        lab_lost(0, c.cursor)           # slept to the timeout through a wake that was due
    if c.spin == SPIN_ADAPT:
        c.poll_ns = poll_window_after(c.poll_ns, now_ns() - c.wait_began)
    return st

cdef bint data_answered(ConsumerState *c, uint32_t seq, bint before) noexcept nogil:
    """Lab builds: whether this wait's wake is due.  It is when the producer
    of the record at the cursor (which our re-check did not see) has made its
    wake decision for it (its mark), unless that decision found our flag
    taken by another producer (or the sealer) still deciding.  Before the sleep, the wake is
    then already due: the decision took the flag and bumped data_seq after
    we read seq, or left the flag set, or a finished wake bumped it, and a
    correct futex_wait cannot sleep through any of these.  After a sleep that
    timed out, a decision that took the flag may have bumped and woken us
    just after the timeout, so only the other two count: a decision that
    left our flag set, or one that found it taken by nobody still deciding,
    never happens in a correct handshake.  docs/lab.md has the argument."""
    cdef RingView *v = &c.ring
    cdef uint64_t mark = cursor_mark(c)
    cdef bint flag_set, bumped
    if not mark:
        return False
    flag_set = load32(&v.hdr.data_waiting, SEQ_CST) != 0
    bumped = load32(&v.hdr.data_seq, SEQ_CST) != seq
    if before:
        return mark & LAB_TOOK or flag_set or bumped or not lab_deciding()
    return not mark & LAB_TOOK and (flag_set or not bumped and not lab_deciding())


cdef uint64_t cursor_mark(ConsumerState *c) noexcept nogil:
    """Lab builds: the mark of the wake decision for the record at the cursor
    once it is ready and that decision is made; 0 otherwise."""
    cdef uint64_t mark
    if not ready(c):
        return 0
    mark = lab_load(lab_data_mark(header_at(&c.ring, c.cursor).slot))
    return mark if mark & ~<uint64_t>63 == c.cursor and mark & LAB_DONE else 0

cdef int poll_before_sleep(ConsumerState *c, int64_t deadline) noexcept nogil:
    """Look for the cursor's record before sleeping: spin times, or for the
    adaptive window.  PENDING: nothing came; sleep."""
    cdef uint32_t _i
    cdef int64_t end
    cdef int st
    if c.spin == SPIN_ADAPT:
        end = min(c.wait_began + c.poll_ns, deadline)
        while now_ns() < end:
            st = ready_checked(c)
            if st != PENDING:
                return st
            sched_yield()       # a producer waiting for this CPU runs first (more processes than CPUs)
        return PENDING
    for _i in range(c.spin):
        st = ready_checked(c)
        if st != PENDING:
            return st
        cpu_relax()
    return PENDING

# The adaptive poll for room stops at records of this size.  A consumer frees
# small records faster than a wake-up costs, so a producer that slept would
# be woken for each; a large record takes longer to use than a wake-up, and
# a ring full of them is better drained while the producer sleeps: then the
# consumer waits, and the producer's next claims can rewind (a ring that a
# poll keeps full walks its whole capacity, cold: 128 MiB rings of 1 MiB
# frames ran at a quarter of the speed).
cdef uint64_t POLL_RECORD_MAX = 64 * 1024

cdef bint poll_for_room(ProducerState *p, uint64_t need, int64_t deadline) noexcept nogil:
    """Look for room before sleeping: spin times, or for the adaptive window
    (small records only)."""
    cdef uint32_t _i
    cdef int64_t end
    if p.spin == SPIN_ADAPT:
        if need > POLL_RECORD_MAX:
            return False
        end = min(p.wait_began + p.poll_ns, deadline)
        while now_ns() < end:
            if may_claim(p, need):
                return True
            sched_yield()       # the consumer, if it waits for this CPU, runs first
        return False
    for _i in range(p.spin):
        if may_claim(p, need):
            return True
        cpu_relax()
    return False

cdef int64_t poll_window_after(int64_t window, int64_t waited) noexcept nogil:
    if waited <= POLL_USEFUL_NS:
        return min(POLL_MAX_NS, max(POLL_MIN_NS, 2 * window))
    return 0 if window < 2 * POLL_MIN_NS else window // 2

cdef int consumer_receive(ConsumerState *c, Received *out, int64_t deadline) noexcept nogil:
    """Deliver the next committed record.  Returns OK, TIMEOUT, INTERRUPTED
    (call again with the same deadline), SEALED (sealed and drained) or
    ERR_CORRUPT.  The consumer counts as waiting (consumer_waiting_at) only
    inside this call: whatever it returns, the wait is over."""
    cdef int st = receive_once(c, out, deadline)
    stop_waiting(c)
    return st

cdef inline int receive_once(ConsumerState *c, Received *out, int64_t deadline) noexcept nogil:
    cdef int st
    while True:
        st = poll(c, out)
        if st == PENDING:
            st = check_stall(c)
            if st == OK:
                continue
        if st != EMPTY and st != PENDING:
            return st
        if deadline == NOWAIT:
            return TIMEOUT
        st = wait_for_data(c, deadline)
        if st != OK:
            return st

cdef void consumer_unreceive(ConsumerState *c, Received *r) noexcept nogil:
    """Take back the record consumer_receive just delivered, unreleased: it
    is delivered again next (recv_into with too small a buffer).  Consumer
    state and counters only; the record stays COMMITTED."""
    cdef SegmentHeader *h = c.ring.hdr
    debug_assert(c.held > 0 and r.pos + record_size(r.length) == c.cursor)
    c.cursor = r.pos
    c.held -= 1
    store64(&h.held_frames, c.held, RELAXED)
    store64(&h.received_frames, h.received_frames - 1, RELAXED)
    store64(&h.received_bytes, h.received_bytes - r.length, RELAXED)

cdef int consumer_release(ConsumerState *c, uint64_t pos) noexcept nogil:
    """Give a delivered record back.  Space returns in ring order: out of
    order, the record is only marked, and head moves when the prefix is free."""
    cdef RecordHeader *rec = header_at(&c.ring, pos)
    debug_assert(c.held > 0 and pos % 64 == 0)
    if pos - c.head >= c.cursor - c.head:
        return ERR_CORRUPT              # a scribbled length moved head past a held frame
    c.held -= 1
    store64(&c.ring.hdr.held_frames, c.held, RELAXED)
    store64(&rec.commit, tag(&c.ring, pos) | RELEASED, RELAXED)
    if pos != c.head and c.held != 0:
        return OK
    return advance_head(c)          # with nothing held, head must reach the cursor

cdef int consumer_skip(ConsumerState *c, uint64_t pos) noexcept nogil:
    """Release a delivered record unread, and count it (recv_latest()).
    The same release: skipping adds no step to the protocol."""
    cdef int st = consumer_release(c, pos)
    if st == OK:
        store64(&c.ring.hdr.skipped_frames, c.ring.hdr.skipped_frames + 1, RELAXED)
    return st

cdef int consumer_arm(ConsumerState *c) noexcept nogil:
    """Arm the doorbell of an awaiting consumer, after a try found nothing:
    wait_for_data's handshake with a flag in place of the futex.  EMPTY:
    armed, nothing claimed at the cursor.  PENDING: armed, the cursor's claim
    is not committed yet (await no longer than the stall check).  OK: a
    record is ready, or the ring is sealed and drained; nothing armed.
    ERR_CORRUPT."""
    cdef SegmentHeader *h = c.ring.hdr
    cdef int st
    debug_assert(c.bell_id != 0)
    announce_waiting(c)                 # until consumer_disarm
    pause_point(P_DATA_ARM)
    store32(&h.data_bell, c.bell_id, RELAXED)
    pause_point(P_DATA_ARMED)
    handshake_fence()  # SEQ_CST; pairs with publish's and ring_seal's fences: we see the commit or the seal, or they see our flag
    st = bell_recheck(ready_checked(c))
    if st != PENDING:
        consumer_disarm(c)
        return st
    store64(&h.consumer_waits, h.consumer_waits + 1, RELAXED)
    c.lab_due = LAB_BUILD and bell_answered(c)
    return EMPTY if tail_pos(load64(&h.tail, RELAXED)) == c.cursor else PENDING

cdef void consumer_awaited(ConsumerState *c, int bell_fd, bint heard) noexcept nogil:
    """producer_awaited's judge for the await that consumer_arm armed, as
    wait_for_data judges a sleep."""
    if LAB_BUILD and not heard and (c.lab_due or bell_answered(c)) and not took_ring(bell_fd):
        lab_lost(0, c.cursor)

cdef bint bell_answered(ConsumerState *c) noexcept nogil:
    """Lab builds: whether an armed doorbell's ring is due: data_answered's
    judge with the doorbell flag.  It is when the producer of the record at
    the cursor (which the arm's re-check did not see) has made its wake
    decision for it, unless that decision found our flag won by someone
    still deciding (who may be killed before ringing).  The decision then
    won the flag and rang (RANG is marked after the ring), or left it set,
    which a correct handshake never does, or found it won by a waker that
    has rung since.  docs/lab.md has the argument."""
    cdef uint64_t mark = cursor_mark(c)
    if not mark:
        return False
    return (mark & LAB_RANG or load32(&c.ring.hdr.data_bell, SEQ_CST) == c.bell_id
            or not lab_deciding())

cdef void consumer_disarm(ConsumerState *c) noexcept nogil:
    """Take the flag back (a record was ready, or the await ended).  If a
    producer won it first, its ring is on the way: a spurious wake, drained
    later.  The await is over: so is the wait announced."""
    exchange32(&c.ring.hdr.data_bell, 0, RELAXED)
    stop_waiting(c)

# --- the layout, for Python ---------------------------------------------------
# shmring/layout.py reads these numbers; the compiler takes them from the
# structs in layout.pxd, so nothing in Python keeps an offset of its own.
# Every field is listed, padding included: tests/test_layout.py checks that
# the fields of each struct tile it from 0 to its size.

cdef SegmentHeader _h
cdef Slot _s
cdef RecordHeader _r

cdef tuple _at(const void *struct_start, const void *field, size_t width):
    return (<const char *>field - <const char *>struct_start, width)


def poll_window(int64_t window, int64_t waited):
    """The adaptive poll's next window after a sleep of waited ns (tests)."""
    return poll_window_after(window, waited)


def _data_offset(uint32_t nslots):
    """Where the data area starts in a segment with nslots producer slots."""
    return data_offset_for(nslots)


LAYOUT = {
    "SegmentHeader": (sizeof(SegmentHeader), {
        "magic": _at(&_h, &_h.magic, sizeof(_h.magic)),
        "version": _at(&_h, &_h.version, sizeof(_h.version)),
        "data_offset": _at(&_h, &_h.data_offset, sizeof(_h.data_offset)),
        "capacity": _at(&_h, &_h.capacity, sizeof(_h.capacity)),
        "max_frame": _at(&_h, &_h.max_frame, sizeof(_h.max_frame)),
        "secret": _at(&_h, &_h.secret, sizeof(_h.secret)),
        "nslots": _at(&_h, &_h.nslots, sizeof(_h.nslots)),
        "header_size": _at(&_h, &_h.header_size, sizeof(_h.header_size)),
        "creator": _at(&_h, &_h.creator, sizeof(_h.creator)),
        "created_ns": _at(&_h, &_h.created_ns, sizeof(_h.created_ns)),
        "_pad0": _at(&_h, &_h._pad0, sizeof(_h._pad0)),
        "tail": _at(&_h, &_h.tail, sizeof(_h.tail)),
        "_pad1": _at(&_h, &_h._pad1, sizeof(_h._pad1)),
        "head": _at(&_h, &_h.head, sizeof(_h.head)),
        "_pad2": _at(&_h, &_h._pad2, sizeof(_h._pad2)),
        "data_seq": _at(&_h, &_h.data_seq, sizeof(_h.data_seq)),
        "data_waiting": _at(&_h, &_h.data_waiting, sizeof(_h.data_waiting)),
        "data_bell": _at(&_h, &_h.data_bell, sizeof(_h.data_bell)),
        "_pad3": _at(&_h, &_h._pad3, sizeof(_h._pad3)),
        "space_seq": _at(&_h, &_h.space_seq, sizeof(_h.space_seq)),
        "space_waiting": _at(&_h, &_h.space_waiting, sizeof(_h.space_waiting)),
        "space_bell": _at(&_h, &_h.space_bell, sizeof(_h.space_bell)),
        "_pad4": _at(&_h, &_h._pad4, sizeof(_h._pad4)),
        "consumer": _at(&_h, &_h.consumer, sizeof(_h.consumer)),
        "received_frames": _at(&_h, &_h.received_frames, sizeof(_h.received_frames)),
        "received_bytes": _at(&_h, &_h.received_bytes, sizeof(_h.received_bytes)),
        "held_frames": _at(&_h, &_h.held_frames, sizeof(_h.held_frames)),
        "consumer_waits": _at(&_h, &_h.consumer_waits, sizeof(_h.consumer_waits)),
        "abandoned_frames": _at(&_h, &_h.abandoned_frames, sizeof(_h.abandoned_frames)),
        "abandoned_bytes": _at(&_h, &_h.abandoned_bytes, sizeof(_h.abandoned_bytes)),
        "wakeups_to_consumer": _at(&_h, &_h.wakeups_to_consumer, sizeof(_h.wakeups_to_consumer)),
        "wakeups_to_producers": _at(&_h, &_h.wakeups_to_producers, sizeof(_h.wakeups_to_producers)),
        "skipped_frames": _at(&_h, &_h.skipped_frames, sizeof(_h.skipped_frames)),
        "doorbell_rings": _at(&_h, &_h.doorbell_rings, sizeof(_h.doorbell_rings)),
        "consumer_waiting_at": _at(&_h, &_h.consumer_waiting_at, sizeof(_h.consumer_waiting_at)),
        "_pad5": _at(&_h, &_h._pad5, sizeof(_h._pad5)),
    }),
    "Slot": (sizeof(Slot), {
        "owner": _at(&_s, &_s.owner, sizeof(_s.owner)),
        "intent_pos": _at(&_s, &_s.intent_pos, sizeof(_s.intent_pos)),
        "intent_len": _at(&_s, &_s.intent_len, sizeof(_s.intent_len)),
        "frames": _at(&_s, &_s.frames, sizeof(_s.frames)),
        "bytes": _at(&_s, &_s.bytes, sizeof(_s.bytes)),
        "aborted": _at(&_s, &_s.aborted, sizeof(_s.aborted)),
        "full_waits": _at(&_s, &_s.full_waits, sizeof(_s.full_waits)),
        "opens": _at(&_s, &_s.opens, sizeof(_s.opens)),
        "dropped": _at(&_s, &_s.dropped, sizeof(_s.dropped)),
        "rewinds": _at(&_s, &_s.rewinds, sizeof(_s.rewinds)),
        "bell": _at(&_s, &_s.bell, sizeof(_s.bell)),
        "_pad": _at(&_s, &_s._pad, sizeof(_s._pad)),
    }),
    "RecordHeader": (sizeof(RecordHeader), {
        "commit": _at(&_r, &_r.commit, sizeof(_r.commit)),
        "length": _at(&_r, &_r.length, sizeof(_r.length)),
        "type": _at(&_r, &_r.type, sizeof(_r.type)),
        "slot": _at(&_r, &_r.slot, sizeof(_r.slot)),
        "ndim": _at(&_r, &_r.ndim, sizeof(_r.ndim)),
        "flags": _at(&_r, &_r.flags, sizeof(_r.flags)),
        "dtype": _at(&_r, &_r.dtype, sizeof(_r.dtype)),
        "shape": _at(&_r, &_r.shape, sizeof(_r.shape)),
    }),
    "constants": {
        "MAGIC": MAGIC, "VERSION": VERSION, "LINE": LINE, "ALIGN": ALIGN,
        "RECORD_HEADER": RECORD_HEADER, "MIN_CAPACITY": MIN_CAPACITY,
        "DEFAULT_SLOTS": DEFAULT_SLOTS, "MAX_NDIM": MAX_NDIM, "PID_BITS": PID_BITS,
        "BUSY": BUSY, "COMMITTED": COMMITTED, "PAD": PAD, "RELEASED": RELEASED,
        "STATE_MASK": STATE_MASK, "TAIL_SEALED": TAIL_SEALED,
    },
}

"""shmring.Queue: a multiprocessing.Queue for many producers and one
consumer, that carries objects through a ring (docs/queue.md).

put() pickles the object (protocol 5), reserves one record and copies the
stream and every buffer into it once; it returns when the record is
committed, so there is no feeder thread.  get() copies the buffers out
(one copy; the frame is released at once) or, with zero_copy=True, returns
read-only views of the frame that hold it until they are garbage collected.
"""
from __future__ import annotations

import _multiprocessing  # type: ignore[import-not-found]  # (typeshed has no stub)
import contextlib
import mmap
import multiprocessing.util
import os
import pickle
import queue
import threading
import time
import uuid
import weakref
from typing import TYPE_CHECKING, Any

from shmring import codec, layout
from shmring._ring import Ring
from shmring.errors import ConsumerExists, Empty, FrameTooLarge, Full

if TYPE_CHECKING:
    from shmring._ring import Consumer, Producer, RingStats

    class QueueStats(RingStats):
        """What Queue.stats() returns."""

        qsize: int
        maxsize: int
        frames_held: int

_STREAM = codec.STREAM
_loads = pickle.loads

DEFAULT_CAPACITY = 1 << 25              # 32 MiB: objects up to 16 MiB, and it fits Docker's 64 MB /dev/shm
_SEMAPHORE = 1                          # _multiprocessing.SemLock's kind for a counting semaphore


def _capacity(capacity: int) -> int:
    n = int(capacity)
    if n < 4096:
        raise ValueError(f"capacity must be at least 4096 bytes, not {capacity!r}")
    return 1 << (n - 1).bit_length()    # rings are a power of two


def _wait_for(block: bool, timeout: float | None) -> float | None:
    """Seconds to wait, None for ever.  A negative timeout means no wait, as
    in multiprocessing.Queue; block=False ignores timeout."""
    if not block:
        return 0.0
    return None if timeout is None else max(0.0, float(timeout))


def _left(deadline: float | None, wait: float | None) -> float | None:
    """What is left of a wait that began at deadline - wait."""
    return wait if deadline is None else max(0.0, deadline - time.monotonic())


def _acquire(lock: Any, wait: float | None) -> bool:
    """lock.acquire() for a wait from _wait_for()."""
    if wait is None:
        return bool(lock.acquire())
    return bool(lock.acquire(True, wait) if wait else lock.acquire(False))


class _Permits:
    """maxsize across processes: a POSIX named semaphore (/dev/shm/sem.shmring.NAME)
    holding the free places.  put() takes one, get() gives one back."""

    def __init__(self, name: str, maxsize: int, create: bool) -> None:
        self.name = "/shmring." + name
        self.maxsize = maxsize
        if not create:
            self.sem = _multiprocessing.SemLock._rebuild(0, _SEMAPHORE, maxsize, self.name)
            return
        try:
            self.sem = self.make()
        except FileExistsError:         # left by a killed creator: the ring's name was free
            _multiprocessing.sem_unlink(self.name)
            self.sem = self.make()

    def make(self) -> Any:
        return _multiprocessing.SemLock(_SEMAPHORE, self.maxsize,
                                        _multiprocessing.SemLock.SEM_VALUE_MAX, self.name, False)


class _Counts:
    """The ring's frame counters, read through a read-only mapping of the
    segment's header and slots: qsize() without ring.stats()' liveness
    checks.  Offsets are shmring.layout's."""

    def __init__(self, ring: Ring) -> None:
        length = layout.slot_offset(ring.producer_slots)
        fd = os.open(ring.path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            if os.fstat(fd).st_size < length:   # a replaced file: mapping past its end would SIGBUS
                raise FileNotFoundError(2, "the segment was replaced", ring.path)
            self.map = mmap.mmap(fd, length, mmap.MAP_SHARED, mmap.PROT_READ)
        finally:
            os.close(fd)
        self.words = memoryview(self.map).cast("Q")
        self.committed = self.words[layout.slot_offset(0) // 8 + layout.Slot.frames // 8::
                                    layout.Slot.size // 8]

    def waiting(self) -> int:
        """Frames committed and not yet received (never below 0)."""
        return max(0, sum(self.committed) - self.words[layout.SegmentHeader.received_frames // 8])


def _unlink(path: str, permits: str | None) -> None:
    """The creator's finalizer: remove the names (the semaphore first, so a
    new ring of the same name never finds it)."""
    with contextlib.suppress(FileNotFoundError):
        if permits is not None:
            _multiprocessing.sem_unlink(permits)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


_queues: weakref.WeakSet[Queue] = weakref.WeakSet()     # this process's queues, reset in a forked child


def _after_fork() -> None:
    for q in list(_queues):
        q._reset()


os.register_at_fork(after_in_child=_after_fork)


class Queue:
    """A multiprocessing.Queue for many producers and one consumer.

    maxsize bounds the objects in the queue as in multiprocessing.Queue
    (0: only capacity does).  capacity sizes the ring in bytes (rounded up
    to a power of two; default 32 MiB); an object may take up to about half
    of it.  name names the segment, /dev/shm/shmring.NAME (default: a
    random one).  The creating process removes the segment's name when this
    object is garbage collected or the process exits; see docs/queue.md."""

    def __init__(self, maxsize: int = 0, *, capacity: int | None = None,
                 name: str | None = None) -> None:
        if name is None:
            name = f"queue-{uuid.uuid4().hex[:16]}"
        self._ring = Ring.create(name, DEFAULT_CAPACITY if capacity is None else _capacity(capacity))
        try:
            self._permits = _Permits(name, maxsize, True) if maxsize > 0 else None
        except BaseException:
            self._ring.unlink()
            raise
        # Run when this object goes or at exit, also in a multiprocessing
        # child (which leaves by os._exit), and never in a forked copy.
        multiprocessing.util.Finalize(self, _unlink, (self._ring.path,
                                      self._permits and self._permits.name), exitpriority=0)
        self._setup()

    def _setup(self) -> None:
        self._max_frame = self._ring.max_frame
        self._counts = _Counts(self._ring)
        self._closed = False
        self._reset()
        _queues.add(self)

    def _reset(self) -> None:
        """Per-process state: producers per thread, the consumer, and the
        lock that lets one thread at a time use it."""
        self._local = threading.local()
        self._consumer: Consumer | None = None
        self._get_lock = threading.Lock()

    def __reduce__(self) -> tuple[Any, tuple[Ring, int | None]]:
        return _attach, (self._ring, self._permits.maxsize if self._permits else None)

    # --- put ----------------------------------------------------------------

    def _sender(self) -> tuple[codec.Encoder, Producer]:
        """This thread's encoder and producer."""
        sender = codec.Encoder(), self._ring.producer()
        self._local.sender = sender
        return sender

    def put(self, obj: object, block: bool = True, timeout: float | None = None) -> None:
        """Pickle obj into the ring.  Blocks (as block and timeout say) while
        the queue holds maxsize objects or the ring has no room; then raises
        queue.Full.  Raises ValueError for an object larger than the ring's
        largest record, and whatever pickling raises; both leave the ring
        unchanged."""
        if self._closed:
            raise ValueError(f"Queue {self!r} is closed")
        wait = _wait_for(block, timeout)
        try:
            encoder, producer = self._local.sender
        except AttributeError:
            encoder, producer = self._sender()
        try:
            kind, size = encoder.encode(obj)
            if size > self._max_frame:
                raise FrameTooLarge(
                    f"the object needs a {size}-byte record, more than this queue's largest "
                    f"({self._max_frame} bytes, half its capacity); create the Queue with "
                    f"capacity={_capacity(2 * (size + 64))} or more")
            permits = self._permits
            if permits is not None:
                deadline = time.monotonic() + wait if wait else None
                if not _acquire(permits.sem, wait):
                    raise queue.Full
                wait = _left(deadline, wait)
            try:
                if encoder.whole is not None:   # small objects: one call
                    producer.send(encoder.whole, type=kind, timeout=wait)
                else:
                    with producer.reserve(size, type=kind, timeout=wait) as r, \
                            memoryview(r) as dst:
                        encoder.write(dst)
            except BaseException as e:
                if permits is not None:
                    permits.sem.release()
                if isinstance(e, Full):
                    raise queue.Full from None
                raise
        finally:
            encoder.forget()

    def put_nowait(self, obj: object) -> None:
        return self.put(obj, False)

    # --- get ----------------------------------------------------------------

    def _open_consumer(self) -> Consumer:
        try:
            consumer = self._ring.consumer()
        except ConsumerExists:
            pid = self._ring.stats()["consumer_pid"]
            raise ConsumerExists(
                f"this shmring.Queue has one consumer, and process {pid} is it: only one "
                "process may call get() while it lives (many may put())") from None
        self._consumer = consumer
        return consumer

    def get(self, block: bool = True, timeout: float | None = None, *,
            zero_copy: bool = False) -> Any:
        """The next object.  Raises queue.Empty if none comes as block and
        timeout allow.  The first get() makes this process the queue's one
        consumer (ConsumerExists if another live process is).

        By default the object is independent of the ring: its arrays are
        writable copies.  With zero_copy=True its numpy arrays (and other
        protocol-5 buffers) are read-only views of the frame, which stays
        held, its ring space with it, until the last of them is garbage
        collected."""
        return self._take(False, block, timeout, zero_copy)

    def get_latest(self, block: bool = True, timeout: float | None = None, *,
                   zero_copy: bool = False) -> Any:
        """The newest object, as get() would return it; the objects put before
        it are discarded unpickled (consumer.recv_latest(); counted in
        stats()["frames_skipped"]).  For sensors and cameras, whose reader
        wants the last reading and not a backlog."""
        return self._take(True, block, timeout, zero_copy)

    def _take(self, latest: bool, block: bool, timeout: float | None, zero_copy: bool) -> Any:
        """get() (latest False) or get_latest()."""
        if self._closed:
            raise ValueError(f"Queue {self!r} is closed")
        lock = self._get_lock
        wait = None if block and timeout is None else _wait_for(block, timeout)  # (no call for the default)
        if wait is None:
            lock.acquire()
        else:
            deadline = time.monotonic() + wait
            if not _acquire(lock, wait):
                raise queue.Empty
            if wait:
                wait = _left(deadline, wait)
        try:
            consumer = self._consumer or self._open_consumer()
            taken = 1                   # objects taken from the queue, skipped ones included
            try:
                if latest:
                    skipped = consumer.skipped
                    frame = consumer.recv_latest(wait)
                    taken += consumer.skipped - skipped
                else:
                    frame = consumer.recv(wait)
            except Empty:
                raise queue.Empty from None
            if self._permits is not None:
                for _ in range(taken):  # each gives its place back
                    self._permits.sem.release()
            if frame.type == _STREAM:   # no buffers: the common, small case
                try:
                    return _loads(frame)
                finally:
                    frame.release()
            try:
                obj, views = codec.decode(frame, zero_copy)
            except BaseException:
                if not zero_copy:       # (zero-copy views in the traceback hold it till it goes)
                    frame.release()
                raise
            if not views:
                frame.release()
            return obj
        finally:
            lock.release()

    def get_nowait(self, *, zero_copy: bool = False) -> Any:
        return self.get(False, zero_copy=zero_copy)

    # --- state --------------------------------------------------------------

    def qsize(self) -> int:
        """Objects put and not yet taken by get(): approximate, as in
        multiprocessing (other processes may put and get meanwhile)."""
        return self._counts.waiting()

    def empty(self) -> bool:
        """Approximate, as qsize()."""
        return self._counts.waiting() == 0

    def full(self) -> bool:
        """Whether maxsize objects are in the queue (approximate; always
        False without maxsize).  A ring without room for a large object is
        not counted: put() then waits or raises queue.Full all the same."""
        return self._permits is not None and self._permits.sem._is_zero()

    def stats(self) -> QueueStats:
        """ring.stats(), plus qsize, maxsize, and frames_held: frames that
        zero-copy objects (got in this process) still hold."""
        consumer = self._consumer
        return {**self._ring.stats(), "qsize": self.qsize(),
                "maxsize": self._permits.maxsize if self._permits else 0,
                "frames_held": consumer.held if consumer is not None else 0}

    @property
    def name(self) -> str:
        return self._ring.name

    @property
    def capacity(self) -> int:
        return self._ring.capacity

    def close(self) -> None:
        """This process will neither put nor get any more: its producers
        close, and the consumer role goes once the frames that zero-copy
        objects hold are released (the next consumer gets what was never
        got).  put() needs no flushing, so nothing waits here."""
        self._closed = True
        self._local = threading.local()     # each thread's producer closes as it is dropped
        self._consumer = None               # closed by the last frame that refers to it

    def join_thread(self) -> None:
        """There is no feeder thread: put() has already written everything."""
        assert self._closed, f"Queue {self!r} not closed"

    def cancel_join_thread(self) -> None:
        """Nothing to cancel: no data waits in this process to be written."""

    def __repr__(self) -> str:
        maxsize = f" maxsize={self._permits.maxsize}" if self._permits else ""
        return f"<shmring.Queue {self._ring.name!r} capacity={self._ring.capacity}{maxsize}>"


def _attach(ring: Ring, maxsize: int | None) -> Queue:
    """Unpickle a Queue: the ring attaches by name; the process gets its own
    producers and, on its first get(), may become the consumer."""
    q = Queue.__new__(Queue)
    q._ring = ring
    q._permits = _Permits(ring.name, maxsize, False) if maxsize else None
    q._setup()
    return q

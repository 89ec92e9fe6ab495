"""The shmring exception hierarchy.

    RingError
    ├── Full             (also TimeoutError) no room before the timeout
    ├── Empty            (also TimeoutError) no frame before the timeout
    ├── FrameTooLarge    (also ValueError)   frame exceeds max_frame; nothing written
    ├── IncompatibleRing                     attach to a foreign or other-version segment
    ├── ConsumerExists                       the ring already has a live consumer
    ├── ConsumerGone                         the consumer died while a producer waited
    ├── Sealed                               the ring was sealed: no new frames (producers),
    │                                        and none left to deliver (the consumer)
    ├── RingCorrupted                        shared memory holds impossible values
    └── MalformedMessage (also ValueError)   a bridge message breaks the wire format

OSError subclasses (FileExistsError, FileNotFoundError, PermissionError) keep
their usual meaning for the segment file itself.
"""


class RingError(Exception):
    """Root of every error shmring raises about a ring."""


class Full(RingError, TimeoutError):
    """The ring had no room for the frame before the timeout ran out."""


class Empty(RingError, TimeoutError):
    """No frame arrived before the timeout ran out."""


class FrameTooLarge(RingError, ValueError):
    """The frame is larger than the ring's max_frame.  Nothing was written."""


class IncompatibleRing(RingError):
    """The segment is not a shmring ring this version can read."""


class ConsumerExists(RingError):
    """Another live process (or object) is already this ring's consumer."""


class ConsumerGone(RingError):
    """The ring's consumer died while this producer waited for space."""


class Sealed(RingError):
    """The ring was sealed (Ring.seal()): a producer may not send any more,
    and a consumer has received every frame there will be.  Iterating over a
    consumer ends instead."""


class RingCorrupted(RingError):
    """The segment holds values no correct participant writes.  The ring
    cannot be trusted any more; create a new one."""


class MalformedMessage(RingError, ValueError):
    """A bridge message that breaks the wire format (shmring.bridge.wire).
    The receiver counts it, logs it and drops it; its ring is not touched."""

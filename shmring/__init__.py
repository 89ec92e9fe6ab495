"""shmring: a many-producer, one-consumer shared-memory frame ring.

    ring = shmring.Ring.create("video", 1 << 26)
    with ring.consumer() as consumer:
        for frame in consumer:          # zero copy, read-only; ends at ring.seal()
            handle(frame.array())
            frame.release()
"""
import os

from shmring._ring import Consumer, Frame, Producer, Reservation, Ring
from shmring.errors import (
    ConsumerExists,
    ConsumerGone,
    Empty,
    FrameTooLarge,
    Full,
    IncompatibleRing,
    MalformedMessage,
    RingCorrupted,
    RingError,
    Sealed,
)
from shmring.queue import Queue

__version__ = "0.1.0"

__all__ = [
    "Consumer",
    "ConsumerExists",
    "ConsumerGone",
    "Empty",
    "Frame",
    "FrameTooLarge",
    "Full",
    "IncompatibleRing",
    "MalformedMessage",
    "Producer",
    "Queue",
    "Reservation",
    "Ring",
    "RingCorrupted",
    "RingError",
    "Sealed",
    "get_include",
]


def get_include() -> str:
    """The directory to add to include_path when a Cython extension does
    `cimport shmring`."""
    return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

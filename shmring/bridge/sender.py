"""The sending end: the consumer of a local ring, forwarding each frame to a
Receiver as one ZeroMQ message, without copying it in Python.

A frame leaves the ring only when ZeroMQ has passed it on.  Large frames
are sent from the ring itself (zero copy) with a MessageTracker, and
released when it says ZeroMQ is done with them.  pyzmq copies smaller ones
(below zmq.COPY_THRESHOLD, 64 KiB): tracking each would cost more than the
copy.  They stay in the ring until a later tracked message is done, since
ZeroMQ writes one connection's messages in order: a small frame is
tracked too, as a fence, when the ring has nothing after it or every
FENCE_EVERY frames.  So a killed sender leaves every frame ZeroMQ had not
written in the ring, for the next sender.

A MessageTracker also says done when ZeroMQ dropped the message, as it may
when a handshake fails.  So nothing is sent before a first handshake has
succeeded: a sender that is refused (CURVE) takes nothing from its ring."""
from __future__ import annotations

import collections
import contextlib
import logging
import secrets
import time
from typing import Any

import zmq

from shmring._ring import Ring
from shmring.bridge import address, auth, wire
from shmring.bridge.monitor import Monitor
from shmring.bridge.report import Meter
from shmring.errors import Empty

log = logging.getLogger("shmring.bridge.send")
SLICE = 0.1                             # seconds any wait lasts before stop() and stats are seen
SLICE_MS = int(SLICE * 1000)
FENCE_EVERY = 64                        # small frames between two tracked ones, at most
FIRST_PART = int(zmq.SNDMORE | zmq.NOBLOCK)     # an int: enum arithmetic costs a microsecond


class Sender:
    """Forward the frames of `ring` (a Ring or its name) to the Receiver at
    `endpoint` (PORT, HOST:PORT or tcp://HOST:PORT), in ring order.

    Becomes the ring's consumer.  hwm bounds the messages ZeroMQ queues for
    the receiver; beyond it, frames wait in the ring.  CURVE: curve_secret
    is this sender's NAME.key_secret file, curve_server the receiver's
    public NAME.key.  heartbeat: seconds without a sign of life from the
    receiver before the connection is dropped and made again.
    stats_every: seconds between stats lines in the log.

    run() forwards until stop(); close() ends the stream: the receiver
    confirms it has everything sent (see docs/bridge.md).  Call stop() from
    a signal handler, as `shmring bridge send` does, rather than letting
    KeyboardInterrupt land between the two parts of a message."""

    def __init__(self, ring: Ring | str, endpoint: str | int, *, hwm: int = 1000,
                 curve_secret: str | None = None, curve_server: str | None = None,
                 heartbeat: float = 10.0, stats_every: float | None = None) -> None:
        if (curve_secret is None) != (curve_server is None):
            raise ValueError("CURVE needs both curve_secret and curve_server")
        if not heartbeat >= 1:
            raise ValueError(f"heartbeat must be >= 1 second, not {heartbeat!r}")
        self.ring = ring if isinstance(ring, Ring) else Ring.attach(ring)
        self.endpoint = address.endpoint(endpoint)
        self.stream = secrets.randbits(64)
        self.frames = self.bytes = 0
        self._meter = Meter(stats_every, self.stats, _line, log)
        self._open: list[Any] = []      # frames sent since the last tracked one
        # (tracker, frames it covers), oldest first; and frames taken from the
        # ring, not yet sent (2 at most)
        self._pending: collections.deque[Any] = collections.deque()
        self._taken: collections.deque[Any] = collections.deque()
        self._stop = self._closed = self._confirmed = False
        self._next_tick = 0.0
        self._consumer = self.ring.consumer()
        self._ctx = zmq.Context()
        try:
            sock = self._sock = self._ctx.socket(zmq.DEALER)
            sock.sndhwm = hwm
            sock.linger = 0             # close() decides what is delivered, not linger
            sock.heartbeat_ivl = int(heartbeat * 250)
            sock.heartbeat_timeout = int(heartbeat * 1000)
            sock.ipv6 = "[" in self.endpoint
            if curve_secret is not None:
                auth.client(sock, curve_secret, curve_server)
            self._monitor = Monitor(sock, log, "receiver", logging.WARNING)
            sock.connect(self.endpoint)
        except BaseException:
            self._ctx.destroy(linger=0)
            self._consumer.close()
            raise
        log.info("forwarding ring %r to %s as stream %016x", self.ring.name, self.endpoint,
                 self.stream)

    def run(self, frames: int | None = None) -> None:
        """Forward frames until stop() (or, if frames is given, until that
        many more were handed to ZeroMQ)."""
        goal = None if frames is None else self.frames + frames
        taken = self._taken
        while not self._stop and (goal is None or self.frames < goal):
            self._tick()
            if not self._monitor.ever:
                # Nothing goes out before a first handshake: libzmq can drop what it
                # queued for a connection whose handshake fails (CURVE refused).
                self._monitor.wait(SLICE)
                continue
            if not taken:
                try:
                    taken.append(self._consumer.recv(timeout=0 if self._pending else SLICE))
                except Empty:
                    if self._pending:
                        # Drained: what frees room now is ZeroMQ finishing a frame.
                        self._wait_oldest()
                    continue
            if len(taken) == 1:         # look ahead: the last frame before a pause is a fence
                with contextlib.suppress(Empty):
                    taken.append(self._consumer.recv(timeout=0))
            fence = len(taken) == 1 or len(self._open) + 1 >= FENCE_EVERY \
                or self.frames + 1 == goal
            if not self._forward(taken[0], fence):
                return
            taken.popleft()

    def wait_connected(self, timeout: float) -> bool:
        """Wait up to timeout seconds for a first handshake with the
        receiver; whether one has succeeded."""
        deadline = time.monotonic() + timeout
        while not self._monitor.ever and time.monotonic() < deadline:
            self._monitor.wait(min(SLICE, deadline - time.monotonic()))
        return self._monitor.ever

    def stop(self) -> None:
        """Make run() return within about 0.1 s; safe from a signal handler
        or another thread."""
        self._stop = True

    def close(self, timeout: float = 10.0) -> bool:
        """End the stream: send END after the last frame and wait up to
        timeout seconds for the receiver to confirm it.  Frames ZeroMQ has
        not passed on stay in the ring for the next sender.  Returns
        whether the receiver confirmed."""
        if self._closed:
            return self._confirmed
        self._closed = self._stop = True
        try:
            self._confirmed = self._end(time.monotonic() + timeout)
        finally:
            self._shutdown(self._confirmed)
        return self._confirmed

    def stats(self) -> dict[str, float]:
        ring = self.ring.stats()
        return {"frames": self.frames, "bytes": self.bytes, "in_zmq": self._held(),
                "connected": self._monitor.connected, "refused": self._monitor.refused,
                "ring_fill": ring["fill"] / ring["capacity"]}

    def __enter__(self) -> Sender:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- the loop's parts ---------------------------------------------------

    def _tick(self):
        """Give back what ZeroMQ finished; every SLICE, log events and stats."""
        pending = self._pending
        while pending and pending[0][0].done:
            for frame in pending.popleft()[1]:
                frame.release()
        now = time.monotonic()
        if now >= self._next_tick:
            self._next_tick = now + SLICE
            self._monitor.poll()
            self._meter.tick(now)

    def _held(self):
        """Frames sent and not yet released."""
        return len(self._open) + sum(len(frames) for _, frames in self._pending)

    def _wait_oldest(self):
        if self._pending:
            with contextlib.suppress(zmq.NotDone):
                self._pending[0][0].wait(SLICE)

    def _forward(self, frame, fence):
        """Send frame, header first, tracked if it is large or a fence;
        False if stop() came while ZeroMQ's queue was full."""
        n = len(frame)
        header = wire.data(self.stream, self.frames, frame.type, frame.producer, n, frame.layout)
        while True:
            try:
                self._sock.send(header, FIRST_PART)
                break
            except zmq.Again:           # at the high-water mark: the receiver is behind
                if self._stop:
                    return False
                self._tick()
                self._sock.poll(SLICE_MS, zmq.POLLOUT)
        # The rest of a message is never refused once its first part was taken.
        self._open.append(frame)
        if fence or n >= zmq.COPY_THRESHOLD:
            msg = zmq.Frame(frame, copy=False, track=True)      # ZeroMQ reads the ring
            self._pending.append((self._sock.send(msg, copy=False, track=True), self._open))
            self._open = []
        else:
            self._sock.send(frame)      # copied by pyzmq
        self.frames += 1
        self.bytes += n
        return True

    def _end(self, deadline):
        """Send END and wait for END_ACK, then for ZeroMQ to finish with the
        frames: True if both came before deadline."""
        end = wire.end(self.stream, self.frames)
        while not self._sock.poll(SLICE_MS, zmq.POLLOUT):
            self._tick()
            if time.monotonic() > deadline:
                return False
        self._sock.send(end)
        while True:
            self._tick()
            if time.monotonic() > deadline:
                return False
            if not self._sock.poll(SLICE_MS, zmq.POLLIN):
                continue
            reply = self._sock.recv_multipart()
            try:
                h = wire.decode(reply[-1])
            except ValueError as e:
                log.warning("ignored a malformed reply from the receiver: %s", e)
                continue
            if h == wire.Header(wire.END_ACK, self.stream, self.frames):
                break
        for frame in self._open:        # received, so ZeroMQ passed them on
            frame.release()
        self._open = []
        while True:
            self._tick()
            if not self._pending:
                return True
            if time.monotonic() > deadline:
                return False
            self._wait_oldest()

    def _shutdown(self, confirmed):
        self._tick()
        if confirmed:
            log.info("stream %016x ended after %d frames; the receiver has them all",
                     self.stream, self.frames)
        else:
            held = self._held() + len(self._taken)
            log.warning("the receiver did not confirm the end of stream %016x; %d frame(s) "
                        "stay in ring %r for the next sender, which may send some of them "
                        "twice", self.stream, held, self.ring.name)
        # ZeroMQ stops reading the frames before the ring may hand them to another consumer.
        self._ctx.destroy(linger=0)
        self._consumer.close()
        self._open = []
        self._pending.clear()
        self._taken.clear()


def _line(s, rate):
    return (f"frames {s['frames']}, {rate:.3f} GB/s, in ZeroMQ {s['in_zmq']}, "
            f"ring {s['ring_fill']:.0%} full, {'connected' if s['connected'] else 'NOT connected'}")

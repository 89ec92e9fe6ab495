"""The receiving end: a producer into a local ring, writing each message's
payload straight into a reservation of the right size."""
from __future__ import annotations

import logging
import time

import zmq

from shmring._ring import Ring
from shmring.bridge import address, auth, wire
from shmring.bridge.monitor import Monitor
from shmring.bridge.report import Limited, Meter
from shmring.errors import ConsumerGone, Full, MalformedMessage

log = logging.getLogger("shmring.bridge.recv")
SLICE = 0.1                             # seconds any wait lasts before stop() and stats are seen
SLICE_MS = int(SLICE * 1000)
HEARTBEAT_IVL = 500                     # ms between pings, so that senders see we are alive
STOP_GRACE = 5.0                        # seconds a frame in hand waits for room after stop()
MAX_STREAMS = 1024                      # sequence numbers kept for this many senders
BATCH = 256                             # messages taken per poll
DISCARD = bytearray()                   # recv_into() this drops a message part
NOBLOCK, RCVMORE = int(zmq.NOBLOCK), int(zmq.RCVMORE)  # ints: enum lookups cost a microsecond


class Receiver:
    """Listen at `endpoint` (PORT, HOST:PORT or tcp://HOST:PORT; the host
    defaults to 127.0.0.1) and write what Senders send into `ring` (a Ring
    or its name), with its type, dtype and shape.  Any number of senders;
    ZeroMQ queues them fairly.

    A full ring stops the receiver, and ZeroMQ's high-water mark then stops
    the senders; drop_when_full drops and counts frames instead.  ZeroMQ
    queues about `buffer` bytes here (default: the ring's capacity): its
    high-water mark, which counts messages, is set to buffer // the largest
    frame so far, from 2 to 1000.  Each sender's sequence numbers are checked:
    gaps are counted and logged, and a repeated or older one is dropped.
    Malformed messages are counted, logged and dropped.  CURVE:
    curve_secret is this receiver's NAME.key_secret file, curve_allow a
    directory of the allowed senders' NAME.key files.

    `endpoint` is then what was bound (tcp://127.0.0.1:PORT for port 0)."""

    def __init__(self, endpoint: str | int, ring: Ring | str, *, buffer: int | None = None,
                 drop_when_full: bool = False, curve_secret: str | None = None,
                 curve_allow: str | None = None, stats_every: float | None = None) -> None:
        if (curve_secret is None) != (curve_allow is None):
            raise ValueError("CURVE needs both curve_secret and curve_allow")
        self.ring = ring if isinstance(ring, Ring) else Ring.attach(ring)
        self.drop_when_full = drop_when_full
        self.buffer = self.ring.capacity if buffer is None else int(buffer)
        if self.buffer < 1:
            raise ValueError(f"buffer must be >= 1 byte, not {buffer!r}")
        self._largest = 0               # the largest frame so far, which sets the hwm
        self.frames = self.bytes = self.drops = self.gaps = self.lost = self.malformed = 0
        self._streams: dict[int, int] = {}     # stream -> next seq, least recently used first
        self._meter = Meter(stats_every, self.stats, _line, log)
        self._limited = Limited(log)
        self._stop = False
        self._next_tick = 0.0
        self._auth = None
        self._producer = self.ring.producer()
        self._ctx = zmq.Context()
        try:
            sock = self._sock = self._ctx.socket(zmq.ROUTER)
            sock.rcvhwm = 1000          # lowered as frames come: raised, libzmq can stall (_take)
            sock.linger = 0
            sock.router_mandatory = 1   # an END_ACK that cannot go out says so
            # Pings tell senders we are alive.  No timeout here (0; unset it would
            # be HEARTBEAT_IVL): while the ring is full we read nothing, pongs included.
            sock.heartbeat_ivl = HEARTBEAT_IVL
            sock.heartbeat_timeout = 0
            sock.maxmsgsize = max(self.ring.max_frame, wire.HEADER.size)   # bounds our memory
            bind = address.endpoint(endpoint)
            sock.ipv6 = "[" in bind
            if curve_secret is not None:
                self._auth = auth.server(self._ctx, sock, curve_secret, curve_allow)
            self._monitor = Monitor(sock, log, "a sender", logging.INFO)
            sock.bind(bind)
            self.endpoint = sock.getsockopt_string(zmq.LAST_ENDPOINT)
        except BaseException:
            self._close_zmq()
            self._producer.close()
            raise
        log.info("listening on %s for ring %r", self.endpoint, self.ring.name)

    def run(self, frames: int | None = None) -> None:
        """Receive until stop() (or, if frames is given, until that many
        more were written into the ring)."""
        goal = None if frames is None else self.frames + frames
        sock = self._sock
        while not self._stop and (goal is None or self.frames < goal):
            self._tick()
            if not sock.poll(SLICE_MS, zmq.POLLIN):
                continue
            for _ in range(BATCH):
                try:
                    peer = sock.recv(NOBLOCK)
                except zmq.Again:
                    break
                self._take(peer)
                if self._stop or self.frames == goal:
                    break

    def stop(self) -> None:
        """Make run() return soon; safe from a signal handler or another
        thread.  A frame in hand is still written (up to 5 s for room)."""
        self._stop = True

    def close(self) -> None:
        """Stop listening.  What ZeroMQ still queues here is dropped: stop
        the senders first (docs/bridge.md)."""
        self._stop = True
        self._close_zmq()
        self._producer.close()

    def stats(self) -> dict[str, float]:
        ring = self.ring.stats()
        return {"frames": self.frames, "bytes": self.bytes, "drops": self.drops,
                "gaps": self.gaps, "lost": self.lost, "malformed": self.malformed,
                "streams": len(self._streams), "refused": self._monitor.refused,
                "ring_fill": ring["fill"] / ring["capacity"]}

    def __enter__(self) -> Receiver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- one message ----------------------------------------------------------

    def _take(self, peer):
        """Everything after the ROUTER's peer part: a header, then for DATA
        the payload."""
        head = self._sock.recv(copy=False)
        try:
            h = wire.decode(head.buffer)
            if h.kind == wire.DATA and not head.more:
                raise MalformedMessage("a frame header without its payload")
            if h.kind != wire.DATA and head.more:
                raise MalformedMessage("an end-of-stream header with more parts after it")
            if h.kind == wire.END_ACK:
                raise MalformedMessage("an END_ACK sent to a receiver")
            expected = self._streams.get(h.stream)
            if expected is not None and h.seq < expected:
                raise MalformedMessage(f"sequence number {h.seq} of stream {h.stream:016x} "
                                       f"after {expected - 1}: repeated or reordered")
            if h.length > self.ring.max_frame:
                raise MalformedMessage(f"length {h.length} exceeds the ring's max_frame "
                                       f"{self.ring.max_frame}")
        except MalformedMessage as e:
            self._reject(head, e)
            return
        if h.kind == wire.END:
            self._end(peer, head, h)
            return
        if h.length > self._largest:
            # Only ever lowered: a reader that wakes a blocked writer every
            # hwm/2 messages would never wake one blocked at a lower hwm.
            self._largest = h.length
            self._sock.rcvhwm = min(1000, max(2, self.buffer // h.length))
        if self._write(head, h):
            self._follow(head, h)

    def _write(self, head, h):
        """Receive the payload into a reservation and commit it: True if the
        frame was written or dropped for want of room, False if malformed."""
        res = self._reserve(h)
        if res is None:
            self.drops += 1
            self._discard()
            return True
        n = self._sock.recv_into(res)
        if n != h.length or self._sock.get(RCVMORE):
            res.abort()
            self._reject(head, MalformedMessage(f"a payload of {n} bytes after a header "
                                                f"that says {h.length}"))
            return False
        res.commit()
        self.frames += 1
        self.bytes += n
        return True

    def _reserve(self, h):
        """A reservation for h's frame, or None to drop it: the ring is full
        and drop_when_full is set, or stop() came and no room followed."""
        p = self._producer
        timeout = 0 if self.drop_when_full else SLICE
        give_up = None
        while True:
            try:
                if h.dtype is None:
                    return p.reserve(h.length, type=h.type, timeout=timeout)
                return p.reserve_array(h.shape, h.dtype, type=h.type, timeout=timeout)
            except Full:
                if self.drop_when_full:
                    self._limited.log(logging.WARNING, "full",
                                      "ring %r is full: dropping frames", self.ring.name)
                    return None
            except ConsumerGone:
                self._limited.log(logging.WARNING, "gone",
                                  "the consumer of ring %r died: waiting for another",
                                  self.ring.name)
                if self.drop_when_full:
                    return None
                time.sleep(SLICE)       # it raises at once until a new consumer comes
            self._tick()
            if self._stop:
                give_up = give_up or time.monotonic() + STOP_GRACE
                if time.monotonic() > give_up:
                    log.warning("stopping: dropped a frame that found no room in %.0f s",
                                STOP_GRACE)
                    return None

    def _follow(self, head, h):
        """Check h's sequence number against its stream's and count a gap."""
        expected = self._streams.pop(h.stream, None)
        if expected is None:
            if h.seq:
                log.warning("stream %016x from %s joins at sequence %d: the frames before it "
                            "went to an earlier receiver or were lost", h.stream,
                            _address(head), h.seq)
            else:
                log.info("stream %016x from %s started", h.stream, _address(head))
        elif h.seq > expected:
            self.gaps += 1
            self.lost += h.seq - expected
            log.warning("stream %016x from %s: %d frame(s) lost, sequence %d to %d "
                        "(producer %d sent the next)", h.stream, _address(head),
                        h.seq - expected, expected, h.seq - 1, h.producer)
        self._streams[h.stream] = h.seq + 1
        if len(self._streams) > MAX_STREAMS:
            del self._streams[next(iter(self._streams))]

    def _end(self, peer, head, h):
        """A sender's last message: everything before it is written (messages
        from one sender arrive in order), so confirm."""
        expected = self._streams.pop(h.stream, None)
        if expected is not None and h.seq > expected:
            self.gaps += 1
            self.lost += h.seq - expected
            log.warning("stream %016x from %s: its last %d frame(s) were lost", h.stream,
                        _address(head), h.seq - expected)
        log.info("stream %016x from %s ended after %d frames", h.stream, _address(head), h.seq)
        try:
            self._sock.send_multipart([peer, wire.end(h.stream, h.seq, wire.END_ACK)],
                                      zmq.NOBLOCK)
        except zmq.ZMQError as e:       # ROUTER_MANDATORY: gone, or not reading
            log.warning("could not confirm the end of stream %016x: %s", h.stream, e)

    def _reject(self, head, error):
        self.malformed += 1
        self._limited.log(logging.WARNING, "malformed",
                          "dropped a malformed message from %s: %s", _address(head), error)
        self._discard()

    def _discard(self):
        while self._sock.get(RCVMORE):
            self._sock.recv_into(DISCARD)

    def _tick(self):
        now = time.monotonic()
        if now >= self._next_tick:
            self._next_tick = now + SLICE
            self._monitor.poll()
            self._meter.tick(now)

    def _close_zmq(self):
        if self._auth is not None:
            self._auth.stop()
        self._ctx.destroy(linger=0)


def _address(head):
    """The sender's address, for the log."""
    try:
        return head.get("Peer-Address")
    except zmq.ZMQError:
        return "a sender"


def _line(s, rate):
    return (f"frames {s['frames']}, {rate:.3f} GB/s, drops {s['drops']}, gaps {s['gaps']} "
            f"({s['lost']} frames lost), malformed {s['malformed']}, "
            f"ring {s['ring_fill']:.0%} full")

"""A socket's connection events, read from its ZeroMQ monitor socket and
logged: connects, disconnects and refused handshakes (CURVE)."""
import logging

import zmq
from zmq.utils.monitor import parse_monitor_message

from shmring.bridge.report import Limited

E = zmq.Event
EVENTS = (E.DISCONNECTED | E.HANDSHAKE_SUCCEEDED | E.HANDSHAKE_FAILED_AUTH
          | E.HANDSHAKE_FAILED_PROTOCOL | E.HANDSHAKE_FAILED_NO_DETAIL)
FAILED: dict[int, str] = {
    E.HANDSHAKE_FAILED_AUTH: "authentication refused",
    E.HANDSHAKE_FAILED_PROTOCOL: "protocol or security mechanism mismatch",
    E.HANDSHAKE_FAILED_NO_DETAIL: "no detail",
}


class Monitor:
    """Reads the monitor socket of sock without blocking and logs what it
    says; peer names the other side, disconnect_level is the log level of
    a disconnect.  `connected`: the last connection completed its handshake;
    `ever`: one did."""

    def __init__(self, sock, log, peer, disconnect_level):
        self.log, self.peer, self.disconnect_level = log, peer, disconnect_level
        self.events = sock.get_monitor_socket(EVENTS)
        self.limited = Limited(log)
        self.connected = self.ever = False
        self.refused = 0                # handshakes that failed

    def wait(self, timeout):
        """Wait up to timeout seconds for an event, then poll()."""
        self.events.poll(timeout * 1000)
        self.poll()

    def poll(self):
        while True:
            try:
                msg = self.events.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            event = parse_monitor_message(msg)
            kind: int = event["event"]
            where = event["endpoint"].decode(errors="replace")
            if kind == E.HANDSHAKE_SUCCEEDED:
                self.connected = self.ever = True
                self.log.info("%s connected (%s)", self.peer, where)
            elif kind == E.DISCONNECTED:
                self.connected = False
                self.limited.log(self.disconnect_level, kind, f"{self.peer} disconnected ({where})")
            elif kind in FAILED:
                self.refused += 1
                self.connected = False
                self.limited.log(logging.WARNING, kind,
                                 f"handshake with {self.peer} failed ({where}): {FAILED[kind]}")

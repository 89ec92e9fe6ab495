"""A socket's connection events, read from its ZeroMQ monitor socket and
logged: connects, disconnects and refused handshakes (CURVE)."""
import logging

import zmq
from zmq.utils.monitor import parse_monitor_message

from shmring.bridge.report import Limited

E = zmq.Event
EVENTS = (E.DISCONNECTED | E.HANDSHAKE_SUCCEEDED | E.HANDSHAKE_FAILED_AUTH
          | E.HANDSHAKE_FAILED_PROTOCOL | E.HANDSHAKE_FAILED_NO_DETAIL)
FAILED = {
    E.HANDSHAKE_FAILED_AUTH: "authentication refused",
    E.HANDSHAKE_FAILED_PROTOCOL: "protocol or security mechanism mismatch",
    E.HANDSHAKE_FAILED_NO_DETAIL: "no detail",
}


class Monitor:
    """Reads the monitor socket of sock without blocking; `connected` is
    whether the last connection reached a completed handshake."""

    def __init__(self, sock, log, peer, disconnect_level):
        self.sock, self.log, self.peer = sock, log, peer
        self.disconnect_level = disconnect_level
        self.events = sock.get_monitor_socket(EVENTS)
        self.limited = Limited(log)
        self.connected = False
        self.refused = 0                # handshakes that failed

    def poll(self):
        while True:
            try:
                msg = self.events.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            event = parse_monitor_message(msg)
            kind, where = event["event"], event["endpoint"].decode(errors="replace")
            if kind == E.HANDSHAKE_SUCCEEDED:
                self.connected = True
                self.log.info("%s connected (%s)", self.peer, where)
            elif kind == E.DISCONNECTED:
                self.connected = False
                self.limited.log(self.disconnect_level, kind, f"{self.peer} disconnected ({where})")
            elif kind in FAILED:
                self.refused += 1
                self.connected = False
                self.limited.log(logging.WARNING, kind, f"handshake with {self.peer} failed ({where}): "
                                           f"{FAILED[kind]}")

    def close(self):
        self.sock.disable_monitor()
        self.events.close(linger=0)

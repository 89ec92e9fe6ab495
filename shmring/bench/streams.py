"""os.pipe and socketpair: length-prefixed messages over byte streams, one
stream per producer (writes to a shared pipe would interleave), the consumer
reading whichever is ready.

Each is measured two ways.  "copy, buffered" is the strongest simple form a
user would write: the producer sends prefix and payload in one system call
(writev, sendmsg), and the consumer reads up to 64 KiB at a time and splits
every whole message out of what it got.  "copy, 2 syscalls" writes the prefix
and the payload separately and reads each exactly, as the first version of
this benchmark did."""
import collections
import contextlib
import os
import select
import socket
import struct
from typing import Any

from shmring.bench.channel import Channel
from shmring.bench.harness import touch
from shmring.bench.peers import Peer

PREFIX = struct.Struct("<Q")
CHUNK = 1 << 16                         # bytes per read of the buffered consumer


class PipeEnds:
    """The system calls of os.pipe."""

    @staticmethod
    def pair():
        return os.pipe()

    @staticmethod
    def fileno(fd):
        return fd

    @staticmethod
    def read(fd, n):
        return os.read(fd, n)

    @staticmethod
    def close(fd):
        with contextlib.suppress(OSError):
            os.close(fd)

    @staticmethod
    def write_all(fd, data):
        with memoryview(data) as mv:
            while mv:
                mv = mv[os.write(fd, mv):]

    @staticmethod
    def writev(fd, parts):
        return os.writev(fd, parts)

    @staticmethod
    def read_into(fd, view):
        return os.readv(fd, [view])


class SocketEnds:
    """The same for a socketpair(AF_UNIX, SOCK_STREAM)."""

    @staticmethod
    def pair():
        return socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)

    @staticmethod
    def fileno(s):
        return s.fileno()

    @staticmethod
    def read(s, n):
        return s.recv(n)

    @staticmethod
    def close(s):
        s.close()

    @staticmethod
    def write_all(s, data):
        s.sendall(data)

    @staticmethod
    def writev(s, parts):
        return s.sendmsg(parts)

    @staticmethod
    def read_into(s, view):
        return s.recv_into(view)


def read_exact(io, end, view):
    """Fill view from the stream."""
    got = 0
    while got < len(view):
        k = io.read_into(end, view[got:])
        if k == 0:
            raise EOFError("peer closed")
        got += k


class Stream(Channel):
    """The ends of one stream per producer; subclasses write and read them."""

    def reading(self, ends):
        """The consumer's state for reading ends."""
        raise NotImplementedError

    def __init__(self, io, producers):
        self.io = io
        self.ends = [io.pair() for _ in range(producers)]

    def consumer(self):
        for _r, w in self.ends:
            self.io.close(w)
        return self.reading([r for r, _ in self.ends])

    def producer(self, index):
        for i, (r, w) in enumerate(self.ends):
            self.io.close(r)
            if i != index:
                self.io.close(w)
        return self.ends[index][1]

    def poller(self, ends):
        """A poll object over several read ends, None for one."""
        if len(ends) == 1:
            return None
        poller = select.poll()
        for r in ends:
            poller.register(self.io.fileno(r), select.POLLIN)
        return poller

    def close(self):
        for r, w in self.ends:
            self.io.close(r)
            self.io.close(w)


class Splitter:
    """The consumer's side of one buffered stream.  Each read takes up to
    64 KiB and yields every whole message it completes, as bytes; a message
    too large for that is read straight into a buffer of its own and
    returned as a view of it, valid until the next read."""

    def __init__(self, io, end):
        self.io, self.end = io, end
        self.rest = b""                 # the start of a message not yet whole
        self.big = bytearray()

    def read_messages(self, out):
        """One read; appends to out the messages it completes (maybe none)."""
        chunk = self.io.read(self.end, CHUNK)
        if not chunk:
            raise EOFError("peer closed")
        data = self.rest + chunk if self.rest else chunk
        pos, size = 0, len(data)
        unpack_from = PREFIX.unpack_from
        while size - pos >= 8:
            end = pos + 8 + unpack_from(data, pos)[0]
            if end > size:
                if end - pos > CHUNK:   # a large message: the rest bypasses the chunks
                    out.append(self.read_large(data, pos, end))
                    pos = size
                break
            out.append(data[pos + 8:end])
            pos = end
        self.rest = data[pos:]

    def read_large(self, data, pos, end):
        n = end - pos - 8
        if len(self.big) != n:
            self.big = bytearray(n)
        view = memoryview(self.big)
        have = len(data) - pos - 8
        view[:have] = memoryview(data)[pos + 8:]
        read_exact(self.io, self.end, view[have:])
        return view


class Buffered(Stream):
    mode = "copy, buffered"

    def send(self, w, buf):
        n = len(buf)
        sent = self.io.writev(w, [PREFIX.pack(n), buf])
        if sent < 8 + n:                # a partial write: only after a signal
            self.io.write_all(w, (PREFIX.pack(n) + bytes(buf))[sent:])

    def reading(self, ends):
        return {"splitters": {self.io.fileno(r): Splitter(self.io, r) for r in ends},
                "poller": self.poller(ends), "ready": [], "pending": collections.deque()}

    def read_some(self, st, out):
        """One read on a stream that has data: its whole messages go to out."""
        if st["poller"] is None:
            splitter = next(iter(st["splitters"].values()))
        else:
            if not st["ready"]:
                st["ready"] = [fd for fd, _ in st["poller"].poll()]
            splitter = st["splitters"][st["ready"].pop()]
        splitter.read_messages(out)

    def recv(self, st):
        pending = st["pending"]
        while not pending:
            self.read_some(st, pending)
        return pending.popleft()

    def drain(self, st, total):
        """What a user's loop does: read, then handle every message read."""
        acc = got = 0
        batch: list[Any] = []
        while got < total:
            batch.clear()
            self.read_some(st, batch)
            for msg in batch:
                acc += touch(msg)
            got += len(batch)
        return acc


class TwoCalls(Stream):
    mode = "copy, 2 syscalls"

    def send(self, w, buf):
        self.io.write_all(w, PREFIX.pack(len(buf)))
        self.io.write_all(w, buf)

    def reading(self, ends):
        return {"buf": bytearray(CHUNK), "poller": self.poller(ends), "ready": [],
                "by_fd": {self.io.fileno(r): r for r in ends}}

    def recv(self, st):
        if st["poller"] is None:
            r = self.ends[0][0]
        else:
            if not st["ready"]:
                st["ready"] = [fd for fd, _ in st["poller"].poll()]
            r = st["by_fd"][st["ready"].pop()]
        view = memoryview(st["buf"])
        read_exact(self.io, r, view[:PREFIX.size])
        n = PREFIX.unpack_from(st["buf"])[0]
        if n > len(st["buf"]):
            st["buf"] = bytearray(n)
            view = memoryview(st["buf"])
        read_exact(self.io, r, view[:n])
        return view[:n]


class StreamPeer(Peer):
    io: Any = None                      # PipeEnds or SocketEnds

    def __init__(self, buffered=True):
        self.kind = Buffered if buffered else TwoCalls
        self.mode = self.kind.mode

    def channel(self, producers, size):
        return self.kind(self.io, producers)


class Pipe(StreamPeer):
    name = "os.pipe"
    io = PipeEnds


class SocketPair(StreamPeer):
    name = "socketpair"
    io = SocketEnds

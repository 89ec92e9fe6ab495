"""The baselines: what a user would otherwise pick.  Each is a Peer whose
channel() makes a Channel; a peer whose package is missing says why.
os.pipe and socketpair are in streams.py."""
import contextlib
import ctypes
import importlib
import multiprocessing.connection
import os
import socket
import tempfile
import time
import uuid
from typing import Any, Optional

from shmring.bench.channel import Channel, Duplex
from shmring.bench.harness import CTX, touch


def select(peers, only):
    """The peers whose "name label" holds one of only's comma-separated
    substrings (all when only is empty) and that can run here, and a note
    for each that cannot."""
    wanted = [w.strip() for w in only.split(",")] if only else None
    available, notes = [], []
    for peer in peers:
        label = f"{peer.name} {peer.label}"
        if wanted and not any(w in label for w in wanted):
            continue
        reason = peer.missing()
        if reason:
            notes.append(f"skipped {peer.name}: {reason}")
        else:
            available.append(peer)
    return available, notes


class Peer:
    name = ""
    mode = "copy"
    needs: tuple[str, ...] = ()         # importable modules it requires
    max_producers: Optional[int] = None     # None: any number
    sizes: Optional[tuple[int, ...]] = None     # the frame sizes it runs at; None: all

    @property
    def label(self):
        """The mode as the records and the table name it."""
        return self.mode

    def missing(self):
        """None when usable, else the reason to skip it."""
        for module in self.needs:
            try:
                importlib.import_module(module)
            except Exception as e:      # noqa: BLE001 - any import failure skips it
                return f"{module} not importable ({type(e).__name__}: {e}); pip install 'shmring[bench]'"
        return None

    def channel(self, producers, size):
        raise NotImplementedError

    def min_frames(self, size):
        """Frames a repetition needs at the least (shmring: two laps of its ring)."""
        return 0

    def duplex(self, size):
        return Duplex(self.channel(1, size), self.channel(1, size))


# --- multiprocessing --------------------------------------------------------

class MpPipeChannel(Channel):
    def __init__(self, producers, size):
        self.ends = [CTX.Pipe(duplex=False) for _ in range(producers)]

    def consumer(self):
        return {"conns": [r for r, _ in self.ends], "ready": []}

    def producer(self, index):
        return self.ends[index][1]

    def send(self, w, buf):
        w.send_bytes(buf)

    def recv(self, st):
        if len(st["conns"]) == 1:
            return st["conns"][0].recv_bytes()
        if not st["ready"]:
            st["ready"] = multiprocessing.connection.wait(st["conns"])
        return st["ready"].pop().recv_bytes()


class MpPipe(Peer):
    name = "mp.Pipe"

    def channel(self, producers, size):
        return MpPipeChannel(producers, size)


class QueueChannel(Channel):
    def __init__(self, queue):
        self.queue = queue

    def consumer(self):
        return self.queue

    def producer(self, index):
        return self.queue

    def send(self, q, buf):
        q.put(buf)

    def recv(self, q):
        return q.get()



class MpQueue(Peer):
    name = "mp.Queue"

    def channel(self, producers, size):
        return QueueChannel(CTX.Queue())


class FasterFifo(Peer):
    name = "faster-fifo"
    needs = ("faster_fifo",)

    def channel(self, producers, size):
        from faster_fifo import Queue
        return QueueChannel(Queue(max_size_bytes=max(1 << 20, 4 * (size + 64))))


# --- pyzmq ------------------------------------------------------------------

class ZmqChannel(Channel):
    """PUSH to PULL over a unix socket, or over loopback TCP when tcp."""

    def __init__(self, size, tcp=False):
        self.path = None if tcp else \
            os.path.join(tempfile.gettempdir(), f"shmring-bench-{uuid.uuid4().hex[:8]}")
        self.endpoint = f"tcp://127.0.0.1:{free_port()}" if self.path is None \
            else "ipc://" + self.path
        self.copy = size < 65536        # pyzmq's advice: zero copy only for large frames

    def consumer(self):
        import zmq
        sock = zmq.Context().socket(zmq.PULL)
        sock.bind(self.endpoint)
        return sock

    def producer(self, index):
        import zmq
        sock = zmq.Context().socket(zmq.PUSH)
        sock.connect(self.endpoint)
        return sock

    def send(self, sock, buf):
        sock.send(buf, copy=self.copy)

    def recv(self, sock):
        return sock.recv() if self.copy else sock.recv(copy=False).buffer

    def close(self):
        if self.path:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)


class Zmq(Peer):
    name = "pyzmq ipc"
    needs = ("zmq",)

    def channel(self, producers, size):
        return ZmqChannel(size)


# --- websockets over loopback TCP -------------------------------------------

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


WS_OPTIONS = {"max_size": None, "compression": None}   # no 1 MiB cap, no deflate


class WsServer:
    """An asyncio websockets server on its own thread, as a service would
    run it; on_message runs on that thread for each message."""

    def __init__(self, port, on_message):
        import asyncio
        import threading

        from websockets.asyncio.server import serve
        self.loop = asyncio.new_event_loop()
        self.on_message = on_message

        async def handler(ws):
            async for msg in ws:
                await self.on_message(ws, msg)

        async def start():
            return await serve(handler, "127.0.0.1", port, **WS_OPTIONS)

        self.server = self.loop.run_until_complete(start())
        threading.Thread(target=self.loop.run_forever, daemon=True).start()


class WsChannel(Channel):
    """An asyncio server in the consumer, as the original service had; each
    producer is a blocking client (websockets.sync)."""

    counts_shares = False               # frames arrive in the server's callback

    def __init__(self):
        self.port = free_port()

    def consumer(self):
        import threading
        st: dict[str, Any] = {"count": 0, "acc": 0, "total": float("inf"),
                              "cond": threading.Condition()}

        async def on_message(ws, msg):
            st["acc"] += touch(msg)
            st["count"] += 1
            if st["count"] >= st["total"]:
                with st["cond"]:
                    st["cond"].notify()

        WsServer(self.port, on_message)
        return st

    def producer(self, index):
        from websockets.sync.client import connect
        return connect(f"ws://127.0.0.1:{self.port}", **WS_OPTIONS)

    def send(self, ws, buf):
        ws.send(buf)

    def drain(self, st, total):
        st["total"] = total
        with st["cond"]:
            st["cond"].wait_for(lambda: st["count"] >= total)
        return st["acc"]

    def fill(self, ws, job):
        super().fill(ws, job)
        ws.close()


class WsDuplex:
    """Ping-pong over one connection: the echoer is the asyncio server."""

    def __init__(self):
        self.port = free_port()

    def echo_setup(self):
        import threading
        done = threading.Event()

        async def on_message(ws, msg):
            await ws.send(msg)
            if len(msg) == 1:
                done.set()

        WsServer(self.port, on_message)
        return done

    def echo(self, done, n):
        done.wait()

    def ping_setup(self):
        from websockets.sync.client import connect
        return connect(f"ws://127.0.0.1:{self.port}", **WS_OPTIONS)

    def ping(self, ws, job):
        import time
        n, payload = job
        times = []
        for _ in range(n):
            t = time.perf_counter_ns()
            ws.send(payload)
            ws.recv()
            times.append(time.perf_counter_ns() - t)
        ws.send(b"!")                   # tells the echoer to stop
        ws.recv()
        ws.close()
        return times

    def close(self):
        pass


class WebSockets(Peer):
    name = "websockets"
    needs = ("websockets.asyncio.server", "websockets.sync.client")

    def channel(self, producers, size):
        return WsChannel()

    def duplex(self, size):
        return WsDuplex()


# --- iceoryx2: loaned samples over shared memory ----------------------------

class IceoryxChannel(Channel):
    """A publish-subscribe service of byte slices, used as iceoryx2's Python
    examples use it: the publisher loans a sample from its pool, fills it in
    place and sends it; the subscriber drops each sample after use, which
    returns it to the pool.

    The bindings have no blocking receive, so the consumer polls: it takes
    every sample there is, then keeps polling for a while before it naps
    (for throughput 20 us with frames under 64 KiB, none with larger ones,
    which take longer than that to arrive; 1 ms in ping-pong).  It copies
    frames under 64 KiB out of the sample (ctypes.string_at, cheaper than a
    memoryview through payload() at that size) and views larger ones in
    place.

    iceoryx2 0.10's Python publisher drops samples when the subscriber's
    buffer is full, despite RetryUntilDelivered and safe overflow off (20
    sends into a buffer of 8 never blocked; 8 arrived), and send() returns 0
    then: the producer naps and sends the frame again.  A deep buffer (up to
    4096 samples, 32 MiB) makes that rare."""

    NAP = 20e-6

    def __init__(self, size, spin):
        self.service = f"shmring-bench/{uuid.uuid4().hex[:12]}"
        self.size = size
        self.spin = spin                # seconds of empty polls before a nap
        self.depth = max(2, min(4096, (32 << 20) // max(size, 1)))

    def open(self):
        import iceoryx2 as iox2
        iox2.set_log_level_from_env_or(iox2.LogLevel.Error)   # no "no config file" lines
        node = iox2.NodeBuilder.new().create(iox2.ServiceType.Ipc)
        svc = (node.service_builder(iox2.ServiceName.new(self.service))
               .publish_subscribe(iox2.Slice[ctypes.c_uint8])
               .max_publishers(16).subscriber_max_buffer_size(self.depth)
               .history_size(0).enable_safe_overflow(False)
               .open_or_create())
        return iox2, node, svc

    def consumer(self):
        _, node, svc = self.open()
        return node, svc, svc.subscriber_builder().create(), [None]

    def producer(self, index):
        iox2, node, svc = self.open()
        pub = (svc.publisher_builder().initial_max_slice_len(self.size)
               .backpressure_strategy(iox2.BackpressureStrategy.RetryUntilDelivered).create())
        return node, svc, pub, ctypes.memmove

    def send(self, state, buf):
        node, svc, pub, memmove = state
        if type(buf) is not bytes:
            buf = bytes(buf)            # ctypes.memmove takes no memoryview
        while True:
            sample = pub.loan_slice_uninit(len(buf))    # a loaned sample, filled in place
            memmove(sample.payload_ptr, buf, len(buf))
            if sample.assume_init().send():
                return
            time.sleep(self.NAP)        # no subscriber took it: its buffer was full

    def next_sample(self, sub):
        sample = sub.receive()
        if sample is not None:
            return sample
        deadline = time.perf_counter() + self.spin
        while True:
            sample = sub.receive()
            if sample is not None:
                return sample
            if time.perf_counter() > deadline:
                time.sleep(self.NAP)

    @staticmethod
    def contents(sample):
        """The frame: bytes under 64 KiB, else a view that holds the sample."""
        n = sample.header.number_of_elements
        if n < 65536:
            return ctypes.string_at(sample.payload_ptr, n)
        return memoryview((ctypes.c_uint8 * n).from_address(sample.payload_ptr)).cast("B")

    def recv(self, state):
        """The next frame; a large one holds its sample until the next recv()."""
        node, svc, sub, held = state
        held[0] = None
        held[0] = self.next_sample(sub)
        return self.contents(held[0])

    def drain(self, state, total):
        node, svc, sub, _ = state
        acc = 0
        for _ in range(total):
            sample = self.next_sample(sub)
            acc += touch(self.contents(sample))
            del sample
        return acc

    def close(self):
        """Our processes end with os._exit, so their nodes are left behind."""
        import iceoryx2 as iox2
        iox2.set_log_level_from_env_or(iox2.LogLevel.Error)
        iox2.NodeBuilder.new().create(iox2.ServiceType.Ipc).try_cleanup_dead_nodes()


class Iceoryx2(Peer):
    name = "iceoryx2"
    needs = ("iceoryx2",)

    def channel(self, producers, size):
        # A spin pays only while the next small frame is microseconds away.
        return IceoryxChannel(size, spin=20e-6 if size < 65536 else 0.0)

    def duplex(self, size):
        return Duplex(IceoryxChannel(size, spin=1e-3), IceoryxChannel(size, spin=1e-3))

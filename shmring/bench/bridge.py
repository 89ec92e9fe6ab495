"""The bridge in the benchmark: frames from producers into a ring, through
`shmring.bridge` over loopback TCP, into a second ring and its consumer;
against raw pyzmq PUSH/PULL over the same loopback TCP sending the same
frames from memory.  All four processes' CPU counts (docs/bridge.md)."""
import uuid

import shmring
from shmring.bench.peers import Peer, ZmqChannel, free_port
from shmring.bench.rings import RingChannel, capacity_for


class BridgeChannel(RingChannel):
    """Producers send into the near ring (one copy, like `shmring send`);
    the consumer reads the far ring; a Sender and a Receiver between."""

    def __init__(self, size):
        super().__init__(size, 0)
        self.far = shmring.Ring.create(f"bench-{uuid.uuid4().hex[:12]}", capacity_for(size))
        self.endpoint = f"tcp://127.0.0.1:{free_port()}"

    def consumer(self):
        return self.far.consumer()

    def helpers(self, total):
        return [(self.receiver, forward, total), (self.sender, forward, total)]

    def sender(self):
        """Connected before the clock starts: the receiver is set up first."""
        from shmring.bridge import Sender
        sender = Sender(self.ring, self.endpoint)
        if not sender.wait_connected(30):
            raise TimeoutError(f"no receiver at {self.endpoint}")
        return sender

    def receiver(self):
        from shmring.bridge import Receiver
        return Receiver(self.endpoint, self.far)

    def close(self):
        super().close()
        self.far.close()
        self.far.unlink()


def forward(end, total):
    """A bridge end's timed part: carry total frames."""
    end.run(frames=total)


# The sizes the bridge's targets name (docs/bridge.md).  At 64 B, four
# producers, a sender, a receiver and the consumer share 2 CPUs so thinly
# that the point outran the harness's 30 s and took the others with it.
SIZES = (4096, 8_294_400)


class Bridge(Peer):
    name = "shmring"
    mode = "bridge"
    needs = ("zmq",)
    sizes = SIZES

    def channel(self, producers, size):
        return BridgeChannel(size)


class ZmqTcp(Peer):
    """The bridge's baseline: what ZeroMQ alone does over the same TCP."""
    name = "pyzmq tcp"
    mode = "bridge baseline"
    needs = ("zmq",)
    sizes = SIZES

    def channel(self, producers, size):
        return ZmqChannel(size, tcp=True)

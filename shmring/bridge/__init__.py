"""Ring to ring across hosts, over ZeroMQ: a Sender consumes a local ring
and a Receiver produces into a remote one.  See docs/bridge.md.

    shmring.bridge.Receiver("tcp://0.0.0.0:5555", "frames").run()       # host B
    shmring.bridge.Sender("frames", "hostb:5555").run()                  # host A

Needs pyzmq >= 26.4 (pip install 'shmring[bridge]')."""
import importlib.util

if importlib.util.find_spec("zmq") is None:
    raise ImportError("shmring.bridge needs pyzmq: pip install 'shmring[bridge]'")
import zmq  # noqa: E402

if zmq.pyzmq_version_info() < (26, 4):
    raise ImportError(f"shmring.bridge needs pyzmq >= 26.4 (Socket.recv_into), not "
                      f"{zmq.__version__}: pip install 'shmring[bridge]'")

from shmring.bridge.receiver import Receiver  # noqa: E402
from shmring.bridge.sender import Sender  # noqa: E402

__all__ = ["Receiver", "Sender"]

"""Endpoints as users write them: a port, HOST:PORT, or a ZeroMQ endpoint.

The listening side binds to 127.0.0.1 unless told another interface, so a
bridge started without thought is not reachable from the network."""
import re

_HOST_PORT = re.compile(r"(?:(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+|\*):)?([0-9]{1,5}|\*)\Z")


def endpoint(text, default_host="127.0.0.1"):
    """A ZeroMQ endpoint for text: 'tcp://...' (or another transport) as
    given, else PORT or HOST:PORT over TCP, the host defaulting to
    default_host.  ValueError for anything else."""
    if "://" in text:
        return text
    m = _HOST_PORT.match(text)
    if not m or (m.group(2) != "*" and not 0 <= int(m.group(2)) <= 65535):
        raise ValueError(f"bad endpoint {text!r}: use PORT, HOST:PORT or tcp://HOST:PORT")
    return f"tcp://{m.group(1) or default_host}:{m.group(2)}"

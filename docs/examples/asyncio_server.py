"""An asyncio service that serves frames from a ring to its clients.

A camera process writes frames into the ring; the service awaits them with
`async for` (no thread waits on the ring, nothing polls it) and sends each one
to every connected client over a unix socket, length-prefixed.  Here one
client connects, prints what it gets, and the service stops after FRAMES.

    python docs/examples/asyncio_server.py [RING_NAME]
"""
import asyncio
import multiprocessing as mp
import os
import struct
import sys
import tempfile

import shmring

FRAMES = 20
LENGTH = struct.Struct("<I")


def camera(ring: shmring.Ring) -> None:                # any number of these
    with ring.producer() as p:
        for i in range(FRAMES):
            p.send(b"frame %d" % i, type=i)


async def client(path: str) -> None:
    reader, writer = await asyncio.open_unix_connection(path)
    for _ in range(FRAMES):
        (n,) = LENGTH.unpack(await reader.readexactly(LENGTH.size))
        print((await reader.readexactly(n)).decode())
    writer.close()


async def serve(ring: shmring.Ring, path: str) -> None:
    clients: list[asyncio.StreamWriter] = []
    joined = asyncio.Event()

    async def connected(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        clients.append(writer)
        joined.set()

    server = await asyncio.start_unix_server(connected, path)
    viewer = asyncio.ensure_future(client(path))
    await joined.wait()                 # frames wait in the ring until someone watches
    with ring.consumer() as frames:
        async for frame in frames:
            with frame:
                for writer in clients:
                    writer.write(LENGTH.pack(len(frame)))
                    writer.write(memoryview(frame))     # the view keeps the frame until sent
            await asyncio.gather(*(writer.drain() for writer in clients))
            if frame.type == FRAMES - 1:
                break
    await viewer
    server.close()


def main(name: str) -> None:
    ring = shmring.Ring.create(name, 1 << 20)
    try:
        mp.get_context("spawn").Process(target=camera, args=(ring,)).start()
        with tempfile.TemporaryDirectory() as tmp:
            asyncio.run(serve(ring, os.path.join(tmp, "frames.sock")))
    finally:
        ring.unlink()


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "asyncio-server")

"""Graceful shutdown with seal().  Sensors send until the ring is sealed.  On
SIGTERM or Ctrl-C the main process seals it: each sensor stops at its next
send, and the consumer still gets every reading sent before the seal.  If
every sensor dies instead, the consumer notices and seals the ring itself."""
import itertools
import multiprocessing as mp
import signal
import time

import shmring

SENSORS = 3


def sensor(ring: shmring.Ring, index: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)            # the main process decides
    sent = 0
    with ring.producer() as p:
        try:
            for reading in itertools.count():
                p.send(f"sensor {index} reading {reading}".encode(), type=index)
                sent += 1
                time.sleep(0.01)
        except shmring.Sealed:
            print(f"sensor {index} stopped after {sent} readings", flush=True)


if __name__ == "__main__":
    ring = shmring.Ring.create("sensors", 1 << 20, replace_stale=True)
    try:
        signal.signal(signal.SIGTERM, lambda signum, frame: ring.seal())
        signal.signal(signal.SIGINT, lambda signum, frame: ring.seal())
        for i in range(SENSORS):
            mp.get_context("spawn").Process(target=sensor, args=(ring, i)).start()
        print("streaming; stop with Ctrl-C or SIGTERM", flush=True)
        with ring.consumer() as readings:
            while True:
                try:
                    print(readings.recv_bytes(timeout=1).decode(), flush=True)
                except shmring.Empty:
                    s = ring.stats()                        # every sensor came and went?
                    if s["producers"] == 0 and s["producers_opened"] >= SENSORS:
                        ring.seal()
                except shmring.Sealed:
                    break                                   # sealed, and every reading in
        print("the stream is over", flush=True)
    finally:
        ring.unlink()

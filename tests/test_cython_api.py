"""`cimport shmring` from an extension built outside the source tree,
against the installed package, moving frames without the GIL."""
import os
import threading

import pytest

import shmring
from shmring.testing.build import build_extension, load_extension

EXAMPLE = os.path.join(os.path.dirname(__file__), "..", "docs", "examples", "pump.pyx")


@pytest.fixture(scope="module")
def pump(tmp_path_factory):
    built = build_extension(EXAMPLE, tmp_path_factory.mktemp("pump"))
    return load_extension(built, "pump")


def test_get_include_holds_the_pxd_files():
    root = shmring.get_include()
    for pxd in ("shmring/__init__.pxd", "shmring/_ring.pxd", "shmring/_core.pxd",
                "shmring/layout.pxd", "shmring/includes/atomics.pxd"):
        assert os.path.isfile(os.path.join(root, pxd)), pxd


def test_nogil_producer_and_consumer(pump, name):
    count, nbytes = 3000, 1000
    with shmring.Ring.create(name, 8192) as ring:
        producer, consumer = ring.producer(), ring.consumer()
        result = {}
        # The consumer runs in a thread: both sides must really drop the GIL.
        reader = threading.Thread(
            target=lambda: result.update(got=pump.sum_frames(consumer, count, 30.0)))
        reader.start()
        assert pump.send_filled(producer, count, nbytes) == count
        reader.join(60)
        assert not reader.is_alive()
        assert result["got"] == (count, nbytes * sum(i % 256 for i in range(count)),
                                 sum(range(count)))
        assert pump.sum_frames(consumer, 1, 0.0) == (0, 0, 0)


@pytest.mark.parametrize("nontemporal", [False, True])
def test_nogil_copy_payload_streams_on_request(pump, name, nontemporal):
    from shmring import _core
    from shmring._ring import NONTEMPORAL_MIN
    payload = bytes(range(256)) * (3 * (1 << 20) // 256) + b"tail"
    with shmring.Ring.create(name, 16 << 20) as ring, ring.producer() as producer, \
            ring.consumer() as consumer:
        before = _core.streamed_copies()
        assert pump.send_copies(producer, payload, 3, nontemporal) == 3
        streamed = _core.streamed_copies() - before
        assert streamed == (3 if nontemporal and NONTEMPORAL_MIN else 0)
        assert [consumer.recv_bytes(0) for _ in range(3)] == [payload] * 3


def test_nogil_errors_become_exceptions(pump, name):
    with shmring.Ring.create(name, 4096) as ring, ring.producer() as producer, \
            pytest.raises(shmring.FrameTooLarge):
        pump.send_filled(producer, 1, ring.max_frame + 1)


def test_nogil_claim_and_receive_after_the_seal(pump, name):
    with shmring.Ring.create(name, 4096) as ring, ring.producer() as producer, \
            ring.consumer() as consumer:
        assert pump.send_filled(producer, 2, 10) == 2
        ring.seal()
        with pytest.raises(shmring.Sealed, match="no new frames"):
            pump.send_filled(producer, 1, 10)
        assert pump.sum_frames(consumer, 2, 0.0) == (2, 10 * (0 + 1), 1)
        with pytest.raises(shmring.Sealed, match="no frame will come"):
            pump.sum_frames(consumer, 1, 30.0)          # the end: it does not wait


@pytest.mark.parametrize("bad", [-1.0, float("nan")])
def test_nogil_negative_or_nan_timeout_is_a_value_error(pump, name, bad):
    with shmring.Ring.create(name, 4096) as ring, ring.producer() as producer, \
            ring.consumer() as consumer:
        producer.send(b"waiting")
        with pytest.raises(ValueError, match="timeout"):
            pump.sum_frames(consumer, 1, bad)
        assert consumer.held == 0 and ring.stats()["frames_received"] == 0


@pytest.mark.timeout(60)
def test_frame_dropped_while_a_nogil_receive_waits_is_released_after_it(pump, name):
    """A Python Frame of the same consumer collected while a C receive()
    waits must not touch the consumer's state under it: its release waits
    for the C call to end."""
    import time
    with shmring.Ring.create(name, 8192) as ring, ring.producer() as producer:
        consumer = ring.consumer()
        producer.send(b"held by Python")
        frame = consumer.recv(0)
        result = {}
        reader = threading.Thread(
            target=lambda: result.update(got=pump.sum_frames(consumer, 1, 30.0)))
        reader.start()
        deadline = time.monotonic() + 30
        while ring.stats()["consumer_waits"] == 0:      # the C call sleeps in receive()
            assert time.monotonic() < deadline
            time.sleep(0.001)
        head = ring.stats()["head"]
        del frame                                       # collected while C holds the state
        assert ring.stats()["head"] == head
        producer.send(b"\1")
        reader.join(30)
        assert result["got"] == (1, 1, 0)
        assert ring.stats()["fill"] == 0 and consumer.held == 0
        consumer.close()

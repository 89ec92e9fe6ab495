"""shmring.segments: listing rings and removing them (what `shmring ls` and
`shmring rm` show and do; tests/test_cli.py runs the commands).  Every test
points SHMRING_DIR at its own directory, so it sees only its own segments."""
import os

import pytest

import shmring
from shmring import layout, segments
from shmring.testing.processes import children
from shmring.testing.rings import unique_name

HOLDER = """
ring = shmring.Ring.attach(NAME)
ROLE = ring.consumer() if "{role}" == "consumer" else ring.producer()
say("ready")
hear()
"""


def by_name(rings):
    return {r["name"]: r for r in rings}


@pytest.mark.timeout(30)
def test_ls_reports_users_fill_and_stale(segdir):
    live_name, stale_name = unique_name("live"), unique_name("stale")
    with children() as spawn:
        # A stale ring: its creator and its only producer were killed.
        creator = spawn(f"""
ring = shmring.Ring.create({stale_name!r}, 8192)
p = ring.producer()
p.send(b"x" * 100)
say("ready")
hear()
""", env={"SHMRING_DIR": segdir})
        creator.expect("ready")
        creator.kill()
        with shmring.Ring.create(live_name, 1 << 14) as ring:
            cons = spawn(HOLDER.replace("NAME", repr(live_name)).format(role="consumer"),
                         env={"SHMRING_DIR": segdir})
            prod = spawn(HOLDER.replace("NAME", repr(live_name)).format(role="producer"),
                         env={"SHMRING_DIR": segdir})
            cons.expect("ready")
            prod.expect("ready")
            with ring.producer() as p:
                p.send(b"y" * 1000)
                live = by_name(segments.list_rings())[live_name]
            with open(os.path.join(segdir, "shmring.junk"), "wb") as f:
                f.write(b"not a ring\n" * 500)
            rings = by_name(segments.list_rings())
            assert live["capacity"] == 1 << 14 and live["fill"] == layout.record_size(1000)
            assert live["creator_pid"] == os.getpid() and live["creator_alive"]
            assert (live["consumer_pid"], live["consumer_alive"]) == (cons.pid, True)
            assert {(p["pid"], p["alive"]) for p in live["producers"]} == {
                (prod.pid, True), (os.getpid(), True)}
            assert live["live"] and not live["stale"]
            stale = rings[stale_name]
            assert stale["creator_pid"] == creator.pid and not stale["creator_alive"]
            assert [p["alive"] for p in stale["producers"]] == [False]
            assert stale["fill"] == layout.record_size(100) and stale["stale"] and not stale["live"]
            assert "bad magic" in rings["junk"]["error"]
            cons.kill()
            after = by_name(segments.list_rings())[live_name]
            assert after["consumer_pid"] == cons.pid and not after["consumer_alive"]


@pytest.mark.timeout(30)
def test_rm_refuses_live_ring_unless_forced(segdir):
    name = unique_name("rm")
    with children() as spawn:
        ring = shmring.Ring.create(name, 8192)
        ring.close()
        holder = spawn(HOLDER.replace("NAME", repr(name)).format(role="producer"),
                       env={"SHMRING_DIR": segdir})
        holder.expect("ready")
        # This process created it and is alive, and so is the producer.
        with pytest.raises(shmring.RingError, match=f"producer pid {holder.pid}"):
            segments.remove_ring(name)
        assert os.path.exists(ring.path)
        holder.kill()
        with pytest.raises(shmring.RingError, match="creator pid"):
            segments.remove_ring(name)
        segments.remove_ring(name, force=True)
        assert not os.path.exists(ring.path)
        with pytest.raises(FileNotFoundError):
            segments.remove_ring(name)
        with pytest.raises(ValueError, match="bad ring name"):
            segments.remove_ring("../etc/passwd")


@pytest.mark.timeout(30)
def test_rm_removes_stale_ring(segdir):
    name = unique_name("stale")
    with children() as spawn:
        c = spawn(f"""
shmring.Ring.create({name!r}, 8192).consumer()
say("ready")
hear()
""", env={"SHMRING_DIR": segdir})
        c.expect("ready")
        assert segments.list_rings()[0]["live"]
        c.kill()
        segments.remove_ring(name)
        assert segments.list_rings() == []


def test_offsets_read_what_the_ring_writes(tmp_path, monkeypatch):
    """The counters of layout version 5 where shmring.layout says they are:
    read a real segment and compare with stats()."""
    monkeypatch.setenv("SHMRING_DIR", str(tmp_path))
    with shmring.Ring.create("offsets", 8192, producers=3) as ring, ring.producer() as p, \
            ring.consumer() as c:
        p.send(b"abc")
        p.send(b"defg")
        held = c.recv(0)
        c.recv_bytes(0)
        with pytest.raises(shmring.Empty):
            c.recv(timeout=0.01)                    # one sleep on an empty ring
        ring.seal()
        with open(ring.path, "rb") as f:
            data = f.read(layout.slot_offset(1))
        s = ring.stats()
        assert (s["frames_held"], s["consumer_waits"]) == (1, 1)

        def u(off):
            return int.from_bytes(data[off:off + 8], "little")
        assert u(layout.SegmentHeader.version) & 0xFFFFFFFF == layout.VERSION == 5
        assert u(layout.SegmentHeader.tail) == s["tail"] | layout.TAIL_SEALED
        assert segments.owner_pid(u(layout.SegmentHeader.consumer)) == os.getpid()
        assert (u(layout.SegmentHeader.received_frames), u(layout.SegmentHeader.received_bytes)) == (2, 7)
        assert (u(layout.SegmentHeader.held_frames), u(layout.SegmentHeader.consumer_waits)) == (1, 1)
        assert u(layout.SegmentHeader.abandoned_frames) == u(layout.SegmentHeader.abandoned_bytes) == 0
        assert u(layout.SegmentHeader.consumer_waiting_at) == 0    # the timed-out wait is over
        slot = layout.slot_offset(0)
        assert (u(slot + layout.Slot.frames), u(slot + layout.Slot.bytes)) == (2, 7)
        assert u(slot + layout.Slot.opens) == 1
        info = segments.read_ring(ring.path)
        assert info["sealed"] and info["fill"] == s["fill"] == 256    # held, and behind it
        held.release()


def test_skipped_and_dropped_frames_are_where_the_layout_says(tmp_path, monkeypatch):
    monkeypatch.setenv("SHMRING_DIR", str(tmp_path))
    with shmring.Ring.create("offsets", 8192, producers=3) as ring, ring.consumer() as c, \
            ring.producer() as p, ring.producer(on_full="drop") as dropper:
        for i in range(3):
            p.send(b"%d" % i)
        c.recv_latest(0).release()
        while dropper.send(bytes(1000)):
            pass
        dropper.send(bytes(1000))
        with open(ring.path, "rb") as f:
            data = f.read(layout.slot_offset(2))
        s = ring.stats()

        def u(off):
            return int.from_bytes(data[off:off + 8], "little")
        assert u(layout.SegmentHeader.skipped_frames) == s["frames_skipped"] == c.skipped == 2
        assert u(layout.slot_offset(1) + layout.Slot.dropped) == s["frames_dropped"] == 2
        assert u(layout.slot_offset(0) + layout.Slot.dropped) == 0

"""Rings left behind by dead processes: the FileExistsError that says so,
Ring.create(..., replace_stale=True) and Ring.open_or_create()."""
import os

import pytest

import shmring
from shmring import segments
from shmring.testing.processes import children

LEAVE_STALE = """
ring = shmring.Ring.create(NAME, 8192)
p = ring.producer()
p.send(b"old frame")
c = ring.consumer()
say("ready")
hear()
"""

HOLD = """
ring = shmring.Ring.attach(NAME)
ROLE = ring.consumer() if "{role}" == "consumer" else ring.producer()
say("ready")
hear()
"""


def leave_stale(spawn, name):
    """A ring whose creator, consumer and producer were all killed."""
    child = spawn(LEAVE_STALE.replace("NAME", repr(name)))
    child.expect("ready")
    child.kill()
    assert segments.read_ring(shmring._ring.segment_path(name))["stale"]


@pytest.mark.timeout(60)
def test_stale_ring_is_named_and_replaced_on_request(name):
    with children() as spawn:
        leave_stale(spawn, name)
        with pytest.raises(FileExistsError) as info:
            shmring.Ring.create(name, 8192)
        msg = str(info.value)
        assert "is stale" in msg and "replace_stale=True" in msg and f"shmring rm {name}" in msg
        with shmring.Ring.create(name, 1 << 14, replace_stale=True) as ring:
            s = ring.stats()
            assert (ring.capacity, s["frames_committed"], s["fill"]) == (1 << 14, 0, 0)
            assert ring.creator_pid == os.getpid()
            with ring.producer() as p, ring.consumer() as c:
                p.send(b"new frame")
                assert c.recv_bytes(0) == b"new frame"


@pytest.mark.timeout(60)
@pytest.mark.parametrize("role", ["consumer", "producer"])
def test_replace_stale_leaves_a_ring_with_a_live_user(name, role):
    with children() as spawn:
        leave_stale(spawn, name)
        user = spawn(HOLD.replace("NAME", repr(name)).format(role=role))
        user.expect("ready")                # the creator is dead, this user lives
        with pytest.raises(FileExistsError, match=f"in use \\({role} pid {user.pid}\\)"):
            shmring.Ring.create(name, 8192, replace_stale=True)
        assert os.path.exists(shmring._ring.segment_path(name))


def test_replace_stale_leaves_a_foreign_file(name):
    path = shmring._ring.segment_path(name)
    with open(path, "wb") as f:
        f.write(b"not a ring" * 1000)
    with pytest.raises(FileExistsError, match="not a usable ring .*bad magic"):
        shmring.Ring.create(name, 8192, replace_stale=True)
    with open(path, "rb") as f:
        assert f.read(10) == b"not a ring"


def test_open_or_create_creates_then_attaches(name):
    with shmring.Ring.open_or_create(name, 8192) as first, \
            shmring.Ring.open_or_create(name, 8192) as second:
        assert first.creator_pid == second.creator_pid == os.getpid()
        assert first.created == second.created
        with first.producer() as p, second.consumer() as c:
            p.send(b"one segment")
            assert c.recv_bytes(0) == b"one segment"
        with shmring.Ring.open_or_create(name, 8192, max_frame=100, producers=5) as third:
            assert third.max_frame == first.max_frame      # more than asked is compatible


def test_open_or_create_says_what_differs(name):
    with shmring.Ring.create(name, 8192, max_frame=1000, producers=4):
        with pytest.raises(shmring.IncompatibleRing) as info:
            shmring.Ring.open_or_create(name, 16384, max_frame=2000, producers=8)
        msg = str(info.value)
        assert "capacity 8192, not 16384" in msg
        assert "max_frame 1000, less than 2000" in msg
        assert "4 producer slots, fewer than 8" in msg
        with pytest.raises(shmring.IncompatibleRing, match="max_frame 1000, less than 4032"):
            shmring.Ring.open_or_create(name, 8192)     # the default asks for the largest
        with pytest.raises(ValueError, match="capacity"):
            shmring.Ring.open_or_create(name, 5000)


RACE = """
hear()
ring = shmring.Ring.OPENER
say(ring.creator_pid, ring.created)
hear()
"""


@pytest.mark.timeout(120)
@pytest.mark.parametrize("opener", ["open_or_create(NAME, 1 << 16)",
                                    "create(NAME, 1 << 16, replace_stale=True)"])
def test_processes_racing_for_one_name_get_one_ring(name, opener):
    """Five processes at once, five times: open_or_create gives all of them
    the ring one of them made; replace_stale lets exactly one replace the
    stale ring, and nobody removes the new one."""
    for _ in range(5):
        with children() as spawn:
            if "replace_stale" in opener:
                leave_stale(spawn, name)
            racers = [spawn(RACE.replace("OPENER", opener).replace("NAME", repr(name)))
                      for _ in range(5)]
            for r in racers:
                r.tell()
            answers, refused = {}, 0
            for r in racers:
                try:
                    pid, created = r.readline(60).split()
                    answers[r.pid] = (int(pid), float(created))
                except AssertionError as e:     # it exited: e holds its stderr
                    err = str(e)
                    assert "FileExistsError" in err and "in use" in err, err
                    refused += 1
            (winner,) = set(answers.values())
            assert winner[0] in [r.pid for r in racers]
            ring = shmring.Ring.attach(name)
            assert (ring.creator_pid, ring.created) == winner     # the name holds the winner's
            assert refused == (4 if "replace_stale" in opener else 0)
            ring.unlink()

"""shmring.segments: listing rings and removing them (shmring ls / rm).
Every test points SHMRING_DIR at its own directory, so it sees only its own
segments."""
import os

import pytest
from _helpers_harden import children, run_cli, unique_name

import shmring
from shmring import segments

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
            assert live["capacity"] == 1 << 14 and live["fill"] == 1088
            assert live["creator_pid"] == os.getpid() and live["creator_alive"]
            assert (live["consumer_pid"], live["consumer_alive"]) == (cons.pid, True)
            assert {(p["pid"], p["alive"]) for p in live["producers"]} == {
                (prod.pid, True), (os.getpid(), True)}
            assert live["live"] and not live["stale"]
            stale = rings[stale_name]
            assert stale["creator_pid"] == creator.pid and not stale["creator_alive"]
            assert [p["alive"] for p in stale["producers"]] == [False]
            assert stale["fill"] == 192 and stale["stale"] and not stale["live"]
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


@pytest.mark.timeout(60)
def test_cli_ls_and_rm(segdir):
    name = unique_name("cli")
    with children() as spawn:
        holder = spawn(f"""
ring = shmring.Ring.create({name!r}, 1 << 14)
c = ring.consumer()
say("ready")
hear()
""", env={"SHMRING_DIR": segdir})
        holder.expect("ready")
        r = run_cli(segdir, "ls")
        assert r.returncode == 0, r.stderr
        line = next(ln for ln in r.stdout.splitlines() if ln.startswith(name))
        assert "16KiB" in line and str(holder.pid) in line and line.endswith("live")
        r = run_cli(segdir, "rm", name)
        assert r.returncode == 1 and "in use" in r.stderr and "--force" in r.stderr
        holder.kill()
        r = run_cli(segdir, "ls")
        assert f"{holder.pid}(dead)" in r.stdout and r.stdout.rstrip().endswith("stale")
        r = run_cli(segdir, "rm", name)
        assert r.returncode == 0, r.stderr
        assert "no rings" in run_cli(segdir, "ls").stdout

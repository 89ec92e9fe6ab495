"""The command line, run as `python -m shmring`: demo, info, ls and rm (with
the doorbells of awaiting consumers and producers)."""
import json
import os
import re
import sys

import numpy as np
import pytest
from _awaiting import AWAIT_A_FRAME

import shmring
from shmring import demo, segments
from shmring.testing import processes
from shmring.testing.processes import children
from shmring.testing.rings import unique_name


def shmring_cmd(*args, timeout=120):
    """Run the command on this test's shmring, in its SHMRING_DIR."""
    return processes.run([sys.executable, "-m", "shmring", *args], timeout=timeout,
                         env=dict(os.environ, PYTHONPATH=processes.python_path()),
                         capture_output=True, text=True)


def test_demo_streams_and_verifies():
    result = shmring_cmd("demo", "--producers", "2", "--seconds", "1", "--size", "65536")
    assert result.returncode == 0, result.stderr
    *_, summary, last = result.stdout.splitlines()
    assert last == demo.NEXT                # one line on where to go next
    summary = summary.split("\r")[-1]
    match = re.match(r"(\d+) frames verified .* ([\d.]+) frames/s, ([\d.]+) GB/s, "
                     r"([\d.]+) CPU s/GB", summary)
    assert match, summary
    assert int(match.group(1)) > 10 and float(match.group(4)) > 0
    pid = re.search(r"ring 'demo-(\d+)'", result.stdout).group(1)
    assert not os.path.exists(shmring._ring.segment_path(f"demo-{pid}"))


def test_demo_catches_a_torn_frame(name):
    """The verifier is what the demo's claim rests on: a frame whose body
    does not match its stamp must fail."""
    with shmring.Ring.create(name, 1 << 16) as ring, ring.producer() as p, \
            ring.consumer() as c:
        body = np.arange(100, dtype=np.uint64)
        stamp = np.array([demo.MAGIC, 0, 0, int(body.sum()), 0, 0, 0, 0], dtype=np.uint64)
        good = np.concatenate([stamp, body])
        p.send(good)
        torn = good.copy()
        torn[2] = 1                         # frame 1 of producer 0, body of frame 0
        p.send(torn)
        verifier = demo.Verifier()
        with c.recv(0) as f:
            verifier.check(f)
        with c.recv(0) as f, pytest.raises(AssertionError, match="torn"):
            verifier.check(f)


def test_demo_rejects_bad_size():
    result = shmring_cmd("demo", "--size", "100")
    assert result.returncode != 0 and "multiple of 8" in result.stderr


def test_info(name):
    with shmring.Ring.create(name, 8192) as ring, ring.producer() as p, \
            ring.producer(on_full="drop") as dropper:
        p.send(b"x" * 10)
        while dropper.send(b"y" * 1000):
            pass
        result = shmring_cmd("info", name)
        assert result.returncode == 0, result.stderr
        assert re.search(r"^capacity\s+8192$", result.stdout, re.M)
        assert re.search(r"frames_committed\s+8\b", result.stdout)
        assert re.search(r"^frames_dropped\s+1$", result.stdout, re.M)
        assert re.search(r"^frames_skipped\s+0$", result.stdout, re.M)
        assert re.search(rf"creator    pid {os.getpid()}\b", result.stdout)
        assert re.search(rf"^slot 0\s+pid {os.getpid()}: frames 1, dropped 0$", result.stdout, re.M)
        assert re.search(rf"^slot 1\s+pid {os.getpid()}: frames 7, dropped 1$", result.stdout, re.M)
        keys = [line[:11].strip() if line.startswith("slot ") else line.split()[0]
                for line in result.stdout.splitlines()]
        assert len(keys) == len(set(keys)), "a field printed twice"


@pytest.mark.parametrize("args", [("info", "no-such-ring-here"), ("info", "bad/name"),
                                  ("rm", "no-such-ring-here")])
def test_cli_errors_are_one_line(args):
    result = shmring_cmd(*args)
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr, result.stderr
    assert result.stderr.startswith(f"shmring {args[0]}: ")


@pytest.mark.timeout(60)
def test_ls_and_rm(segdir):
    name = unique_name("cli")
    with children() as spawn:
        holder = spawn(f"""
ring = shmring.Ring.create({name!r}, 1 << 14)
c = ring.consumer()
say("ready")
hear()
""")
        holder.expect("ready")
        r = shmring_cmd("ls")
        assert r.returncode == 0, r.stderr
        line = next(ln for ln in r.stdout.splitlines() if ln.startswith(name))
        assert "16KiB" in line and str(holder.pid) in line and line.endswith("live")
        r = shmring_cmd("rm", name)
        assert r.returncode == 1 and "in use" in r.stderr and "--force" in r.stderr
        holder.kill()
        r = shmring_cmd("ls")
        assert f"{holder.pid}(dead)" in r.stdout and r.stdout.rstrip().endswith("stale")
        r = shmring_cmd("rm", name)
        assert r.returncode == 0, r.stderr
        assert "no rings" in shmring_cmd("ls").stdout


@pytest.mark.timeout(60)
def test_ls_shows_doorbells_and_rm_removes_them(segdir):
    name = unique_name("bells")
    with children() as spawn:
        creator = AWAIT_A_FRAME.replace("Ring.attach(NAME)", f"Ring.create({name!r}, 8192)")
        holder = spawn(creator)
        holder.expect("armed")
        r = shmring_cmd("ls")
        assert r.returncode == 0, r.stderr
        header, line = r.stdout.splitlines()[0], next(
            ln for ln in r.stdout.splitlines() if ln.startswith(name))
        assert "DOORBELLS" in header and line.split()[6] == "2/2"
        listed = json.loads(shmring_cmd("ls", "--json").stdout)[0]["doorbells"]
        assert sorted((b["role"], b["pid"], b["alive"]) for b in listed) == [
            ("consumer", holder.pid, True), ("producer", holder.pid, True)]
        assert "in use" in shmring_cmd("rm", name).stderr
        holder.kill()
        line = next(ln for ln in shmring_cmd("ls").stdout.splitlines() if ln.startswith(name))
        assert line.split()[6] == "0/2" and line.endswith("stale")
        r = shmring_cmd("rm", name)
        assert r.returncode == 0, r.stderr
        assert os.listdir(segdir) == []


@pytest.mark.timeout(60)
def test_doorbells_without_a_segment_are_listed_and_removed(segdir):
    name = unique_name("orphan")
    with children() as spawn:
        shmring.Ring.create(name, 8192).close()
        holder = spawn(AWAIT_A_FRAME.replace("NAME", repr(name)))
        holder.expect("armed")
        os.unlink(os.path.join(segdir, "shmring." + name))     # the segment goes first
        holder.kill()
        (orphan,) = segments.list_rings()
        assert orphan["name"] == name and orphan["error"] == "doorbells without a segment"
        assert len(orphan["doorbells"]) == 2 and orphan["stale"]
        assert "doorbells without a segment" in shmring_cmd("ls").stdout
        segments.remove_ring(name)
        assert os.listdir(segdir) == []
        with pytest.raises(FileNotFoundError):
            segments.remove_ring(name)

"""The recipes of docs/usage.md run as printed (docs/examples/*.py), each in
a segment directory of its own, and leave no ring behind."""
import os
import re
import signal
import subprocess
import sys

import pytest

from shmring import segments
from shmring.testing import processes

EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                        "docs", "examples")


def env(segdir):
    """Buffered output, so that each print(..., flush=True) is one write:
    lines of several processes sharing stdout then never interleave."""
    e = dict(os.environ, SHMRING_DIR=segdir, PYTHONPATH=processes.python_path())
    e.pop("PYTHONUNBUFFERED", None)
    return e


def run(example, segdir):
    result = processes.run([sys.executable, os.path.join(EXAMPLES, example)],
                           capture_output=True, text=True, timeout=120, env=env(segdir))
    assert result.returncode == 0, result.stderr
    assert os.listdir(segdir) == []
    return result.stdout.splitlines()


def test_pool_feeds_one_consumer(segdir):
    lines = run("pool.py", segdir)
    assert sorted(lines, key=lambda ln: int(ln.split()[0])) == [f"{t} {t}.0" for t in range(20)]


def test_cameras_with_their_metadata(segdir):
    lines = run("cameras.py", segdir)
    seen = {"left": [], "right": [], "depth": []}
    for line in lines:
        name, seq, shape, dtype, top, age = re.fullmatch(
            r"(\w+) (\d+) (\(.*\)) (\w+) (\d+) ([\d.]+) ms", line).groups()
        assert int(top) == int(seq) and float(age) >= 0
        assert (shape, dtype) == {"left": ("(480, 640, 3)", "uint8"),
                                  "right": ("(480, 640, 3)", "uint8"),
                                  "depth": ("(240, 320)", "uint16")}[name]
        seen[name].append(int(seq))
    assert seen == {name: list(range(30)) for name in seen}      # in order, all of them


def start_shutdown(segdir):
    """The shutdown recipe, in a process group of its own, and the lines it
    printed until every sensor streams (and so ignores Ctrl-C)."""
    proc = processes.popen([sys.executable, os.path.join(EXAMPLES, "shutdown.py")],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           env=env(segdir), start_new_session=True)
    lines = [proc.stdout.readline()]
    assert lines[0].startswith("streaming"), proc.stderr.read()
    while not all(any(ln.startswith(f"sensor {i} ") for ln in lines) for i in range(3)):
        lines.append(proc.stdout.readline())
        assert lines[-1], proc.stderr.read()            # not at its end yet
    return proc, [ln.rstrip("\n") for ln in lines]


def stop(proc, lines, action):
    """Do action, then wait for the recipe to end: the lines it printed, all
    of them, once it exited 0.  Read through proc.stdout, which may hold lines
    read ahead (communicate() would skip them); kill its group if it hangs."""
    try:
        action()
        out, err = proc.stdout.read(), proc.stderr.read()
        proc.wait(60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 0, err
    return lines + out.splitlines()


def readings_by_sensor(lines):
    got, stopped = {0: [], 1: [], 2: []}, {}
    for line in lines:
        if m := re.fullmatch(r"sensor (\d) reading (\d+)", line):
            got[int(m[1])].append(int(m[2]))
        elif m := re.fullmatch(r"sensor (\d) stopped after (\d+) readings", line):
            stopped[int(m[1])] = int(m[2])
    return got, stopped


@pytest.mark.timeout(120)
@pytest.mark.parametrize("how", ["SIGTERM", "Ctrl-C"])
def test_shutdown_loses_nothing_sent_before_the_seal(segdir, how):
    proc, lines = start_shutdown(segdir)
    if how == "SIGTERM":                                # a service manager stops the main process
        lines = stop(proc, lines, lambda: os.kill(proc.pid, signal.SIGTERM))
    else:                                               # a terminal signals the whole group
        lines = stop(proc, lines, lambda: os.killpg(proc.pid, signal.SIGINT))
    assert "the stream is over" in lines
    got, stopped = readings_by_sensor(lines)
    assert sorted(stopped) == [0, 1, 2]                 # every sensor was refused, cleanly
    for i in range(3):
        assert got[i] == list(range(stopped[i]))        # and all it sent arrived, in order
    assert os.listdir(segdir) == []


@pytest.mark.timeout(120)
def test_consumer_ends_the_stream_when_every_sensor_died(segdir):
    proc, lines = start_shutdown(segdir)
    path = os.path.join(segdir, "shmring.sensors")

    def kill_sensors():
        for p in segments.read_ring(path)["producers"]:
            os.kill(p["pid"], signal.SIGKILL)
        processes.wait_until(lambda: not any(p["alive"] for p in segments.read_ring(path)["producers"]),
                   10, "the sensors to die")
    lines = stop(proc, lines, kill_sensors)
    assert lines[-1] == "the stream is over"
    got, stopped = readings_by_sensor(lines)
    assert stopped == {}                                # killed, not refused
    assert all(got[i] == list(range(len(got[i]))) for i in range(3))
    assert os.listdir(segdir) == []


def test_live_view_shows_each_cameras_newest_and_counts_the_rest(segdir):
    lines = run("live_view.py", segdir)
    shown, sent = {}, {}
    for line in lines[:-1]:
        if m := re.fullmatch(r"slot (\d+) frame (\d+) mean (\d+)", line):
            slot, seq, mean = map(int, m.groups())
            assert mean == seq and seq > shown.get(slot, [-1])[-1]    # intact, never older
            shown.setdefault(slot, []).append(seq)
        else:
            camera, count = re.fullmatch(r"camera (\d) sent (\d+) of 60", line).groups()
            sent[int(camera)] = int(count)
    total, skipped, dropped, committed = map(int, re.fullmatch(
        r"shown (\d+), skipped (\d+), dropped (\d+), committed (\d+)", lines[-1]).groups())
    assert len(shown) == len(sent) == 3
    assert total == sum(map(len, shown.values())) and total + skipped == committed
    assert committed == sum(sent.values()) and committed + dropped == 3 * 60

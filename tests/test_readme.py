"""The README's examples run as printed (the frame example on a ring name of
this test's own); the frame example cleans up after an error and runs again
after it was killed."""
import os
import re
import signal
import subprocess
import sys

import pytest

from shmring import segments
from shmring.testing import processes

README = os.path.join(os.path.dirname(__file__), "..", "README.md")
EXPECTED = [f"{i} (1080, 1920, 4)" for i in range(100)]


def examples():
    with open(README) as f:
        return re.findall(r"```python\n(.*?)```", f.read(), re.DOTALL)


def frame_example(name, tmp_path):
    """The README's frame example as a script on ring `name`."""
    script = tmp_path / "example.py"
    script.write_text(examples()[0].replace('"video"', repr(name)))
    return script


def run(script):
    result = processes.run([sys.executable, str(script)], timeout=120, capture_output=True,
                           text=True)
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


def test_readme_has_a_frame_example_and_a_queue_example():
    frames, queue = examples()
    assert len(frames.splitlines()) <= 17       # a producer, a consumer, and the cleanup
    assert len(queue.splitlines()) == 4 and "shmring.Queue(" in queue


def test_readme_frame_example_runs(name, tmp_path):
    assert run(frame_example(name, tmp_path)) == EXPECTED


def test_readme_queue_example_runs(tmp_path):
    script = tmp_path / "queue_example.py"
    script.write_text(examples()[1])
    assert run(script) == ["(1080, 1920, 4)"]


@pytest.mark.timeout(240)
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT])
def test_readme_example_runs_again_after_a_kill(name, tmp_path, sig):
    """SIGINT is an exception, and the finally block removes the ring; after
    SIGKILL nothing runs, and the rerun replaces the stale ring.  The example
    runs in a process group of its own, so that the kill reaches its camera
    process too, as Ctrl-C or a service manager's stop would."""
    script = frame_example(name, tmp_path)
    path = segments.segment_dir() + f"/shmring.{name}"
    proc = processes.popen([sys.executable, str(script)], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        for _ in range(3):                      # part way: frames are flowing
            assert proc.stdout.readline().strip() in EXPECTED, proc.stderr.read()
        os.killpg(proc.pid, sig)
        proc.wait(60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    if sig == signal.SIGKILL:
        processes.wait_until(lambda: segments.read_ring(path)["stale"], 30, "the ring to go stale")
    else:
        assert not os.path.exists(path)
    assert run(script) == EXPECTED
    assert not os.path.exists(path)

"""The README's example runs as printed (on a ring name of this test's own),
cleans up after an error, and runs again after it was killed."""
import os
import re
import signal
import subprocess
import sys

import pytest
from _helpers_harden import die_with_parent, wait_until

from shmring import segments

README = os.path.join(os.path.dirname(__file__), "..", "README.md")
EXPECTED = [f"{i} (1080, 1920, 4)" for i in range(100)]


def example(name, tmp_path):
    """The README's example as a script on ring `name`."""
    with open(README) as f:
        text = f.read()
    (code,) = re.findall(r"```python\n(.*?)```", text, re.DOTALL)
    assert len(code.splitlines()) <= 17         # a producer, a consumer, and the cleanup
    script = tmp_path / "example.py"
    script.write_text(code.replace('"video"', repr(name)))
    return script


def start(script):
    """The example in a process group of its own, so that a kill reaches its
    camera process too, as Ctrl-C or a service manager's stop would."""
    return subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True,
                            preexec_fn=die_with_parent)


def run_to_the_end(script):
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == EXPECTED


def test_readme_example_runs(name, tmp_path):
    run_to_the_end(example(name, tmp_path))


@pytest.mark.timeout(240)
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT])
def test_readme_example_runs_again_after_a_kill(name, tmp_path, sig):
    """SIGINT is an exception, and the finally block removes the ring; after
    SIGKILL nothing runs, and the rerun replaces the stale ring."""
    script = example(name, tmp_path)
    path = segments.segment_dir() + f"/shmring.{name}"
    proc = start(script)
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
        wait_until(lambda: segments.read_ring(path)["stale"], 30, "the ring to go stale")
    else:
        assert not os.path.exists(path)
    run_to_the_end(script)
    assert not os.path.exists(path)

"""The README's examples run as printed (the first on a ring name of this
test's own)."""
import os
import re
import sys

from shmring.testing import processes

README = os.path.join(os.path.dirname(__file__), "..", "README.md")


def examples():
    with open(README) as f:
        return re.findall(r"```python\n(.*?)```", f.read(), re.DOTALL)


def run(code, tmp_path):
    script = tmp_path / "example.py"
    script.write_text(code)
    result = processes.run([sys.executable, str(script)], timeout=120, capture_output=True,
                           text=True)
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


def test_readme_has_a_frame_example_and_a_queue_example():
    frames, queue = examples()
    assert len(frames.splitlines()) <= 16
    assert len(queue.splitlines()) == 4 and "shmring.Queue(" in queue


def test_readme_frame_example_runs(name, tmp_path):
    code = examples()[0]
    lines = run(code.replace('"video"', repr(name)), tmp_path)
    assert lines == [f"{i} (1080, 1920, 4)" for i in range(100)]


def test_readme_queue_example_runs(tmp_path):
    assert run(examples()[1], tmp_path) == ["(1080, 1920, 4)"]

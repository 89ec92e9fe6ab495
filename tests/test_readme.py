"""The README's example runs as printed (on a ring name of this test's own)."""
import os
import re
import sys

from shmring.testing import processes

README = os.path.join(os.path.dirname(__file__), "..", "README.md")


def test_readme_example_runs(name, tmp_path):
    with open(README) as f:
        text = f.read()
    (code,) = re.findall(r"```python\n(.*?)```", text, re.DOTALL)
    assert len(code.splitlines()) <= 16
    script = tmp_path / "example.py"
    script.write_text(code.replace('"video"', repr(name)))
    result = processes.run([sys.executable, str(script)], timeout=120, capture_output=True,
                           text=True)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines == [f"{i} (1080, 1920, 4)" for i in range(100)]

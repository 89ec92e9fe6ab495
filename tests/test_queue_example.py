"""docs/examples/queue_video.py runs: spawned workers decode frames, one
trainer learns from them, and the error falls."""
import os
import re
import subprocess
import sys

EXAMPLE = os.path.join(os.path.dirname(__file__), "..", "docs", "examples", "queue_video.py")


def test_queue_example_trains_on_every_frame():
    result = subprocess.run([sys.executable, EXAMPLE, "--workers", "3", "--frames", "60",
                             "--size", "90x160"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    first, errors = result.stdout.splitlines()
    assert first == "trained on 60 frames from 3 workers"
    early, late = (float(x) for x in re.findall(r"third ([0-9.]+)", errors))
    assert late < early / 2

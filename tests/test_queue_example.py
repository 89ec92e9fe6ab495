"""docs/examples/queue_video.py runs: spawned workers decode frames, one
trainer fits a model to every one of them (a frame damaged on the way
would spoil the fit)."""
import os
import re
import subprocess
import sys

EXAMPLE = os.path.join(os.path.dirname(__file__), "..", "docs", "examples", "queue_video.py")


def test_queue_example_trains_on_every_frame():
    result = subprocess.run([sys.executable, EXAMPLE, "--workers", "3", "--frames", "60",
                             "--size", "90x160"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    first, fit = result.stdout.splitlines()
    assert first == "trained on 60 frames from 3 workers"
    weights, error = re.fullmatch(r"weights \[(.*)\], mean squared error (\S+)", fit).groups()
    assert [float(w) for w in weights.split(",")] == [0.3333, 0.3333, 0.3333, 0.0]
    assert float(error) < 1e-12

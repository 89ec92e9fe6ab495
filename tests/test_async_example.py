"""docs/asyncio.md's example runs as printed: an asyncio service that serves
frames from a ring to a client (on a ring name of this test's own)."""
import os
import subprocess
import sys

EXAMPLE = os.path.join(os.path.dirname(__file__), "..", "docs", "examples", "asyncio_server.py")


def test_asyncio_server_example_serves_every_frame(name):
    with open(os.path.join(os.path.dirname(EXAMPLE), "..", "asyncio.md")) as f:
        assert "examples/asyncio_server.py" in f.read()      # the example the page shows
    result = subprocess.run([sys.executable, EXAMPLE, name], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [f"frame {i}" for i in range(20)]

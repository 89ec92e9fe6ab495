"""Fixtures and Hypothesis profiles.  The helpers that tests, the lab, the
fuzzer and the benchmark share live in shmring.testing."""
import os

import pytest
from hypothesis import HealthCheck, settings

from shmring.testing import processes, rings

settings.register_profile(
    "ci", deadline=None, max_examples=40,
    suppress_health_check=[HealthCheck.too_slow])
settings.register_profile(
    "stress", deadline=None, max_examples=500,
    suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def pytest_configure(config):
    # An xdist worker dies with the pytest that started it, and so, in turn,
    # does every process a test starts (shmring.testing.processes).
    if os.environ.get("PYTEST_XDIST_WORKER"):
        processes.die_with_parent()


@pytest.fixture
def name():
    """A ring name unique to this test; its segment and doorbells are removed
    afterwards, even when the test fails."""
    with rings.ring_name() as n:
        yield n


@pytest.fixture
def ring(name):
    import shmring
    r = shmring.Ring.create(name, 1 << 16)
    yield r
    r.close()


@pytest.fixture
def segdir(tmp_path, monkeypatch):
    """A segment directory of this test's own (SHMRING_DIR), so that it sees
    only its own segments."""
    d = tmp_path / "shm"
    d.mkdir()
    monkeypatch.setenv("SHMRING_DIR", str(d))
    return str(d)

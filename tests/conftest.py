import os
import uuid

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci", deadline=None, max_examples=40,
    suppress_health_check=[HealthCheck.too_slow])
settings.register_profile(
    "stress", deadline=None, max_examples=500,
    suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture
def name():
    """A ring name unique to this test; its segment and doorbells are removed
    afterwards, even when the test fails."""
    from _helpers_harden import remove_ring_files
    n = f"test-{uuid.uuid4().hex[:12]}"
    yield n
    remove_ring_files(n)


@pytest.fixture
def hname():
    """The hardening tests' ring name (tests/_helpers_harden.py removes it)."""
    from _helpers_harden import ring_name
    with ring_name() as n:
        yield n


@pytest.fixture
def segdir(tmp_path, monkeypatch):
    """A segment directory of this test's own (SHMRING_DIR), so that listing
    it sees only this test's segments."""
    d = tmp_path / "shm"
    d.mkdir()
    monkeypatch.setenv("SHMRING_DIR", str(d))
    return str(d)


@pytest.fixture
def ring(name):
    import shmring
    r = shmring.Ring.create(name, 1 << 16)
    yield r
    r.close()

"""CURVE between bridge processes: keys from `shmring bridge keygen`; an
allowed sender gets through, one without CURVE or with a key the receiver
does not list is refused."""
import contextlib
import os
import shutil
import stat
import subprocess
import sys
import uuid

import pytest
from _bridge import bridges, receiver, stop

import shmring


def keygen(directory, name):
    return subprocess.run([sys.executable, "-m", "shmring", "bridge", "keygen", str(directory),
                           name], capture_output=True, text=True, timeout=60)


@pytest.fixture
def keys(tmp_path):
    """Key pairs for a receiver, an allowed sender and a stranger, and the
    receiver's allow directory holding the allowed sender's public key."""
    for name in ("receiver", "alice", "mallory"):
        assert keygen(tmp_path / name, name).returncode == 0
    (tmp_path / "allowed").mkdir()
    shutil.copy(tmp_path / "alice" / "alice.key", tmp_path / "allowed")
    return tmp_path


def test_keygen_writes_a_pair_and_keeps_the_secret_private(keys):
    secret = keys / "alice" / "alice.key_secret"
    assert stat.S_IMODE(os.stat(secret).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(keys / "alice" / "alice.key").st_mode) == 0o644
    assert "secret-key" in secret.read_text()
    assert "secret-key" not in (keys / "alice" / "alice.key").read_text()
    again = keygen(keys / "alice", "alice")
    assert again.returncode == 1 and "exists; remove it first" in again.stderr
    assert secret.read_text() == secret.read_text()


def test_curve_admits_an_allowed_key_and_refuses_a_missing_or_wrong_one(keys):
    names = {k: f"test-bridge-{k}-{uuid.uuid4().hex[:8]}" for k in ("ok", "missing", "wrong", "b")}
    rings = {k: shmring.Ring.create(n, 1 << 16) for k, n in names.items()}
    server = ["--curve-server", str(keys / "receiver" / "receiver.key")]
    try:
        for k in ("ok", "missing", "wrong"):
            with rings[k].producer() as p:
                p.send(k.encode())
        with bridges() as start:
            recv, endpoint = receiver(
                start, names["b"], "--curve-secret", str(keys / "receiver" / "receiver.key_secret"),
                "--curve-allow", str(keys / "allowed"))
            missing = start("send", names["missing"], endpoint, "--timeout", "0.5")
            wrong = start("send", names["wrong"], endpoint, "--timeout", "0.5", "--curve-secret",
                          str(keys / "mallory" / "mallory.key_secret"), *server)
            ok = start("send", names["ok"], endpoint, "--curve-secret",
                       str(keys / "alice" / "alice.key_secret"), *server)
            missing.wait_for(r"handshake with receiver failed")
            wrong.wait_for(r"handshake with receiver failed \(\S+\): authentication refused")
            recv.wait_for(r"handshake with a sender failed \(\S+\): authentication refused")
            with rings["b"].consumer() as far:
                assert far.recv_bytes(timeout=20) == b"ok"
                assert far.recv_bytes_many(10, timeout=0) == []
            for k in ("missing", "wrong"):      # nothing taken from a refused sender's ring
                assert rings[k].stats()["frames_received"] == 0
                assert rings[k].stats()["fill"] > 0
            assert stop(ok) == 0
            for refused in (missing, wrong):
                assert stop(refused) == 1       # no receiver confirmed its stream
            assert stop(recv) == 0
    finally:
        for r in rings.values():
            with contextlib.suppress(FileNotFoundError):
                r.unlink()


def test_a_receiver_with_no_allowed_keys_refuses_to_start(keys, tmp_path):
    (tmp_path / "empty").mkdir()
    with bridges() as start:
        r = start("recv", "127.0.0.1:0", "unused", "--create", "65536", "--curve-secret",
                  str(keys / "receiver" / "receiver.key_secret"), "--curve-allow",
                  str(tmp_path / "empty"))
        assert r.wait() == 1
    assert "no public keys (NAME.key) in" in r.log()
    os.unlink(shmring.Ring.attach("unused").path)

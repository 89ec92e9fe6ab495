"""The segment file: attach validation, a full segment directory, modes."""
import errno
import os
import stat

import pytest

import shmring
from shmring import _ring, layout
from shmring.testing import processes
from shmring.testing.processes import Child
from shmring.testing.rings import Raw, ring_name

H = layout.SegmentHeader

CAP = 1 << 14


@pytest.fixture
def ring_path(name):
    with shmring.Ring.create(name, CAP) as ring:
        yield name, ring.path


def corrupt(path, off, value, width=8):
    raw = Raw(path)
    try:
        raw.m[off:off + width] = (value & ((1 << (8 * width)) - 1)).to_bytes(width, "little")
    finally:
        raw.close()


@pytest.mark.parametrize("field,value,match", [
    ("magic", 0x1234, "not a shmring segment"),
    ("version", layout.VERSION + 1, f"layout version {layout.VERSION + 1}"),
    ("version", 1, "layout version 1"),         # a segment of shmring before the seal
    ("version", 2, "layout version 2"),         # before recv_latest's counts
    ("version", 3, "layout version 3"),         # before doorbells
    ("version", 0, "layout version 0"),
    ("capacity", 5000, "invalid capacity"),
    ("capacity", 0, "invalid capacity"),
    ("capacity", 1 << 13, "header describes"),
    ("capacity", 1 << 62, "header describes"),
    ("data_offset", 4096 * 3, "header describes"),
    ("nslots", 4000, "failed header validation"),
    ("nslots", 0, "failed header validation"),
    ("header_size", 512, "failed header validation"),
    ("max_frame", CAP, "failed header validation"),
])
def test_attach_rejects_bad_header(ring_path, field, value, match):
    name, path = ring_path
    off, width = H.fields[field]
    corrupt(path, off, value, width)
    with pytest.raises(shmring.IncompatibleRing, match=match):
        shmring.Ring.attach(name)


@pytest.mark.parametrize("size,match", [
    (0, "too small"), (100, "too small"), (H.size, "header describes"),
    ("minus_page", "header describes"), ("plus_page", "header describes")])
def test_attach_rejects_truncated_or_grown_file(ring_path, size, match):
    name, path = ring_path
    full = os.path.getsize(path)
    size = {"minus_page": full - 4096, "plus_page": full + 4096}.get(size, size)
    os.truncate(path, size)
    with pytest.raises(shmring.IncompatibleRing, match=match):
        shmring.Ring.attach(name)


@pytest.mark.parametrize("content", [b"\0" * 40960, b"hello, not a ring\n" * 3000])
def test_attach_rejects_foreign_file(name, content):
    path = _ring.segment_path(name)
    with open(path, "xb") as f:
        f.write(content)
    with pytest.raises(shmring.IncompatibleRing, match="not initialized|not a shmring"):
        shmring.Ring.attach(name)


def test_attach_refuses_symlink(name):
    """A link in the segment directory is never followed, even to a good ring."""
    with ring_name() as target, shmring.Ring.create(target, CAP) as ring:
        os.symlink(ring.path, _ring.segment_path(name))
        with pytest.raises(shmring.IncompatibleRing, match="symbolic link"):
            shmring.Ring.attach(name)
        with pytest.raises(FileExistsError):
            shmring.Ring.create(name, CAP)     # O_EXCL: no create through it


@pytest.mark.timeout(30)
@pytest.mark.parametrize("kind", ["fifo", "directory"])
def test_attach_refuses_non_regular_file(name, kind):
    path = _ring.segment_path(name)
    if kind == "fifo":
        os.mkfifo(path, 0o600)
    else:
        os.mkdir(path)
    try:
        with pytest.raises(shmring.IncompatibleRing, match="not a regular file"):
            shmring.Ring.attach(name)
    finally:
        if kind == "directory":
            os.rmdir(path)


@pytest.mark.timeout(30)
def test_attach_to_another_users_ring_is_permission_error(ring_path):
    if os.geteuid() != 0:
        pytest.skip("needs root to run a child as another user")
    name, _ = ring_path
    # Python itself lives under /root here, so drop to nobody after start-up.
    child = Child(f"""
os.setgid(65534)
os.setuid(65534)
try:
    shmring.Ring.attach({name!r})
    say("attached")
except PermissionError as e:
    say("denied", str(e))
""")
    try:
        line = child.expect("denied")
        assert "owned by uid 0 with mode 0600" in line
    finally:
        child.close()


@pytest.mark.parametrize("umask", [0, 0o022, 0o777])
def test_mode_is_0600_whatever_the_umask(name, umask):
    old = os.umask(umask)
    try:
        with shmring.Ring.create(name, CAP) as ring:
            assert stat.S_IMODE(os.stat(ring.path).st_mode) == 0o600
            assert shmring.Ring.attach(name).capacity == CAP
    finally:
        os.umask(old)


@pytest.mark.parametrize("mode", [0o600, 0o640, 0o660, 0o666])
def test_mode_is_honoured_whatever_the_umask(name, mode):
    old = os.umask(0o077)
    try:
        with shmring.Ring.create(name, CAP, mode=mode) as ring:
            assert stat.S_IMODE(os.stat(ring.path).st_mode) == mode
    finally:
        os.umask(old)


# --- a full segment directory ------------------------------------------------

@pytest.fixture
def small_tmpfs(tmp_path, monkeypatch):
    """A real 1 MiB tmpfs as the segment directory (needs mount rights)."""
    mnt = tmp_path / "shm"
    mnt.mkdir()
    r = processes.run(["mount", "-t", "tmpfs", "-o", "size=1m,mode=1777", "tmpfs", str(mnt)],
                      timeout=30, capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
    monkeypatch.setenv("SHMRING_DIR", str(mnt))
    try:
        yield str(mnt)
    finally:
        processes.run(["umount", "-l", str(mnt)], timeout=30, check=False)


def test_full_directory_is_a_clear_oserror_at_create(small_tmpfs, name):
    size = layout.data_offset(layout.DEFAULT_SLOTS) + (4 << 20)
    with pytest.raises(OSError) as info:
        shmring.Ring.create(name, 4 << 20)
    e = info.value
    assert e.errno == errno.ENOSPC
    msg = str(e)
    assert str(size) in msg and small_tmpfs in msg, msg
    assert "Docker" not in msg, msg         # SHMRING_DIR is elsewhere: not Docker's /dev/shm
    assert not os.path.exists(os.path.join(small_tmpfs, "shmring." + name))


@pytest.mark.timeout(60)
def test_reserved_pages_survive_a_full_directory(small_tmpfs, name):
    """Pages are reserved at create: filling the tmpfs afterwards must not
    turn the first write into SIGBUS (a child process does the writing)."""
    with shmring.Ring.create(name, 1 << 19) as ring:
        filler = os.path.join(small_tmpfs, "filler")
        with open(filler, "wb") as f:
            with pytest.raises(OSError) as info:
                while True:
                    f.write(b"\1" * 65536)
                    f.flush()
            assert info.value.errno == errno.ENOSPC
        with pytest.raises(OSError, match="no room"), ring_name() as other:
            shmring.Ring.create(other, 1 << 16)
        child = Child(f"""
ring = shmring.Ring.attach({name!r})
c = ring.consumer()
p = ring.producer()
for i in range(40):                 # every page of the data area, twice over
    p.send(bytes([i]) * 60000)
    assert c.recv_bytes(timeout=1) == bytes([i]) * 60000
say("ok")
""")
        try:
            child.expect("ok", timeout=30)      # a SIGBUS would end it before this
            assert child.wait() == 0
        finally:
            child.close()
        assert ring.stats()["frames_received"] == 40

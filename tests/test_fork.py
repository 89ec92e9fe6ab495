"""fork(): a producer used in a forked child gets its own slot; a reservation
opened before the fork can be committed only by the parent, once."""
import pytest

import shmring
from shmring.testing.processes import children

FORKER = """
from shmring.testing.processes import die_with_parent
ring = shmring.Ring.attach(NAME)
p = ring.producer()
p.send(b"parent before fork")
r = p.reserve(5)
with memoryview(r) as mv:
    mv[:] = b"RESV!"
rd, wr = os.pipe()
parent = os.getpid()
pid = os.fork()
if pid == 0:
    die_with_parent(parent)
    os.close(rd)
    out = []
    try:
        memoryview(r)[:] = b"CHILD"             # no view of the parent's claim either
        out.append("viewed")
    except shmring.RingError:
        out.append("view-refused")
    for finish in (r.commit, r.abort):
        try:
            finish()
            out.append("finished")
        except shmring.RingError as e:
            out.append("refused")
    try:
        with r:
            pass                                # __exit__ must not commit either
        out.append("exit-ok")
    except shmring.RingError:
        out.append("exit-refused")
    del r                                       # __dealloc__ must not abort it
    p.send(b"child")                            # a fresh slot for the child
    out.append(repr(p).split()[1])
    p.close()
    os.write(wr, " ".join(out).encode())
    os._exit(0)
os.close(wr)
_, status = os.waitpid(pid, 0)
say("child", os.read(rd, 1000).decode(), status)
say("parent", repr(p).split()[1])
r.commit()
try:
    r.commit()
    say("twice")
except shmring.RingError:
    say("once")
p.send(b"parent after fork")
say("done")
"""


@pytest.mark.timeout(30)
def test_fork_with_open_reservation(name):
    with shmring.Ring.create(name, 8192) as ring, children() as spawn:
        c = ring.consumer()
        proc = spawn(FORKER.replace("NAME", repr(name)))
        child = proc.expect("child").split()
        assert child[1:5] == ["view-refused", "refused", "refused", "exit-refused"], child
        assert child[-1] == "0"                 # the forked child exited cleanly
        parent_slot = proc.expect("parent").split()[1]
        assert child[5] != parent_slot, "the child reused the parent's producer slot"
        assert proc.expect("once") == "once"
        proc.expect("done")
        got = []
        while True:
            try:
                got.append(c.recv_bytes(timeout=0.3))
            except shmring.Empty:
                break
        # The child's frame was claimed after the parent's reservation, so it
        # follows it in the ring; the reservation arrives once, committed by
        # the parent.
        assert got == [b"parent before fork", b"RESV!", b"child", b"parent after fork"]
        st = ring.stats()
        assert st["fill"] == 0 and st["frames_abandoned"] == 0 and st["frames_aborted"] == 0
        c.close()


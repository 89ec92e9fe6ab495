"""Every process that the tests, the lab and the benchmark start dies with
its parent, so that a failed, interrupted or killed run leaves nothing
behind (an xdist worker asleep in a futex long after `pytest -x` stopped was
one such leftover).

A judge process, made a child subreaper so that orphans become its children,
starts a parent that starts processes one way; once they run, it SIGKILLs the
parent, and every process left must be gone within seconds."""
import os
import shutil
import sys

import pytest

from shmring.testing import processes

JUDGE = r'''
import ctypes, os, signal, sys, time
from shmring.testing import processes
PR_SET_CHILD_SUBREAPER = 36
ctypes.CDLL(None).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
pids_file, expected, code = sys.argv[1], int(sys.argv[2]), sys.argv[3]
parent = processes.popen([sys.executable, "-c", code, pids_file])

def started():
    try:
        with open(pids_file) as f:
            return f.read().split()
    except FileNotFoundError:
        return []

def children():
    """Our live children (orphans, now that the parent is gone), reaping the dead."""
    while True:
        try:
            if os.waitpid(-1, os.WNOHANG)[0] == 0:
                break
        except ChildProcessError:
            break
    out = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/stat") as f:
                state, ppid = f.read().rsplit(")", 1)[1].split()[:2]
            with open(f"/proc/{pid}/cmdline") as f:
                cmd = f.read().replace("\0", " ")[:100]
        except OSError:
            continue
        if int(ppid) == os.getpid() and state != "Z":
            out.append(f"{pid} ({state}) {cmd}")
    return out

deadline = time.monotonic() + 60
while len(started()) < expected:
    if time.monotonic() > deadline or parent.poll() is not None:
        print("not started:", started(), parent.poll(), flush=True)
        sys.exit(2)
    time.sleep(0.01)
parent.kill()
parent.wait()
# SIGKILL on the parent's death takes milliseconds; 3 s is far more, and is
# less than an xdist worker takes to give up on its own (5 s, then SIGINT).
deadline = time.monotonic() + 3
while children() and time.monotonic() < deadline:
    time.sleep(0.02)
left = children()
for line in left:
    os.kill(int(line.split()[0]), signal.SIGKILL)
print("survivors:", left, flush=True)
'''

# The parent: starts processes whose body appends its pid to the file
# sys.argv[1] and sleeps.
PARENT = r'''
import os, sys, time
from shmring.testing import processes
PIDS = sys.argv[1]
BODY = f"""import os, time
with open({PIDS!r}, "a") as f:
    f.write(f"{{os.getpid()}}\\n")
time.sleep(600)
"""

def body(*args):
    exec(BODY)
'''

WAYS = {
    "popen": ("processes.popen([sys.executable, '-c', BODY])", 1),
    "child": ("processes.Child(BODY)", 1),
    "fork": ("processes.fork(body)", 1),
    "start_process": ("processes.start_process(exec, BODY)", 1),
    "start_process_spawn": ("processes.start_process(exec, BODY, context='spawn')", 1),
    "bench": ("from shmring.bench.harness import run_processes\n"
              "run_processes((lambda: None, body, None), [(lambda: None, body, None)])", 2),
}


def judge(start, expected, tmp_path):
    """The processes the parent left alive after its SIGKILL, as lines."""
    code = PARENT + start + "\ntime.sleep(600)\n"
    proc = processes.run([sys.executable, "-c", JUDGE, str(tmp_path / "pids"), str(expected),
                          code], timeout=120, cwd=tmp_path, capture_output=True, text=True,
                         env=dict(os.environ, PYTHONPATH=processes.python_path()))
    assert proc.returncode == 0 and "survivors:" in proc.stdout, proc.stdout + proc.stderr
    return proc.stdout.split("survivors:", 1)[1].strip()


@pytest.mark.timeout(120)
@pytest.mark.parametrize("way", sorted(WAYS))
def test_processes_die_with_their_parent(way, tmp_path):
    assert judge(*WAYS[way], tmp_path) == "[]"


@pytest.mark.timeout(120)
def test_the_judge_sees_a_process_that_outlives_its_parent(tmp_path):
    """The check above can fail: a plain Popen's child survives."""
    left = judge("import subprocess\nsubprocess.Popen([sys.executable, '-c', BODY])", 1, tmp_path)
    assert "-c import os, time" in left


@pytest.mark.timeout(120)
def test_xdist_workers_die_with_pytest(tmp_path):
    """tests/conftest.py makes each xdist worker die with its pytest, and so
    every process a test starts dies when pytest does."""
    suite = tmp_path / "suite"
    suite.mkdir()
    shutil.copy(os.path.join(os.path.dirname(__file__), "conftest.py"), suite)
    (suite / "test_sleeps.py").write_text(
        "import os, sys, time\n"
        "def test_sleeps():\n"
        f"    with open({str(tmp_path / 'pids')!r}, 'a') as f:\n"
        "        f.write(f'{os.getpid()}\\n')\n"
        "    time.sleep(600)\n")
    start = (f"import pytest\n"
             f"pytest.main(['-q', '-n', '1', '-p', 'no:cacheprovider', {str(suite)!r}])")
    assert judge(start, 1, tmp_path) == "[]"


def test_this_process_dies_with_its_parent_under_xdist():
    assert processes.dies_with_parent() == bool(os.environ.get("PYTEST_XDIST_WORKER"))

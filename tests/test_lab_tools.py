"""The lab's own tooling (stress/), each failure mode an outside review
found: a check that raises must still print its FAIL line and let the checks
after it run; a soak whose producers have all ended must report, not crash;
TSan's segments must be removed however its run ends.  Each runs in a child
that imports stress from this checkout and this same shmring."""
import os
import sys

import pytest

from shmring.testing import processes

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def in_lab(code, cwd, timeout=120):
    return processes.run([sys.executable, "-c", code], timeout, cwd=cwd, capture_output=True,
                         text=True, env=dict(os.environ, PYTHONPATH=processes.python_path(ROOT)))


CHECKS_THAT_RAISE = """
from hypothesis.errors import FlakyFailure
from stress.__main__ import run_checks

def flaky(seconds, args):
    raise FlakyFailure("falsified on the first call but not on a later one",
                       [AssertionError("invariant violated: torn frame")])

def broken(seconds, args):
    raise RuntimeError("build failed")

def fine(seconds, args):
    return [], "held"

print("failed:", run_checks({"flaky": (0.5, flaky), "broken": (0, broken), "fine": (0, fine)},
                            10, None))
"""


@pytest.mark.timeout(60)
def test_a_check_that_raises_is_a_fail_line_and_later_checks_run(tmp_path):
    proc = in_lab(CHECKS_THAT_RAISE, tmp_path)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    lines = out.splitlines()
    assert lines[0].startswith("flaky      FAIL raised FlakyFailure")
    assert "invariant violated: torn frame" in out          # the group's cause is shown
    assert [ln for ln in lines if ln.startswith("broken ")][0].startswith(
        "broken     FAIL raised RuntimeError")
    assert "RuntimeError: build failed" in out
    assert [ln for ln in lines if ln.startswith("fine ")][0].startswith("fine       ok   held")
    assert lines[-1] == "failed: ['flaky', 'broken']"


FLAKY_SCENARIO = """
from hypothesis.errors import FlakyFailure
from stress import __main__ as lab

def explore(seconds, max_examples, shrink):
    violation = AssertionError("invariant violated:\\n  torn frame: producer 1 seq 0")
    violation.add_note("Falsifying example: scenario_holds(sc=Scenario(capacity=4096))")
    raise FlakyFailure("scenario_holds produces unreliable results", [violation])

class Args:
    quick, no_shrink = True, False

lab.scheduled.explore = explore
bad, summary = lab.run_scheduled(10, Args())
print(summary)
print("\\n".join(bad))
"""


@pytest.mark.timeout(60)
def test_a_flaky_scenario_reads_like_any_failed_one(tmp_path):
    """The scheduled check's violation and scenario, not a group traceback,
    so that `python -m stress.mutants` can quote the first violation."""
    proc = in_lab(FLAKY_SCENARIO, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        "failed, but not on every replay (FlakyFailure); the scenario is below",
        "invariant violated:", "  torn frame: producer 1 seq 0",
        "Falsifying example: scenario_holds(sc=Scenario(capacity=4096))"]


SOAK_WITHOUT_CONSUMER = """
import os
from stress import soak, workers

def consume_and_die(ring, *args):
    consumer = ring.consumer()
    os._exit(0)                 # dies with the consumer open: producers get ConsumerGone

workers.consume = consume_and_die
bad, summary = soak.soak(1.5, kills=True, seed=7)
print("bad:", bad)
print("summary:", summary)
"""


@pytest.mark.timeout(120)
def test_soak_whose_producers_all_ended_reports_instead_of_crashing(tmp_path):
    """Every producer ends with ConsumerGone; the kill loop then has no
    victim to choose from (it raised IndexError)."""
    proc = in_lab(SOAK_WITHOUT_CONSUMER, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "IndexError" not in proc.stderr
    assert "ConsumerGone" in proc.stderr                    # the producers' own reports
    assert "consumer died with status 0 before the ring drained" in proc.stdout
    assert "summary: 0 frames" in proc.stdout


DRIVER_ENDS = {
    "exit": "os._exit(4)",
    "exception": "raise RuntimeError('driver failed')",
    "sigkill": "os.kill(os.getpid(), 9)",
}
TSAN_RUN = """
import os, sys
from stress import tsan
ending = sys.argv[1]
driver = ("import os, shmring\\n"
          "ring = shmring.Ring.create('tsan-run', 4096)\\n"
          "print(ring.path, flush=True)\\n" + ending)
proc = tsan.run_driver(os.getcwd(), driver, dict(os.environ))
print(proc.returncode, proc.stdout.strip())
"""


@pytest.mark.timeout(60)
@pytest.mark.parametrize("ending", sorted(DRIVER_ENDS))
def test_tsan_driver_leaves_no_segment_however_it_ends(tmp_path, ending):
    proc = processes.run([sys.executable, "-c", TSAN_RUN, DRIVER_ENDS[ending]], 60,
                         cwd=tmp_path, capture_output=True, text=True,
                         env=dict(os.environ, PYTHONPATH=processes.python_path(ROOT)))
    assert proc.returncode == 0, proc.stderr
    code, segment = proc.stdout.split()
    assert int(code) != 0
    scratch = os.path.dirname(segment)
    assert os.path.basename(scratch).startswith("shmring-lab-")
    assert not os.path.exists(scratch), f"{scratch} was left behind"

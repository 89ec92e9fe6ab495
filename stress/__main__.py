"""python -m stress [--seconds N] [--quick] [--only CHECK ...] [--soak-frames N]

Runs the lab's checks, prints one summary line per check, and exits
non-zero on any violation.  docs/lab.md says what each check proves."""
import argparse
import sys
import time
import traceback

from hypothesis.errors import FlakyFailure

from shmring import _core
from stress import aarch64, audit, model, reference, scheduled, soak, tsan

# name -> (share of the time budget, function(seconds, args) -> (violations, summary))
CHECKS = {
    "model": (0, lambda s, a: model.check_models()),
    "fences": (0, lambda s, a: audit.check_fences()),
    "aarch64": (0, lambda s, a: aarch64.check_aarch64()),
    "reference": (0.1, lambda s, a: reference.check_reference(s, shrink=not a.no_shrink)),
    "scheduled": (0.4, lambda s, a: run_scheduled(s, a)),
    "soak": (0.15, lambda s, a: soak.soak(s, kills=False)),
    "soak-kill": (0.2, lambda s, a: soak.soak(s, kills=True)),
    "tsan": (0, lambda s, a: tsan.check_tsan()),
}


def run_scheduled(seconds, args):
    started = time.monotonic()
    try:
        n = scheduled.explore(seconds, 150 if args.quick else 3000, not args.no_shrink)
    except AssertionError as e:
        # Hypothesis attaches the (shrunk) falsifying scenario as exception notes.
        return [str(e), *getattr(e, "__notes__", [])], "failed; the scenario is below"
    except FlakyFailure as e:
        # A scenario that failed once and held when replayed: timing decided it.
        first = e.exceptions[0]
        return ([str(first), *getattr(first, "__notes__", []), *getattr(e, "__notes__", [])],
                "failed, but not on every replay (FlakyFailure); the scenario is below")
    return [], f"{n} scenarios held ({time.monotonic() - started:.0f} s)"


def run_checks(checks, budget, args):
    """Run each check, print its summary line and violations, and return the
    names of those that failed.  A check that raises (a timing-dependent
    FlakyFailure from Hypothesis, a crashed build, anything) fails with its
    traceback as the violation, and the checks after it still run."""
    failed = []
    for name, (share, check) in checks.items():
        started = time.monotonic()
        try:
            bad, summary = check(max(budget * share, 1), args)
        except Exception as e:  # noqa: BLE001 - every failure becomes a FAIL line
            bad, summary = [traceback.format_exc().rstrip()], f"raised {type(e).__name__}"
        status = "FAIL" if bad else "ok"
        print(f"{name:10} {status:4} {summary} [{time.monotonic() - started:.0f} s]", flush=True)
        for line in bad:
            print("    " + line.replace("\n", "\n    "), flush=True)
        if bad:
            failed.append(name)
    return failed


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m stress", description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=None,
                    help="time budget for the timed checks (default 480, --quick 60)")
    ap.add_argument("--quick", action="store_true", help="the short subset for .ci/run")
    ap.add_argument("--only", nargs="+", choices=sorted(CHECKS), help="run only these checks")
    ap.add_argument("--no-shrink", action="store_true",
                    help="report the first failing scenario without shrinking it")
    ap.add_argument("--soak-frames", type=int, metavar="N",
                    help="only the long soak: producers killed at random until N frames passed")
    args = ap.parse_args(argv)
    if not _core.lab_enabled():
        print("stress: shmring was built without pause points; "
              "rebuild with SHMRING_LAB=1 (see docs/lab.md)", file=sys.stderr)
        return 2
    budget = args.seconds if args.seconds is not None else (60 if args.quick else 480)
    checks = {name: CHECKS[name] for name in args.only or CHECKS}
    if args.soak_frames:
        checks = {"long-soak": (0, lambda s, a: soak.soak_frames(a.soak_frames))}
    failed = run_checks(checks, budget, args)
    if failed:
        print(f"stress: FAILED: {', '.join(failed)}", flush=True)
        return 1
    print("stress: all checks passed", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

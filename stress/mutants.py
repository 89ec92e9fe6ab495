"""python -m stress.mutants: build each deliberately broken core and show
which check of the lab catches it.  Every mutant must be caught.

Each mutant is built in a scratch copy (never in the tree) with
SHMRING_LAB=1 SHMRING_MUTANT=<name>; only _core is recompiled, since the
mutants are C macros (shmring/includes/mutants.pxd)."""
import argparse
import glob
import os
import sys
import tempfile
import time

from shmring.testing import processes
from shmring.testing.build import build_tree
from stress import aarch64, tsan

ROOT = tsan.ROOT
# mutant -> the checks to try, cheapest first; the first that fails catches it
MUTANTS = {
    "relaxed_commit": ["tsan"],
    "commit_early": ["scheduled", "soak"],
    "pad_short": ["scheduled", "soak"],
    "no_tag_check": ["scheduled", "soak"],
    "lt_compare": ["scheduled"],
    "no_fence": ["fences"],
    "no_stream_fence": ["fences"],
    "no_recovery": ["scheduled", "soak-kill"],
    "sleep_reread": ["scheduled", "soak"],
    "tag_48": ["scheduled"],
    "release_passes_held": ["reference", "scheduled", "soak"],
    "pad_exact": ["reference", "scheduled", "soak"],
    "relaxed_recover": ["aarch64"],
    "relaxed_owner": ["aarch64"],
    "seal_store": ["scheduled"],
    "rewind_overrun": ["scheduled", "soak"],
    "rewind_unwatched": ["scheduled"],
    "no_recheck": ["scheduled"],
    "seal_silent": ["scheduled"],
}


def build(dest, mutant):
    """A lab build of the tree in dest with the mutant compiled into _core."""
    build_tree(ROOT, dest, env={"SHMRING_LAB": "1", "SHMRING_MUTANT": mutant}, reuse=("_ring",))


def caught_by(mutant, checks, seconds):
    """(check that failed, its first violation line), or (None, "") if none did."""
    for check in checks:
        if check == "tsan":
            bad, _ = tsan.check_tsan(mutant)
        elif check == "aarch64":
            bad, _ = aarch64.check_aarch64(mutant)
        else:
            with tempfile.TemporaryDirectory(prefix=f"shmring-mutant-{mutant}-") as dest:
                build(dest, mutant)
                proc = processes.run(
                    [sys.executable, "-m", "stress", "--only", check, "--no-shrink",
                     "--seconds", str(seconds * 2 if check == "scheduled" else seconds)],
                    timeout=seconds * 4 + 300, cwd=dest,
                    env=dict(os.environ, PYTHONPATH=os.pathsep.join([dest, ROOT])),
                    capture_output=True, text=True, check=False)
            bad = [] if proc.returncode == 0 else [first_violation(proc.stdout + proc.stderr)]
        if bad:
            return check, bad[0].strip().splitlines()[0].split("; stats")[0][:100]
    return None, ""


def first_violation(output):
    """The first violation line the failed check printed."""
    lines = output.splitlines()
    errors = [ln for ln in lines if ln.startswith("shmring.errors.")]
    for k in range(len(lines) - 1, -1, -1):
        if lines[k].strip().endswith("invariant violated:") and k + 1 < len(lines):
            why = lines[k + 1].strip()
            return f"consumer died: {errors[-1][15:]}" if why.startswith("consumer died") \
                and errors else why
    for line in lines:
        if line.startswith("    ") and not line.strip().startswith(("File", "^")):
            return line.strip()
    return lines[-1] if lines else "failed"


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m stress.mutants", description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=30, help="budget per check (default 30)")
    ap.add_argument("names", nargs="*", choices=[[]] + sorted(MUTANTS), default=[],
                    help="mutants to run (default: all)")
    args = ap.parse_args(argv)
    rows, missed = [], []
    for mutant in args.names or MUTANTS:
        started = time.monotonic()
        check, why = caught_by(mutant, MUTANTS[mutant], args.seconds)
        rows.append((mutant, check or "NOT CAUGHT", f"{time.monotonic() - started:.0f} s", why))
        print(f"{mutant:15} {check or 'NOT CAUGHT':10} {rows[-1][2]:>5}  {why}", flush=True)
        if not check:
            missed.append(mutant)
    print("\n| mutant | caught by | time | first violation |\n|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    leftovers = glob.glob(os.path.join(ROOT, "shmring", "*mutant*"))
    if leftovers:
        print(f"mutants: build products leaked into the tree: {leftovers}")
        return 1
    if missed:
        print(f"mutants: NOT CAUGHT: {', '.join(missed)}")
        return 1
    print("mutants: every mutant was caught")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Run the spin models in docs/model/: each must check with errors: 0, and
each broken variant (a -D switch) must be caught, or the model proves nothing."""
import os
import re
import shutil
import tempfile
import time

from shmring.testing import processes

MODEL_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                         "docs", "model")
# (file, spin -D switches, must it fail?)
RUNS = [("claim.pml", (), False), ("claim.pml", ("PAD_SHORT",), True),
        ("claim.pml", ("SEAL_STORE",), True),
        ("wakeup.pml", (), False), ("wakeup.pml", ("NOFENCE",), True),
        ("wakeup.pml", ("DOORBELL",), False), ("wakeup.pml", ("DOORBELL", "NOFENCE"), True),
        ("wakeup.pml", ("DOORBELL", "NORECHECK"), True)]
TIMEOUT = 120


def errors(model, defines, work):
    """spin's error count for one model (a verification run, with a deadline)."""
    src = os.path.join(work, model)
    shutil.copy(os.path.join(MODEL_DIR, model), src)
    spin = ["spin", "-a"] + [f"-D{d}" for d in defines] + [model]
    processes.run(spin, TIMEOUT, cwd=work, check=True, capture_output=True)
    processes.run(["gcc", "-O2", "-DSAFETY", "-o", "pan", "pan.c"], TIMEOUT, cwd=work,
                  check=True, capture_output=True)
    out = processes.run(["./pan", "-m100000"], TIMEOUT, cwd=work, capture_output=True, text=True,
                        check=False).stdout
    found = re.search(r"errors: (\d+)", out)
    if not found:
        raise RuntimeError(f"spin gave no verdict for {model}:\n{out}")
    return int(found.group(1))


def check_models():
    """(violations, summary line)."""
    if not shutil.which("spin"):
        return ["spin is not installed (apt-get install -y spin)"], "not run"
    bad, parts = [], []
    started = time.monotonic()
    for model, defines, must_fail in RUNS:
        with tempfile.TemporaryDirectory(prefix="shmring-spin-") as work:
            n = errors(model, defines, work)
        label = " ".join([model] + [f"-D{d}" for d in defines])
        parts.append(f"{label}: errors {n}")
        if (n > 0) != must_fail:
            bad.append(f"{label}: errors {n}, expected {'some' if must_fail else 0}")
    return bad, "; ".join(parts) + f" ({time.monotonic() - started:.1f} s)"

"""ThreadSanitizer mode: build shmring and a small nogil driver with
-fsanitize=thread in a scratch directory, run producers and the consumer as
threads under LD_PRELOAD of libtsan, and fail on any report.

TSan sees what x86 hides: a relaxed store where a release is needed, a
plain read racing a write.  It sees only threads of one process, never two
processes, which is why this mode uses threads."""
import os
import sys
import tempfile
import threading
import time

from shmring.testing import processes, rings
from shmring.testing.build import build_extension, build_tree

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FLAGS = "-fsanitize=thread -g -O1"
PRODUCERS, FRAMES, CAPACITY = 3, 3000, 16384
DRIVER = "_tsan_driver"


def build(dest, mutant=None):
    """Build the package and the driver in dest with TSan (and a mutant)."""
    build_tree(ROOT, dest, env={"SHMRING_CFLAGS": FLAGS, "SHMRING_LDFLAGS": "-fsanitize=thread",
                          "SHMRING_MUTANT": mutant or "", "SHMRING_LAB": ""})
    build_extension(os.path.join(ROOT, "stress", f"{DRIVER}.pyx"), dest, include_path=dest,
                    compile_args=FLAGS.split(), link_args=["-fsanitize=thread"])


def drive():
    """In the TSan process: threads of nogil producers and one consumer, on a
    ring in the SHMRING_DIR the parent made (and removes, however this ends).
    Exit status: 0, or 3 (stuck), 4 (bad frames), 5 (wrong build)."""
    import _tsan_driver

    import shmring
    build_dir = os.path.dirname(_tsan_driver.__file__)
    if os.path.dirname(os.path.dirname(shmring.__file__)) != build_dir:
        # An uninstrumented core hides its atomics from TSan: every payload would "race".
        print(f"LAB: imported {shmring.__file__}, not the TSan build in {build_dir}", flush=True)
        sys.exit(5)
    ring = shmring.Ring.create(rings.unique_name("tsan"), CAPACITY)
    producers = [ring.producer() for _ in range(PRODUCERS)]
    result = {}
    consumer = ring.consumer()
    threads = [threading.Thread(target=_tsan_driver.produce, args=(p, k, FRAMES, ring.max_frame),
                                daemon=True) for k, p in enumerate(producers)]
    threads.append(threading.Thread(target=lambda: result.setdefault(
        "bad", _tsan_driver.consume(consumer, PRODUCERS, FRAMES, ring.max_frame)), daemon=True))
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    if any(t.is_alive() for t in threads) or "bad" not in result:
        print("LAB: a thread did not finish", flush=True)
        os._exit(3)                     # stuck threads would not let the process exit
    print(f"LAB: {PRODUCERS * FRAMES} frames, {result['bad']} bad", flush=True)
    sys.exit(4 if result["bad"] else 0)


def libtsan():
    path = processes.run(["gcc", "-print-file-name=libtsan.so"], timeout=60, capture_output=True,
                         text=True, check=True).stdout.strip()
    if not os.path.isabs(path):
        raise RuntimeError("libtsan.so not found: install gcc's libtsan (libtsan2)")
    return path


def run_driver(dest, command, env):
    """Run command (a Python snippet) in dest with env, its segments in a
    scratch directory that is removed however the command ends."""
    with rings.scratch_dir() as scratch:
        return processes.run([sys.executable, "-c", command], timeout=600, cwd=dest,
                             env=dict(env, SHMRING_DIR=scratch), capture_output=True, text=True,
                             check=False)


def check_tsan(mutant=None):
    """(violations, summary line)."""
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="shmring-tsan-") as dest:
        build(dest, mutant)
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([dest, ROOT]),
                   LD_PRELOAD=libtsan(),
                   TSAN_OPTIONS="halt_on_error=0 exitcode=66 report_signal_unsafe=0")
        proc = run_driver(dest, "from stress.tsan import drive; drive()", env)
    reports = proc.stderr.count("WARNING: ThreadSanitizer")
    ran = [ln for ln in proc.stdout.splitlines() if ln.startswith("LAB:")]
    summary = f"{ran[-1][5:] if ran else 'no run'}, {reports} TSan reports " \
              f"({time.monotonic() - started:.0f} s incl. build)"
    bad = []
    if reports or proc.returncode != 0:
        races = [ln for ln in proc.stderr.splitlines() if ln.startswith("SUMMARY: ThreadSanitizer")]
        first = proc.stderr[proc.stderr.find("WARNING: ThreadSanitizer"):][:3000] if reports \
            else proc.stderr[-3000:]
        bad.append(f"TSan run exited {proc.returncode} with {reports} reports: "
                   f"{races[0].split(' in ')[-1] + ' races' if races else ''}\n{first}")
    return bad, summary

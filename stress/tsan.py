"""ThreadSanitizer mode: build shmring and a small nogil driver with
-fsanitize=thread in a scratch directory, run producers and the consumer as
threads under LD_PRELOAD of libtsan, and fail on any report.

TSan sees what x86 hides: a relaxed store where a release is needed, a
plain read racing a write.  It sees only threads of one process, never two
processes, which is why this mode uses threads."""
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FLAGS = "-fsanitize=thread -g -O1"
DRIVER_SETUP = """
from Cython.Build import cythonize
from setuptools import Extension, setup
setup(ext_modules=cythonize(
    [Extension("_tsan_driver", ["_tsan_driver.pyx"], extra_compile_args={flags!r}.split(),
               extra_link_args=["-fsanitize=thread"])],
    include_path=["."], compiler_directives={{"language_level": 3}}))
"""
PRODUCERS, FRAMES, CAPACITY = 3, 3000, 16384


def build(dest, mutant=None, lab=False):
    """Copy the package to dest and build it there with TSan (and a mutant)."""
    shutil.copytree(os.path.join(ROOT, "shmring"), os.path.join(dest, "shmring"),
                    ignore=shutil.ignore_patterns("*.so", "*.c", "__pycache__"))
    shutil.copy(os.path.join(ROOT, "setup.py"), dest)
    shutil.copy(os.path.join(ROOT, "stress", "_tsan_driver.pyx"), dest)
    env = dict(os.environ, SHMRING_CFLAGS=FLAGS, SHMRING_LDFLAGS="-fsanitize=thread",
               SHMRING_MUTANT=mutant or "", SHMRING_LAB="1" if lab else "")
    run_build([sys.executable, "setup.py", "-q", "build_ext", "--inplace"], dest, env)
    with open(os.path.join(dest, "setup_driver.py"), "w") as f:
        f.write(DRIVER_SETUP.format(flags=FLAGS))
    run_build([sys.executable, "setup_driver.py", "-q", "build_ext", "--inplace"], dest, env)


def run_build(cmd, cwd, env):
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600,
                          check=False)
    if proc.returncode:
        raise RuntimeError(f"build failed: {' '.join(cmd)}\n{proc.stdout[-2000:]}"
                           f"{proc.stderr[-4000:]}")


def drive():
    """In the TSan process: threads of nogil producers and one consumer."""
    import _tsan_driver

    import shmring
    from stress import procs
    build_dir = os.path.dirname(_tsan_driver.__file__)
    if os.path.dirname(os.path.dirname(shmring.__file__)) != build_dir:
        # An uninstrumented core hides its atomics from TSan: every payload would "race".
        print(f"LAB: imported {shmring.__file__}, not the TSan build in {build_dir}", flush=True)
        os._exit(5)
    with procs.scratch_dir():
        ring = shmring.Ring.create(procs.unique_name("tsan"), CAPACITY)
        try:
            producers = [ring.producer() for _ in range(PRODUCERS)]
            result = {}
            consumer = ring.consumer()
            threads = [threading.Thread(target=_tsan_driver.produce,
                                        args=(p, k, FRAMES, ring.max_frame))
                       for k, p in enumerate(producers)]
            threads.append(threading.Thread(target=lambda: result.setdefault(
                "bad", _tsan_driver.consume(consumer, PRODUCERS, FRAMES, ring.max_frame))))
            for t in threads:
                t.start()
            for t in threads:
                t.join(120)
            if any(t.is_alive() for t in threads) or "bad" not in result:
                print("LAB: a thread did not finish", flush=True)
                os._exit(3)
            print(f"LAB: {PRODUCERS * FRAMES} frames, {result['bad']} bad", flush=True)
            if result["bad"]:
                os._exit(4)
        finally:
            ring.unlink()


def libtsan():
    path = subprocess.run(["gcc", "-print-file-name=libtsan.so"], capture_output=True,
                          text=True, check=True).stdout.strip()
    if not os.path.isabs(path):
        raise RuntimeError("libtsan.so not found: install gcc's libtsan (libtsan2)")
    return path


def check_tsan(mutant=None):
    """(violations, summary line)."""
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="shmring-tsan-") as dest:
        build(dest, mutant)
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([dest, ROOT]), LD_PRELOAD=libtsan(),
                   TSAN_OPTIONS="halt_on_error=0 exitcode=66 report_signal_unsafe=0")
        proc = subprocess.run([sys.executable, "-c", "from stress.tsan import drive; drive()"],
                              cwd=dest, env=env, capture_output=True, text=True, timeout=600, check=False)
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

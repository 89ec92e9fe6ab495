#!/usr/bin/env bash
# Scaling run for a many-core machine with no network: 1, 2, 4, 8 and 16
# producers into one consumer, 64 B, 4 KiB and 8,294,400-byte frames; prints
# frames/s, GB/s and CPU s/GB, and writes $OUT/scaling.json (or ./).
#
# Usage, from the repository root:
#     bash tools/bench-device.sh WHEELS_DIR
#
# WHEELS_DIR holds wheels for the machine's Python (3.12 here), prepared on
# a machine with network:
#     pip download --only-binary=:all: --python-version 3.12 --implementation cp \
#         --abi cp312 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
#         --platform manylinux_2_28_x86_64 --platform any -d build/wheels \
#         cython numpy setuptools
# (build/ is git-ignored; about 20 MB).  It needs python3 with venv, and gcc.
# PYTHON picks the interpreter (python3); PRODUCERS the counts (1,2,4,8,16).
set -euo pipefail

wheels=$(cd "${1:?usage: tools/bench-device.sh WHEELS_DIR}" && pwd)
root=$(cd "$(dirname "$0")/.." && pwd)
out=${OUT:-$root}
venv=$(mktemp -d)/venv
py=${PYTHON:-python3}

echo "== machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2-)"
echo "== $($py --version), $(gcc --version | head -1)"
echo "== /dev/shm: $(df -h /dev/shm | tail -1)"
$py -m venv "$venv"
"$venv/bin/pip" install -q -U --no-index --find-links "$wheels" cython numpy "setuptools>=77"

cd "$root"
[ -f README.md ] || { echo "shmring" > README.md; trap 'rm -f "$root/README.md"' EXIT; }
time "$venv/bin/python" setup.py -q build_ext --inplace -j "$(nproc)"

# Baselines that need no extra package: os.pipe and socketpair; np.copyto is
# always measured.  websockets, pyzmq, faster-fifo and iceoryx2 are absent
# offline and are skipped with a note.
time PYTHONPATH="$root" XDG_CACHE_HOME="$(dirname "$venv")" "$venv/bin/python" -m shmring.bench \
    --only "shmring,os.pipe,socketpair" --sizes 64,4096,8294400 --producers "${PRODUCERS:-1,2,4,8,16}" \
    --reps 3 --seconds 0.3 --no-checks --json "$out/scaling.json"
echo "== wrote $out/scaling.json"

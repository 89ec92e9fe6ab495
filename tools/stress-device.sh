#!/usr/bin/env bash
# The many-core check that 2 cores cannot show: the lab's soaks (with and
# without SIGKILLs) with 16 producer processes, then the benchmark's 1-16
# producer scaling run.  For a machine with no network; WHEELS_DIR holds
# wheels for its Python (see tools/bench-device.sh for how to fetch them).
#     bash tools/stress-device.sh WHEELS_DIR
set -euo pipefail
wheels=$(cd "${1:?usage: tools/stress-device.sh WHEELS_DIR}" && pwd)
root=$(cd "$(dirname "$0")/.." && pwd)
out=${OUT:-$root}
venv=$(mktemp -d)/venv
python3 -m venv "$venv"
"$venv/bin/pip" install -q --no-index --find-links "$wheels" cython numpy "setuptools>=77" hypothesis

echo "== lab build, soaks with ${STRESS_SOAK_PRODUCERS:=16} producers on $(nproc) CPUs"
lab=$(mktemp -d)
(cd "$root" && git ls-files -z | xargs -0 cp --parents -t "$lab")
(cd "$lab" && SHMRING_LAB=1 "$venv/bin/python" setup.py -q build_ext --inplace -j 4)
(cd "$lab" && STRESS_SOAK_PRODUCERS=$STRESS_SOAK_PRODUCERS PYTHONPATH=. \
    timeout 200 "$venv/bin/python" -m stress --only soak soak-kill --seconds "${SOAK_SECONDS:-150}") \
    | tee "$out/soak.txt"

echo "== release build, scaling"
PRODUCERS=${PRODUCERS:-1,2,4,8,16} timeout 330 bash "$root/tools/bench-device.sh" "$wheels"

#!/usr/bin/env bash
# One-call GPU check for issue 14 (see scripts/gpu_check.py for the steps and outputs).
#
# On a lent GPU machine (Python 3.12 + torch, no nbformat/pytest/nbgrader/bubblewrap, no network),
# after `python scripts/pack_gpu_bundle.py` here:
#   call 1  carry [".device_bundle_grading"]:  bash scripts/gpu_check.sh install      (~30 s)
#   call 2  carry [".device_bundle"]:          bash scripts/gpu_check.sh              (<= 8 min)
# Call 1 unpacks nbgrader's import chain into .device_site/, which stays on the warm machine;
# without it every step but the grading one still runs. Results land in $OUT.
# Practice on CPU:  bash scripts/gpu_check.sh --device cpu --out /tmp/gpu_check_practice
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${GPU_CHECK_PYTHON:-$(command -v python3 || command -v python)}"
exec "$PY" scripts/gpu_check.py "$@"

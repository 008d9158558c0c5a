#!/usr/bin/env bash
# Gradescope runs this once, as root, when the autograder zip is uploaded; the zip is unpacked in
# $AUTOGRADER_ROOT/source (default /autograder/source). Written by `python -m autograder gradescope`.
#
# 1. system packages: a Python >= 3.11 and bubblewrap (the sandbox). Skipped with SKIP_APT=1.
# 2. Python: a venv in $VENV (default $AUTOGRADER_ROOT/venv; reused when it exists) with the
#    versions pinned in requirements.txt (CPU wheels of torch), then a check that the kit imports.
# 3. data, only when gradescope.json enables the CPU mIoU tier: the CMP Facade base set (sha256
#    checked) and torchvision's VGG-16 weights. Skipped with SKIP_DATA=1.
# Where bubblewrap cannot start in Gradescope's container, grading still works: the submission's
# code runs in a plain process with resource limits, and the student's results say so.
set -euo pipefail
ROOT=${AUTOGRADER_ROOT:-/autograder}
SOURCE=${SOURCE:-$ROOT/source}
VENV=${VENV:-$ROOT/venv}
TORCH_INDEX=${TORCH_INDEX:-https://download.pytorch.org/whl/cpu}

if [ "${SKIP_APT:-0}" != 1 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq bubblewrap util-linux ca-certificates \
        || echo "setup.sh: bubblewrap could not be installed; grading will use the weaker isolation" >&2
    if command -v python3 >/dev/null && python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
        apt-get install -y -qq python3-venv          # Ubuntu 24.04: Python 3.12
    else
        apt-get install -y -qq python3.11 python3.11-venv   # Ubuntu 22.04: Python 3.10 is too old
    fi
fi

# --------------------------------------------------------------------------------------- Python
if [ ! -x "$VENV/bin/python" ]; then
    PYTHON=${PYTHON:-$(command -v python3.11 || command -v python3)}
    "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
        || { echo "setup.sh: $PYTHON is older than 3.11; set PYTHON to a newer one" >&2; exit 1; }
    "$PYTHON" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install -q --extra-index-url "$TORCH_INDEX" -r "$SOURCE/requirements.txt"
PYTHONPATH="$SOURCE" "$VENV/bin/python" -c 'import torch, nbformat, autograder.gradescope_run; print("setup.sh: torch", torch.__version__)'

# ----------------------------------------------------------------------------------------- data
MIOU=$("$VENV/bin/python" -c 'import json, sys; print(json.load(open(sys.argv[1]))["miou"])' "$SOURCE/gradescope.json")
if [ "$MIOU" = cpu ] && [ "${SKIP_DATA:-0}" != 1 ]; then
    cd "$SOURCE"
    PYTHONPATH="$SOURCE" "$VENV/bin/python" -m assignment_lib.download --dest "$SOURCE/datasets/cmp_facade"
    PYTHONPATH="$SOURCE" "$VENV/bin/python" -c 'from assignment_lib.weights import find_vgg16_weights; print("setup.sh: VGG-16 weights", find_vgg16_weights(download=True))'
fi
echo "setup.sh: done"

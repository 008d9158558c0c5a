#!/usr/bin/env bash
# Create the virtual environment, install the kit, and install the sandbox tool (bubblewrap).
# Safe to run again. Called by `make setup`.
set -euo pipefail
PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}

if [ ! -x "$VENV/bin/python" ]; then
    "$PYTHON" -m venv "$VENV"
fi
"$VENV/bin/pip" install -q --upgrade pip
# torch/torchvision are pinned in pyproject.toml (torch==2.14.1, torchvision==0.29.1).
"$VENV/bin/pip" install -q -e ".[dev]"

# The autograder isolates submissions with bubblewrap when it is present; without it, it falls
# back to a plain subprocess with resource limits and says so in every report.
if ! command -v bwrap >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "setup: installing bubblewrap (sandbox for grading)"
        (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bubblewrap) >/dev/null \
            || echo "setup: could not install bubblewrap; grading will use weaker isolation" >&2
    else
        echo "setup: bubblewrap not found; install it (apt-get install bubblewrap) for full isolation" >&2
    fi
fi
echo "setup: done ($("$VENV/bin/python" -c 'import torch; print("torch", torch.__version__)'))"

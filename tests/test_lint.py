"""ruff (installed by `make setup` from the dev extra) finds nothing in the project's code."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest


def test_ruff_is_clean(repo_root):
    ruff = Path(sys.executable).with_name("ruff")
    ruff = str(ruff) if ruff.exists() else shutil.which("ruff")
    if ruff is None:
        pytest.skip("ruff is not installed (pip install -e '.[dev]')")
    r = subprocess.run([ruff, "check", "--output-format", "concise", "assignment_lib", "autograder",
                        "tests", "benchmarks", "datasets", "scripts"], cwd=repo_root, capture_output=True,
                       text=True, check=False)
    assert r.returncode == 0, r.stdout + r.stderr

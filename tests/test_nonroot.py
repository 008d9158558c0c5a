"""Grading as a non-root user (a TA on a shared server): bubblewrap in a user namespace contains
the cheating attempts, and the scores are those of grading as root.

The grader runs as ``nobody`` (``setpriv``), with an output folder it owns. Python often lives where
``nobody`` cannot go (here ``/root/.pyenv`` under ``/root``, mode 0700): then only the interpreter's
folder is made visible, read-only, through a root-made mount namespace around the grader (what a
course server's shared Python install gives for free); nothing else about the grader changes.
"""

import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

NOBODY = 65534
DRIVER = r'''
import json, os, sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
sys.path.insert(0, os.path.join(os.environ["REPO"], "tests"))
from _submissions import build_submission
from test_adversarial import FAST_WRONG_FCN8S, FORGED_FCN, FORGED_FUNCS
from autograder.job import GradeJob, grade_job
from autograder.settings import GradingSettings
from autograder.sandbox import isolation_mode

out = Path(sys.argv[1])
subs = {"honest": {}, "forger": {"fcn32s": FORGED_FCN, "fcn8s": FAST_WRONG_FCN8S,
                                  "transposed_conv_padding": FORGED_FUNCS, "soft_iou_loss": FORGED_FUNCS}}
settings = GradingSettings(scratch_root=str(out / "grading"), threads=1, request_timeout=60,
                           submission_budget=300)
def grade(student):
    nbs = build_submission(out / "subs" / student, subs[student])
    r = grade_job(GradeJob(student, {n: p.read_bytes() for n, p in nbs.items()}, settings))
    parts = {}
    for t in r.tests:
        parts[t.part] = parts.get(t.part, 0) + t.score
    return student, {"parts": parts, "score": r.score, "max": r.max_score, "isolation": r.isolation,
                     "problems": r.problems}
with ThreadPoolExecutor(max_workers=2) as pool:
    res = dict(pool.map(grade, subs))
from autograder.sandbox import Sandbox
PROBE = """
import os, socket, time
def probe(paths):
    out = {"exists": [p for p in paths if os.path.exists(p)], "uid": os.getuid()}
    try:
        socket.create_connection(("1.1.1.1", 80), timeout=2)
        out["net"] = "connected"
    except OSError as err:
        out["net"] = type(err).__name__
    made = 0
    for _ in range(400):
        try:
            if os.fork() == 0:
                time.sleep(2)
                os._exit(0)
            made += 1
        except OSError:
            break
    out["forks"] = made
    return out
"""
hidden = [os.environ["REPO"] + "/autograder", str(out), "/root/.bashrc", "/root/.ssh"]
with Sandbox([{"grade_id": "p", "source": PROBE}], out / "probe" / "s", slot=5, max_procs=64) as sb:
    probe = sb.request("call", name="probe", calls=[{"args": [hidden]}])["results"][0]["value"]
print("RESULT " + json.dumps({"mode": isolation_mode(), "uid": os.getuid(), "results": res, "probe": probe}))
'''


def _hidden_ancestor(path: Path) -> Path | None:
    """The top folder above ``path`` that others may not traverse, or None."""
    for anc in reversed(path.parents):
        if anc != Path("/") and not os.stat(anc).st_mode & stat.S_IXOTH:
            return anc
    return None


def _as_nobody(argv: list[str], env: dict) -> list[str]:
    drop = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", "--"]
    prefix = Path(sys.base_prefix).resolve()
    hidden = _hidden_ancestor(prefix)
    if hidden is None:
        return drop + argv
    wrap = ["bwrap", "--dev-bind", "/", "/", "--tmpfs", str(hidden)]
    for d in reversed(prefix.parents):
        if d != hidden and hidden in d.parents:
            wrap += ["--perms", "0755", "--dir", str(d)]
    return wrap + ["--ro-bind", str(prefix), str(prefix), "--"] + drop + argv


@pytest.fixture(scope="module")
def nonroot_run(repo_root):
    if os.geteuid() != 0:
        pytest.skip("this test starts the grader as 'nobody', which needs root (setpriv)")
    if shutil.which("bwrap") is None or shutil.which("setpriv") is None:
        pytest.skip("bubblewrap or setpriv is missing")
    out = Path(tempfile.mkdtemp(prefix="fcn-nonroot-", dir="/tmp"))
    os.chown(out, NOBODY, NOBODY)
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(out), "REPO": str(repo_root),
           "PYTHONPATH": str(repo_root), "FCN_KIT_CACHE": str(out / "cache"), "LANG": "C.UTF-8",
           "PYTHONDONTWRITEBYTECODE": "1"}
    probe = subprocess.run(_as_nobody([sys.executable, "-c", "import torch, nbformat"], env), env=env,
                           capture_output=True, text=True, cwd=out, check=False)
    if probe.returncode != 0:
        shutil.rmtree(out, ignore_errors=True)
        pytest.skip(f"'nobody' cannot run this interpreter and its packages: {probe.stderr[-300:]}")
    try:
        r = subprocess.run(_as_nobody([sys.executable, "-c", DRIVER, str(out)], env), env=env, cwd=out,
                           capture_output=True, text=True, timeout=600, check=False)
        lines = [ln for ln in r.stdout.splitlines() if ln.startswith("RESULT ")]
        assert r.returncode == 0 and lines, r.stdout[-2000:] + r.stderr[-3000:]
        yield json.loads(lines[-1][len("RESULT "):]), out
    finally:
        shutil.rmtree(out, ignore_errors=True)


def test_nonroot_grader_uses_a_user_namespace(nonroot_run):
    res, _ = nonroot_run
    assert res["uid"] == NOBODY
    assert res["mode"] == "user-namespace", "bubblewrap should work for a non-root grader here"
    for r in res["results"].values():
        assert "user namespace" in r["isolation"] and "limits: memory:" in r["isolation"], r["isolation"]


def test_nonroot_sandbox_hides_the_grader_cuts_the_network_and_bounds_forks(nonroot_run):
    res, _ = nonroot_run
    probe = res["probe"]
    assert probe["exists"] == [] and probe["net"] != "connected", probe
    assert probe["forks"] < 64, probe  # RLIMIT_NPROC: the uid's processes + 64


def test_nonroot_scores_are_unchanged_and_the_forger_contained(nonroot_run):
    res, out = nonroot_run
    honest, forger = res["results"]["honest"], res["results"]["forger"]
    assert honest["score"] == honest["max"] > 0 and honest["problems"] == [], honest
    assert all(v == 0 for v in forger["parts"].values()), forger["parts"]
    # the forged results files reached nothing of the grader's (its output folder is not in the sandbox)
    leaked = [p for p in out.rglob("*.json") if '"score": 100' in p.read_text(errors="replace")]
    assert leaked == [], leaked

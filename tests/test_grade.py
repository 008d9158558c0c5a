"""Orchestration of a grading run, with fake runners injected by name (no real sandbox here).

The fake runners live in this module: the worker processes import it as ``test_grade``.
"""

from __future__ import annotations

import csv
import json
import os
import queue
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from autograder import grade, reports
from autograder.results import InlineAnswer, SubmissionResult, TestResult
from autograder.submissions import Submission, find_submissions

HERE = Path(__file__).resolve().parent
REPO = HERE.parent


# ----------------------------------------------------------------------------- fake runners

def _log(student: str) -> None:
    if path := os.environ.get("FAKE_RUNNER_LOG"):
        with open(path, "a") as f:
            f.write(f"{student} {os.getpid()}\n")


def fake_runner(student: str, notebooks: dict, config) -> SubmissionResult:
    """Scores from the notebooks' text: 'wrong' loses part_a; special students crash."""
    _log(student)
    if student == "raises":
        raise RuntimeError("runner blew up")
    if student == "exits":
        os._exit(7)
    if student.startswith("slow"):
        time.sleep(float(os.environ.get("FAKE_RUNNER_SLEEP", "2")))
    text = "".join(Path(p).read_text() for p in notebooks.values())
    wrong = "wrong" in text
    return SubmissionResult(
        student=student, assignment="fcn_segmentation",
        tests=[
            TestResult("test_a", "part_a", 0.0 if wrong else 3.0, 3.0, "failed" if wrong else "passed",
                       "check the crop offset" if wrong else ""),
            TestResult("test_b", "part_b", 2.0, 2.0, "passed"),
            TestResult("test_gpu", "part_b", 0.0, 4.0, "not_run", "needs a GPU"),
        ],
        inline_answers=[InlineAnswer("q1", "Why?", f"answer of {student}", 2.0)],
        isolation="fake runner (no isolation)",
        device=str(config["lease"] is not None),
    )


def fake_config(options, lease, slot):
    assert 0 <= slot < options.jobs
    return {"lease": lease, "miou": options.miou}


def write_notebook(path: Path, text: str) -> Path:
    """A minimal nbformat-4 notebook with one code cell (plain JSON: nbformat is slow to import)."""
    nb = {"cells": [{"cell_type": "code", "execution_count": None, "id": "c1", "metadata": {},
                     "outputs": [], "source": text}],
          "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(nb))
    return path


def make_students(root: Path, names: dict[str, str]) -> Path:
    for student, text in names.items():
        write_notebook(root / student / "fcn_segmentation.ipynb", text)
        write_notebook(root / student / "upsampling_and_iou.ipynb", "x = 1")
    return root


def options(out: Path, **kw) -> grade.GradeOptions:
    kw.setdefault("jobs", 2)
    return grade.GradeOptions(out=out, runner="test_grade:fake_runner", config_factory="test_grade:fake_config",
                              progress=False, pdf=False, **kw)


@pytest.fixture
def runner_log(tmp_path, monkeypatch):
    log = tmp_path / "runner.log"
    monkeypatch.setenv("FAKE_RUNNER_LOG", str(log))
    return log


def graded(log: Path) -> list[str]:
    return [line.split()[0] for line in log.read_text().splitlines()] if log.exists() else []


# ----------------------------------------------------------------------------- tests

def test_crash_isolation_every_student_gets_a_result(tmp_path, runner_log):
    subs = find_submissions([make_students(tmp_path / "in", {
        "alice": "good", "bob": "wrong", "exits": "good", "raises": "good"})], tmp_path / "work")
    summary = grade.grade_all(subs, options(tmp_path / "out"), log=lambda *a: None)

    assert sorted(summary.graded) == ["alice", "bob"]
    assert sorted(summary.failed) == ["exits", "raises"]
    by = {r.student: r for r in summary.results}
    assert (by["alice"].score, by["alice"].max_score) == (5.0, 5.0)
    assert (by["bob"].score, by["bob"].max_score) == (2.0, 5.0)
    for crashed, why in (("exits", "exit code 7"), ("raises", "runner blew up")):
        r = by[crashed]
        assert r.score == 0 and [t.name for t in r.tests] == ["test_a", "test_b", "test_gpu"]
        assert any(why in p for p in r.problems), r.problems
        assert all(why in t.output for t in r.tests)
        data = json.loads((tmp_path / "out" / crashed / "results.json").read_text())
        assert data["score"] == 0 and why in data["output"]
    rows = list(csv.DictReader((tmp_path / "out" / "grades.csv").open()))
    assert [r["student"] for r in rows] == ["alice", "bob", "exits", "raises"]
    assert rows[1]["part_a"] == "0" and rows[1]["total"] == "2" and rows[1]["max"] == "5"


def test_resume_skips_up_to_date_and_force_regrades(tmp_path, runner_log):
    root = make_students(tmp_path / "in", {"alice": "good", "bob": "good"})
    out = tmp_path / "out"
    grade.grade_all(find_submissions([root], tmp_path / "w"), options(out), log=lambda *a: None)
    assert sorted(graded(runner_log)) == ["alice", "bob"]

    # bob changes his notebook: only bob is regraded
    write_notebook(root / "bob" / "fcn_segmentation.ipynb", "wrong now")
    s = grade.grade_all(find_submissions([root], tmp_path / "w"), options(out), log=lambda *a: None)
    assert s.skipped == ["alice"] and s.graded == ["bob"]
    assert sorted(graded(runner_log)) == ["alice", "bob", "bob"]
    assert {r.student: r.score for r in s.results} == {"alice": 5.0, "bob": 2.0}

    # other settings are a different grade: regraded
    s = grade.grade_all(find_submissions([root], tmp_path / "w"), options(out, miou="cpu"), log=lambda *a: None)
    assert sorted(s.graded) == ["alice", "bob"]

    s = grade.grade_all(find_submissions([root], tmp_path / "w"), options(out, miou="cpu", force=True),
                        log=lambda *a: None)
    assert sorted(s.graded) == ["alice", "bob"] and s.skipped == []
    assert len(list(csv.DictReader((out / "grades.csv").open()))) == 2


def test_killed_run_loses_nothing_and_rerun_does_not_regrade(tmp_path, runner_log):
    root = make_students(tmp_path / "in", {"fast": "good", "slow1": "good", "slow2": "good"})
    out = tmp_path / "out"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(HERE), str(REPO)]), FAKE_RUNNER_SLEEP="60")
    cmd = [sys.executable, "-m", "autograder", "grade", str(root), "--out", str(out), "--jobs", "1",
           "--no-progress", "--no-pdf", "--runner", "test_grade:fake_runner",
           "--runner-config", "test_grade:fake_config"]
    proc = subprocess.Popen(cmd, env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    first = out / "fast" / "results.json"
    deadline = time.time() + 60
    while not first.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.1)
    assert first.exists(), proc.stderr.read().decode() if proc.poll() is not None else "no result in 60 s"
    while "slow1" not in graded(runner_log) and time.time() < deadline:
        time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stderr.close()
    time.sleep(1.5)  # the orphaned worker notices its grader is gone and exits
    assert not (out / "slow1" / "results.json").exists()
    assert not (out / "grades.csv").exists()
    first_bytes = first.read_bytes()

    env["FAKE_RUNNER_SLEEP"] = "0"
    subprocess.run(cmd, env=env, cwd=REPO, check=True, capture_output=True, timeout=120)
    assert graded(runner_log).count("fast") == 1  # not regraded
    assert first.read_bytes() == first_bytes
    rows = list(csv.DictReader((out / "grades.csv").open()))
    assert sorted(r["student"] for r in rows) == ["fast", "slow1", "slow2"]  # no duplicates
    assert not list(out.rglob("*.tmp"))


def test_gpu_pool_lease_is_handed_to_the_runner_only_with_gpus(tmp_path, runner_log):
    root = make_students(tmp_path / "in", {"alice": "good"})
    s = grade.grade_all(find_submissions([root], tmp_path / "w"), options(tmp_path / "o1", jobs=1),
                        log=lambda *a: None)
    assert s.results[0].device == "False"
    s = grade.grade_all(find_submissions([root], tmp_path / "w"), options(tmp_path / "o2", jobs=1, gpus=[0, 1]),
                        log=lambda *a: None)
    assert s.results[0].device == "True"


def test_gpu_pool_hands_out_each_device_once():
    pool = grade.GpuPool([3, 5])
    lease = pool.lease()
    with lease() as a, lease() as b:
        assert {a, b} == {"cuda:3", "cuda:5"}
        with pytest.raises(queue.Empty), lease(timeout=0.2):  # both devices are taken
            pass
    with lease(timeout=1) as c:
        assert c in {"cuda:3", "cuda:5"}
    assert grade.GpuPool([]).lease() is None


def test_bad_zip_gets_a_zero_result_with_the_reason(tmp_path, runner_log):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "carol.zip").write_bytes(b"not a zip at all")
    make_students(tmp_path / "in", {"alice": "good"})
    subs = find_submissions([tmp_path / "in"], tmp_path / "w")
    s = grade.grade_all(subs, options(tmp_path / "out"), log=lambda *a: None)
    by = {r.student: r for r in s.results}
    assert "carol" in s.failed and "not a readable zip" in by["carol"].problems[0]
    assert graded(runner_log) == ["alice"]  # the runner never saw the bad zip
    # carol failed before any rubric was known: she still gets every test at zero
    assert [t.name for t in by["carol"].tests] == ["test_a", "test_b", "test_gpu"]


def test_options_are_checked():
    with pytest.raises(ValueError, match="--jobs"):
        grade.GradeOptions(out=Path("x"), jobs=0)
    with pytest.raises(ValueError, match="--gpus"):
        grade.GradeOptions(out=Path("x"), miou="gpu")


def test_cli_help_is_fast_and_lists_commands():
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "autograder", "--help"], cwd=REPO, capture_output=True,
                         text=True, check=True).stdout
    assert time.perf_counter() - t0 < 5
    for cmd in ("release", "grade", "demo", "calibrate", "export-gradebook"):
        assert cmd in out
    code = "import sys, autograder.__main__; print('torch' in sys.modules, 'nbgrader' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                          check=True).stdout.split() == ["False", "False"]


def test_failure_result_keeps_rubric_and_scores_zero():
    tmpl = [TestResult("t1", "p", 3.0, 3.0, "passed"), TestResult("t2", "p", 0.0, 1.0, "not_run")]
    r = grade.failure_result("zed", "why not", tmpl)
    assert r.score == 0 and r.max_score == 3.0 and r.problems == ["why not"]
    assert [t.status for t in r.tests] == ["error", "not_run"]


def test_submission_hash_changes_with_content(tmp_path):
    p = write_notebook(tmp_path / "a" / "n.ipynb", "x")
    s = Submission("a", {"n": p})
    h = s.sha256()
    write_notebook(p, "y")
    assert s.sha256() != h
    assert reports.RESULTS_JSON == "results.json"

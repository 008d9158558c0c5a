"""Orchestration of a grading run, with fake runners injected by name (no real sandbox here).

The fake runners live in this module: the worker processes import it as ``test_grade``.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from autograder import grade, job, reports
from autograder.assignment import get_assignment
from autograder.bundle import Bundle
from autograder.job import GradeJob
from autograder.results import InlineAnswer, SubmissionResult, TestResult
from autograder.rubric import load_rubric
from autograder.settings import GradingSettings
from autograder.store import ResultsStore
from autograder.submissions import Submission, find_submissions

FCN_RUBRIC = get_assignment("fcn_segmentation").rubric

HERE = Path(__file__).resolve().parent
REPO = HERE.parent


# ----------------------------------------------------------------------------- fake runners

def _log(student: str) -> None:
    if path := os.environ.get("FAKE_RUNNER_LOG"):
        with open(path, "a") as f:
            f.write(f"{student} {os.getpid()}\n")


def _dask_worker_name() -> str:
    try:
        from distributed import get_worker

        return str(get_worker().name)
    except (ImportError, ValueError):
        return "this process"


def fake_runner(job: GradeJob) -> SubmissionResult:
    """Scores from the notebooks' text: 'wrong' loses part_a (with the bundle rubric's message for
    test_fcn32s_output_size); special students crash or sleep."""
    _log(job.student)
    if job.student == "raises":
        raise RuntimeError("runner blew up")
    again = graded(Path(os.environ.get("FAKE_RUNNER_LOG", "/nonexistent"))).count(job.student) > 1
    if job.student.startswith("slow") and not (again and os.environ.get("FAKE_RUNNER_SLOW_ONCE")):
        time.sleep(float(os.environ.get("FAKE_RUNNER_SLEEP", "2")))
    text = b"".join(job.notebooks.values()).decode()
    wrong = "wrong" in text
    message = load_rubric(job.bundle.rubric)["test_fcn32s_output_size"].message
    return SubmissionResult(
        student=job.student, assignment="fcn_segmentation",
        tests=[
            TestResult("test_a", "part_a", 0.0 if wrong else 3.0, 3.0, "failed" if wrong else "passed",
                       message if wrong else ""),
            TestResult("test_b", "part_b", 2.0, 2.0, "passed"),
            TestResult("test_gpu", "part_b", 0.0, 4.0, "not_run", "needs a GPU"),
        ],
        inline_answers=[InlineAnswer("q1", "Why?", f"answer of {job.student}", 2.0)],
        isolation=f"fake runner on {_dask_worker_name()}",
        device=str(job.device),
    )


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


def options(out: Path, miou: str = "none", **kw) -> grade.GradeOptions:
    kw.setdefault("jobs", 2)
    return grade.GradeOptions(out=out, settings=GradingSettings(miou=miou), runner="test_grade:fake_runner",
                              progress=False, pdf=False, **kw)


@pytest.fixture
def runner_log(tmp_path, monkeypatch):
    log = tmp_path / "runner.log"
    monkeypatch.setenv("FAKE_RUNNER_LOG", str(log))
    return log


def graded(log: Path) -> list[str]:
    return [line.split()[0] for line in log.read_text().splitlines()] if log.exists() else []


# ----------------------------------------------------------------------------- tests

def test_grader_failure_is_an_infrastructure_error_never_a_zero_and_is_retried(tmp_path, runner_log):
    root = make_students(tmp_path / "in", {"alice": "good", "bob": "wrong", "raises": "good"})
    out = tmp_path / "out"
    summary = grade.grade_all(find_submissions([root], tmp_path / "work"), options(out), log=lambda *a: None)

    assert sorted(summary.graded) == ["alice", "bob"] and summary.infrastructure == ["raises"]
    assert summary.failed == []
    by = {r.student: r for r in summary.results}
    assert (by["alice"].score, by["alice"].max_score) == (5.0, 5.0)
    assert (by["bob"].score, by["bob"].max_score) == (2.0, 5.0)
    r = by["raises"]
    assert "runner blew up" in r.infrastructure_error and r.max_score == 0
    assert all(t.status == "not_run" for t in r.tests)
    data = json.loads((out / "raises" / "results.json").read_text())
    assert "runner blew up" in data["extra_data"]["infrastructure_error"]
    # never up to date: the next run retries it, and only it
    s = grade.grade_all(find_submissions([root], tmp_path / "work"), options(out), log=lambda *a: None)
    assert sorted(s.skipped) == ["alice", "bob"] and s.infrastructure == ["raises"]
    assert graded(runner_log).count("raises") == 2 and graded(runner_log).count("alice") == 1


def test_pytest_process_dying_is_an_infrastructure_error(tmp_path, monkeypatch):
    """The real job: the hidden tests' process is the crash boundary."""
    monkeypatch.setattr(job, "pytest_command",
                        lambda cfg, bundle: [sys.executable, "-c", "import os; os._exit(7)"])
    nbs = {p.name: p.read_bytes() for p in sorted((REPO / "notebooks" / "fcn_segmentation").glob("*.ipynb"))}
    settings = GradingSettings(scratch_root=str(tmp_path / "scratch"))
    r = job.grade_job(GradeJob("zed", nbs, settings))
    assert "exit code 7" in r.infrastructure_error
    assert r.tests and all(t.status == "not_run" for t in r.tests) and r.max_score == 0
    assert not list((tmp_path / "scratch").glob("zed.*"))  # its scratch is gone


def test_a_sandbox_the_machine_cannot_give_is_an_infrastructure_error(tmp_path, monkeypatch):
    """The real job and hidden tests: a GPU job on a machine without that GPU's device file is the
    grading machine's failure (retried, never scored), not a zero for the student."""
    from autograder.sandbox import bwrap_works

    if not bwrap_works():
        pytest.skip("needs bubblewrap (the GPU device files are bound into its sandbox)")
    if Path("/dev/nvidia7").exists():
        pytest.skip("this machine has an eighth GPU")
    real = job.pytest_command
    monkeypatch.setattr(job, "pytest_command",  # one hidden test is enough to start the sandbox
                        lambda cfg, bundle: [*real(cfg, bundle), "-k", "test_fcn32s_layer_names"])
    nbs = {p.name: p.read_bytes() for p in sorted((REPO / "notebooks" / "fcn_segmentation").glob("*.ipynb"))}
    settings = GradingSettings(scratch_root=str(tmp_path / "scratch"))
    r = job.grade_job(GradeJob("gpuless", nbs, settings, device="cuda:7"))
    assert "not of your code" in r.infrastructure_error and "GPU" in r.infrastructure_error
    assert r.tests and all(t.status == "not_run" for t in r.tests) and r.max_score == 0


def test_stale_scratch_of_a_dead_grader_is_removed(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True).stdout.strip()
    stale = tmp_path / f"alice.slot0.{dead}.abc123"
    live = tmp_path / f"bob.slot1.{os.getpid()}.def456"
    for d in (stale, live):
        (d / "sandbox").mkdir(parents=True)
    assert job.clean_stale_scratch(tmp_path) == [stale]
    assert not stale.exists() and live.exists()


def test_sandbox_slots_are_distinct_across_holders(tmp_path):
    with job.sandbox_slot(tmp_path) as a, job.sandbox_slot(tmp_path) as b:
        assert a != b
    with job.sandbox_slot(tmp_path) as c:
        assert c == 0


def test_refused_submission_has_the_maximum_of_a_graded_one():
    bundle = Bundle.for_assignment("fcn_segmentation")
    rubric = load_rubric(bundle.rubric)
    tiers = job.tier_of_tests(bundle)
    assert tiers == {"test_fcn8s_miou_cpu": "cpu", "test_fcn8s_miou_gpu": "gpu"}
    for miou in ("none", "cpu", "gpu"):
        s = GradingSettings(miou=miou)
        refused = job.failure_result("x", "not a zip", job.rubric_tests(bundle, s))
        runs = [e for n, e in rubric.items() if tiers.get(n, miou) == miou]
        assert refused.score == 0 and refused.max_score == sum(e.points for e in runs) > 0
        assert refused.max_score < sum(e.points for e in rubric.values())


def test_every_request_timeout_fits_in_the_submission_budget():
    for miou in ("none", "cpu", "gpu"):
        s = GradingSettings(miou=miou)
        timeouts = s.request_timeouts()
        assert {"start", "describe", "forward", "loss_grad"} <= set(timeouts)
        assert max(timeouts.values()) <= s.submission_budget
    with pytest.raises(ValueError, match="forward"):
        GradingSettings(request_timeout=500, submission_budget=1200)


def test_settings_and_jobs_round_trip_as_plain_data():
    s = GradingSettings(miou="cpu", data_root="/d", threads=2)
    assert GradingSettings.from_dict(json.loads(json.dumps(s.to_dict()))) == s
    with pytest.raises(ValueError, match="unknown"):
        GradingSettings.from_dict({**s.to_dict(), "jobs": 3})
    j = GradeJob("a", {"x.ipynb": b"{}"}, s, Bundle.for_assignment("fcn_segmentation"))
    assert GradeJob.from_dict(j.to_dict()) == j
    inferred = GradeJob("b", {"upsampling_and_iou.ipynb": b"{}"}, s)  # no bundle: from the names
    assert inferred.bundle == j.bundle


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
           "--no-progress", "--no-pdf", "--runner", "test_grade:fake_runner"]
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


def test_gpu_tier_jobs_get_a_device_from_the_pool_and_others_none(tmp_path, runner_log):
    root = make_students(tmp_path / "in", {"alice": "good"})
    s = grade.grade_all(find_submissions([root], tmp_path / "w"), options(tmp_path / "o1", jobs=1),
                        log=lambda *a: None)
    assert s.results[0].device == "None"
    s = grade.grade_all(find_submissions([root], tmp_path / "w"),
                        options(tmp_path / "o2", jobs=1, gpus=[3], miou="gpu"), log=lambda *a: None)
    assert s.results[0].device == "cuda:3"


def test_regrading_follows_the_grader(tmp_path, runner_log):
    """An edited rubric message in a copy of the grader regrades everyone; an unchanged rerun no one."""
    copy = tmp_path / "grader"
    copy.mkdir()
    for name, path in Bundle.for_assignment("fcn_segmentation").members().items():
        (shutil.copytree if path.is_dir() else shutil.copyfile)(path, copy / name)
    root = make_students(tmp_path / "in", {"alice": "good", "bob": "wrong"})
    out = tmp_path / "out"
    opts = options(out, bundle=Bundle.from_dir(copy))
    s = grade.grade_all(find_submissions([root], tmp_path / "w"), opts, log=lambda *a: None)
    assert sorted(s.graded) == ["alice", "bob"]
    s = grade.grade_all(find_submissions([root], tmp_path / "w"), opts, log=lambda *a: None)
    assert s.graded == [] and sorted(s.skipped) == ["alice", "bob"]

    rubric = copy / "rubric.toml"
    old = load_rubric(rubric)["test_fcn32s_output_size"].message
    rubric.write_text(rubric.read_text().replace(old, "Check the crop offset (19) again."))
    s = grade.grade_all(find_submissions([root], tmp_path / "w"), opts, log=lambda *a: None)
    assert sorted(s.graded) == ["alice", "bob"] and s.skipped == []
    bob = ResultsStore(out).read("bob")[0]
    assert bob.tests[0].output == "Check the crop offset (19) again."
    # the thresholds are part of the grader too
    (copy / "thresholds.json").write_text((copy / "thresholds.json").read_text() + " ")
    s = grade.grade_all(find_submissions([root], tmp_path / "w"), opts, log=lambda *a: None)
    assert sorted(s.graded) == ["alice", "bob"]
    assert graded(runner_log).count("alice") == 3


def test_bad_zip_gets_a_zero_result_with_the_reason(tmp_path, runner_log):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "carol.zip").write_bytes(b"not a zip at all")
    make_students(tmp_path / "in", {"alice": "good"})
    subs = find_submissions([tmp_path / "in"], tmp_path / "w")
    s = grade.grade_all(subs, options(tmp_path / "out"), log=lambda *a: None)
    by = {r.student: r for r in s.results}
    assert "carol" in s.failed and "not a readable zip" in by["carol"].problems[0]
    assert graded(runner_log) == ["alice"]  # the runner never saw the bad zip
    # carol gets every rubric test that runs at this tier at zero
    assert [t.name for t in by["carol"].tests] == list(load_rubric(FCN_RUBRIC))
    assert by["carol"].score == 0 and not by["carol"].infrastructure_error


def test_options_are_checked():
    with pytest.raises(ValueError, match="--jobs"):
        grade.GradeOptions(out=Path("x"), jobs=0)
    with pytest.raises(ValueError, match="--gpus"):
        grade.GradeOptions(out=Path("x"), settings=GradingSettings(miou="gpu"))
    with pytest.raises(ValueError, match="--executor"):
        grade.GradeOptions(out=Path("x"), executor="slurm")


def test_cli_help_is_fast_and_lists_commands():
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "autograder", "--help"], cwd=REPO, capture_output=True,
                         text=True, check=True).stdout
    assert time.perf_counter() - t0 < 5
    for cmd in ("release", "grade", "demo", "calibrate", "export-gradebook", "worker", "cluster"):
        assert cmd in out
    code = ("import sys, autograder.__main__; autograder.__main__.build_parser(); "
            "print('torch' in sys.modules, 'nbgrader' in sys.modules, 'distributed' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                          check=True).stdout.split() == ["False", "False", "False"]


def test_tier_flag_has_two_spellings_and_one_setting():
    """``--tier`` (as ``calibrate --tier``) and its first name ``--miou`` set the same field."""
    from autograder.__main__ import build_parser

    parser = build_parser()
    for argv in (["grade", "s.zip", "--out", "o"], ["demo"]):
        assert parser.parse_args(argv).miou == "none"
        assert parser.parse_args([*argv, "--tier", "cpu"]).miou == "cpu"
        assert parser.parse_args([*argv, "--miou", "gpu"]).miou == "gpu"
        with pytest.raises(SystemExit):
            parser.parse_args([*argv, "--tier", "tpu"])


def test_failure_result_keeps_rubric_and_scores_zero():
    tmpl = [TestResult("t1", "p", 3.0, 3.0, "passed"), TestResult("t2", "p", 0.0, 1.0, "not_run")]
    r = job.failure_result("zed", "why not", tmpl)
    assert r.score == 0 and r.max_score == 3.0 and r.problems == ["why not"]
    assert [t.status for t in r.tests] == ["error", "not_run"]


def test_submission_hash_changes_with_content(tmp_path):
    p = write_notebook(tmp_path / "a" / "n.ipynb", "x")
    s = Submission("a", {"n": p})
    h = s.sha256()
    write_notebook(p, "y")
    assert s.sha256() != h
    assert reports.RESULTS_JSON == "results.json"


def test_fingerprint_changes_with_what_decides_a_grade_only():
    from autograder.fingerprint import fingerprint

    base = fingerprint("sub", "bundle", GradingSettings())
    assert fingerprint("sub", "bundle", GradingSettings(scratch_root="/elsewhere", keep_scratch=True)) == base
    for other in (fingerprint("sub2", "bundle", GradingSettings()),
                  fingerprint("sub", "bundle2", GradingSettings()),
                  fingerprint("sub", "bundle", GradingSettings(request_timeout=60)),
                  fingerprint("sub", "bundle", GradingSettings(miou="cpu")),
                  fingerprint("sub", "bundle", GradingSettings(), runner="x:y")):
        assert other != base

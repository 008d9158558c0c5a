"""One grading job: one submission in, one :class:`~autograder.results.SubmissionResult` out.

:func:`grade_job` is the whole grading of a submission, wherever it runs (a thread of the local
executor, a Dask worker on another machine). It writes nothing shared: only its own scratch folder
under ``settings.scratch_root``, removed afterwards. It

1. parses the submitted notebooks ONCE (integrity, inline answers, the answer cells by grade_id);
2. runs ``pytest <bundle>/hidden_tests`` in a fresh subprocess, the crash boundary: the pytest
   process starts the sandbox from the cells and settings written to its config, and writes the raw
   outcomes; whatever happens to it cannot take the caller down;
3. maps the outcomes through the bundle's rubric.

Results of three kinds come back: a graded result; a *refused* submission (unreadable zip, no
notebooks: every test that would have run at zero, with the reason); an *infrastructure error*
(the pytest process died or hung, the mIoU tier cannot run as calibrated here, the grader raised):
``infrastructure_error`` says why, every test is ``not_run``, and the coordinator never treats it as
a grade or as up to date.
"""

from __future__ import annotations

import fcntl
import importlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from autograder.assignment import Assignment, infer_assignment
from autograder.bundle import REPO, Bundle
from autograder.cgroups import pid_alive
from autograder.results import InfrastructureError, SubmissionResult, TestResult
from autograder.settings import PYTEST_GRACE_S, GradingSettings

#: Sandbox slots (distinct unprivileged uids) one machine hands out; jobs beyond this wait.
MAX_SLOTS = 64


@dataclass(frozen=True)
class GradeJob:
    """Everything needed to grade one submission, anywhere (it travels to remote workers whole).

    Attributes:
        student: the student id (a safe folder name).
        notebooks: ``{"fcn_segmentation.ipynb": bytes, ...}``: the submitted files themselves.
        settings: the run's :class:`GradingSettings`.
        bundle: where the assignment's grader (assignment.toml, hidden tests, rubric, notebooks,
            thresholds) is on the machine that runs the job; ``None``: the assignment whose notebooks
            ``notebooks`` names (:func:`autograder.assignment.infer_assignment`; raises
            ``AssignmentError`` when that is not exactly one).
        error: why the submission was refused before grading (bad zip, no notebook), or ``None``.
        device: ``"cuda:<i>"`` for a GPU-tier job, set by the executor that holds the GPU.
        runner: ``"module:function"`` replacing the hidden tests (the project's tests inject fakes
            with it); called as ``runner(job) -> SubmissionResult`` in the job's process.
        cpu_threads: the CPU threads this job may use where ``settings.threads`` is 0 (auto), set by
            the executor from the cores and the jobs running at once; ``None``: 1.
    """

    student: str
    notebooks: dict[str, bytes] = field(default_factory=dict)
    settings: GradingSettings = field(default_factory=GradingSettings)
    bundle: Bundle | None = None
    error: str | None = None
    device: str | None = None
    runner: str | None = None
    cpu_threads: int | None = None

    def __post_init__(self):
        if self.bundle is None:
            object.__setattr__(self, "bundle", Bundle.for_assignment(infer_assignment(self.notebooks)))

    def to_dict(self) -> dict:
        """Plain data (bytes stay bytes) for another process; the inverse of :meth:`from_dict`."""
        return {"student": self.student, "notebooks": dict(self.notebooks),
                "settings": self.settings.to_dict(), "bundle": dict(self.bundle.__dict__) if self.bundle else None,
                "error": self.error, "device": self.device, "runner": self.runner,
                "cpu_threads": self.cpu_threads}

    @classmethod
    def from_dict(cls, d: dict) -> GradeJob:
        return cls(**{**d, "settings": GradingSettings.from_dict(d["settings"]),
                      "bundle": Bundle(**d["bundle"]) if d.get("bundle") else None})


def load_callable(spec: str) -> Callable:
    """Import ``"package.module:function"``; raises ``ValueError`` naming ``spec`` if it is wrong."""
    module, _, name = spec.partition(":")
    if not module or not name:
        raise ValueError(f"expected 'module:function', got {spec!r}")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as e:
        raise ValueError(f"cannot load {spec!r}: {e}") from e


# ------------------------------------------------------------------------------ result builders


def rubric_tests(bundle: Bundle, settings: GradingSettings) -> list[TestResult]:
    """The rubric as zero-score tests: ``error`` where the test would run under ``settings``,
    ``not_run`` where it would not (the mIoU test of a tier not asked for), so that a refused
    submission's maximum equals a graded one's."""
    from autograder.rubric import load_rubric

    tier_tests = tier_of_tests(bundle)
    out = []
    for e in load_rubric(bundle.rubric).values():
        runs = tier_tests.get(e.name, settings.miou) == settings.miou
        out.append(TestResult(e.name, e.part, 0.0, e.points, "error" if runs else "not_run", "",
                              e.visibility))
    return out


def tier_of_tests(bundle: Bundle) -> dict[str, str]:
    """``{hidden test name: tier}`` for ``bundle``'s tests that run only at one trained-model tier
    (from its ``recipes.toml``; ``{}`` where it has none).

    Raises:
        autograder.recipes.RecipeError: an unreadable ``recipes.toml``.
    """
    from autograder.recipes import bundle_recipes

    return {r.test: r.tier for r in bundle_recipes(bundle).values() if r.test}


def failure_result(student: str, message: str, template: list[TestResult],
                   assignment: str = "") -> SubmissionResult:
    """A refused submission: every test of ``template`` that runs at zero (status ``error``)."""
    tests = [TestResult(t.name, t.part, 0.0, t.max_score,
                        "not_run" if t.status == "not_run" else "error",
                        f"Not graded: {message}", t.visibility) for t in template]
    return SubmissionResult(student=student, assignment=assignment, tests=tests,
                            isolation="not run (refused before the sandbox)", problems=[message])


def infrastructure_result(student: str, message: str, template: list[TestResult],
                          assignment: str = "") -> SubmissionResult:
    """The grader failed on its own: no test counts (``not_run``), ``infrastructure_error`` says why."""
    text = f"Not graded yet (the grader failed, not your code; it will be regraded): {message}"
    tests = [TestResult(t.name, t.part, 0.0, t.max_score, "not_run", text, t.visibility)
             for t in template]
    return SubmissionResult(student=student, assignment=assignment, tests=tests,
                            isolation="not run (infrastructure error)", problems=[text],
                            infrastructure_error=message)


# ------------------------------------------------------------------------------ scratch and slots


def clean_stale_scratch(root: str | os.PathLike) -> list[Path]:
    """Remove ``<root>/<student>.slot<N>.<pid>.*`` folders whose grader process is gone (a killed
    run's leftovers); returns what was removed."""
    removed = []
    for d in Path(root).glob("*.slot*.*.*"):
        parts = d.name.split(".")
        pids = [p for p in parts if p.isdigit()]
        if d.is_dir() and pids and not pid_alive(int(pids[0])):
            shutil.rmtree(d, ignore_errors=True)
            removed.append(d)
    return removed


@contextmanager
def sandbox_slot(root: str | os.PathLike) -> Iterator[int]:
    """A sandbox slot free on this machine (an ``flock`` on ``<root>/slots/<k>.lock``), so that jobs
    in different processes never share an unprivileged uid; released when the block ends or the
    process dies."""
    folder = Path(root) / "slots"
    folder.mkdir(parents=True, exist_ok=True)
    while True:
        for k in range(MAX_SLOTS):
            f = open(folder / f"{k}.lock", "w")  # noqa: SIM115 - held for the block
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                f.close()
                continue
            try:
                yield k
            finally:
                f.close()
            return
        time.sleep(0.5)


# ------------------------------------------------------------------------------ parsing


def parse_submission(notebooks: dict[str, Path], spec: Assignment):
    """Read the submitted notebooks of assignment ``spec`` once.

    Returns ``(cells, missing, problems, inline_answers)``: the cells to run in the sandbox
    (``[{"grade_id", "source"}]``, locked cells from the source notebooks), ``{grade_id: why it
    cannot be graded}``, submission-level problems, and the inline answers.
    """
    from autograder.notebook import (
        NotebookError,
        cells_by_grade_id,
        check_integrity,
        inline_answers,
        read_notebook,
    )
    from autograder.reference import locked_source

    cells, missing, problems, answers = [], {}, [], []
    for nb_name, gids in spec.reference_cells.items():
        path, sub_cells, why = notebooks.get(nb_name), {}, ""
        if path is None:
            why = f"{nb_name} is missing from the submission"
            problems.append(f"{why}; its tests score 0.")
        else:
            try:
                nb = read_notebook(path)
                sub_cells = cells_by_grade_id(nb)
                src = read_notebook(Path(spec.source_dir) / nb_name)
                problems += [f"{nb_name}: {p}" for p in check_integrity(nb, src)]
                answers += inline_answers(nb, src)
            except NotebookError as err:
                why = str(err)
                problems.append(f"{err} Its tests score 0.")
        for gid in gids:
            if gid in spec.locked_cells:
                cells.append({"grade_id": gid, "source": locked_source(gid, spec)})
            elif gid in sub_cells and isinstance(sub_cells[gid].source, str):
                cells.append({"grade_id": gid, "source": sub_cells[gid].source})
            else:
                missing[gid] = (f"cell '{gid}' could not be graded: "
                                + (why or f"it is missing from {nb_name} (deleted, or its grade_id "
                                          "changed); copy it back from the released notebook"))
    return cells, missing, problems, answers


# ------------------------------------------------------------------------------ the job


def _die_with_parent() -> None:
    """In the pytest child: get SIGKILL when the grading process dies (Linux), so nothing outlives a
    killed coordinator or Dask worker."""
    import ctypes
    import signal

    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def usable_cores() -> int:
    """CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def pytest_command(config_path: Path, bundle: Bundle) -> list[str]:
    """The hidden tests' command line (the crash boundary)."""
    return [sys.executable, "-m", "autograder.hidden_run", bundle.hidden_tests, "-q",
            "-p", "no:cacheprovider", "-p", "autograder.hidden_plugin",
            "--assert=plain", "-o", "addopts=", "--rootdir", str(REPO),
            "--submission-config", str(config_path)]


def grade_job(job: GradeJob) -> SubmissionResult:
    """Grade one submission (see the module docstring); never raises for a submission's fault.

    Returns:
        the graded, refused or infrastructure-error :class:`SubmissionResult` (``wall_s`` set).
    """
    from autograder.rubric import load_rubric

    t0 = time.monotonic()
    try:
        name = job.bundle.spec().name
        load_rubric(job.bundle.rubric)
    except Exception as err:  # noqa: BLE001 - a broken rubric is the grader's fault
        name = ""
        result = infrastructure_result(job.student, f"cannot read the assignment or its rubric: {err}", [])
    else:
        # The template (the rubric at zero) is built only for a result without outcomes: it imports
        # the mIoU recipes, hence torch, which a graded job's own process never needs otherwise
        # (about 2 s of CPU per Dask worker process).
        if job.error:
            result = failure_result(job.student, job.error, _template(job), name)
        else:
            try:
                result = _run(job)
            except InfrastructureError as err:
                result = infrastructure_result(job.student, str(err), _template(job), name)
            except Exception as err:  # noqa: BLE001 - the grader's own failure, never a zero
                tb = traceback.format_exception_only(type(err), err)[-1].strip()
                result = infrastructure_result(job.student, f"the grader failed: {tb}", _template(job), name)
    result.wall_s = round(time.monotonic() - t0, 2)
    return result


def _template(job: GradeJob) -> list[TestResult]:
    try:
        return rubric_tests(job.bundle, job.settings)
    except Exception:  # noqa: BLE001 - (read once already) the result still says why
        return []


def _run(job: GradeJob) -> SubmissionResult:
    if job.runner:
        result = load_callable(job.runner)(job)
        if not isinstance(result, SubmissionResult):
            raise TypeError(f"the runner returned {type(result).__name__}, not SubmissionResult")
        return result
    s = job.settings
    if s.miou != "none":  # (the recipes import torch: not needed without an mIoU tier)
        from autograder.recipes import check_tier_ready

        check_tier_ready(s, job.bundle)  # raises InfrastructureError: never grade against the wrong data
    root = Path(s.scratch_root)
    root.mkdir(parents=True, exist_ok=True)
    clean_stale_scratch(root)
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in job.student) or "student"
    with sandbox_slot(root) as slot:
        work = Path(tempfile.mkdtemp(prefix=f"{safe}.slot{slot}.{os.getpid()}.", dir=root))
        try:
            return _run_in(job, work, slot)
        finally:
            if not s.keep_scratch:
                shutil.rmtree(work, ignore_errors=True)


def _run_in(job: GradeJob, work: Path, slot: int) -> SubmissionResult:
    from autograder.rubric import load_rubric, to_result

    s = job.settings
    sub_dir = work / "submission"
    sub_dir.mkdir()
    paths = {}
    for name, data in job.notebooks.items():
        name = name if name.endswith(".ipynb") else f"{name}.ipynb"
        (sub_dir / Path(name).name).write_bytes(data)
        paths[name] = sub_dir / Path(name).name
    spec = job.bundle.spec()
    cells, missing, problems, answers = parse_submission(paths, spec)
    result = SubmissionResult(student=job.student, assignment=spec.name, problems=problems,
                              inline_answers=answers, device=job.device or "cpu")
    config = {"settings": s.to_dict(), "bundle": job.bundle.__dict__, "cells": cells,
              "threads": s.threads or job.cpu_threads or 1,
              "missing": missing, "slot": slot, "device": job.device,
              "scratch": str(work / "sandbox"), "cache_dir": str(Path(s.scratch_root) / "reference_cache"),
              "results": str(work / "outcomes.json")}
    cfg_path = work / "config.json"
    cfg_path.write_text(json.dumps(config, indent=1))
    env = dict(os.environ)
    # `--gpus` ids are PCI bus order (nvidia-smi's), as in the sandbox (autograder.gpus): the trusted
    # side's cuda:N must name the same GPU
    env["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"
    env["PYTHONPATH"] = os.pathsep.join([str(REPO)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    env.pop("PYTEST_ADDOPTS", None)
    env["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"  # the hidden tests need no third-party plugin
    log_path = work / "pytest.log"
    with open(log_path, "wb") as log:
        try:
            proc = subprocess.run(pytest_command(cfg_path, job.bundle), cwd=str(work), env=env,
                                  stdout=log, stderr=subprocess.STDOUT,
                                  preexec_fn=_die_with_parent, timeout=s.submission_budget + PYTEST_GRACE_S, check=False)
        except subprocess.TimeoutExpired:
            raise InfrastructureError(
                f"the hidden tests ran past {s.submission_budget + PYTEST_GRACE_S:g} s "
                "(the sandbox's budget plus the grader's own time)") from None
    try:
        extra = json.loads((work / "outcomes.json").read_text())
    except (OSError, ValueError):
        code = proc.returncode
        how = f"killed by signal {-code}" if code < 0 else f"exit code {code}"
        tail = log_path.read_text(errors="replace")[-1500:]
        raise InfrastructureError(f"the hidden tests' process ended without outcomes ({how}); "
                                  f"log tail:\n{tail}") from None
    if extra.get("infrastructure"):  # the sandbox could not be had on this machine
        raise InfrastructureError(extra["infrastructure"])
    outcomes = extra.get("outcomes", {})
    result.isolation = extra.get("isolation", "")
    result.problems += extra.get("events", [])
    result.tests = [to_result(e, outcomes.get(n)) for n, e in load_rubric(job.bundle.rubric).items()]
    return result

"""Grade many submissions: in parallel, one process each, resumably, writing every output.

``grade_all`` is what ``python -m autograder grade`` runs. For each submission it starts a fresh
worker process (``multiprocessing`` "spawn"), at most ``jobs`` at a time, which calls the runner
(``autograder.runner.grade_submission`` unless another is injected) and writes the student's
``results.json`` and ``feedback.html`` atomically. A submission never affects another:

* if the runner raises, the worker writes a result with every rubric test at zero and the error;
* if the worker dies (killed, ``os._exit``, out of memory) or runs past ``submission_timeout``,
  the parent writes that zero result with the exit code or the time limit as the reason.

Resuming: a student whose ``results.json`` holds the current submission's sha256 and the same
grading settings is skipped (unless ``force``). Results are written with temp file + rename, and
``grades.csv`` / ``inline_answers.html`` are regenerated from the per-student files at the end of
every run, so a killed run loses nothing it had finished and a rerun duplicates nothing.

GPUs: :class:`GpuPool` hands out device ids across processes. The runner receives
``RunnerConfig.gpu_lease`` (a :class:`GpuLease`) and enters ``with lease() as device:`` only around
GPU tests, so CPU tests never wait for a GPU.
"""

from __future__ import annotations

import contextlib
import importlib
import multiprocessing as mp
import os
import queue
import shutil
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

from autograder import analytics, reports
from autograder.results import SubmissionResult, TestResult
from autograder.submissions import ASSIGNMENT, Submission

DEFAULT_RUNNER = "autograder.runner:grade_submission"
MIOU_MODES = ("none", "cpu", "gpu")


@dataclass
class GradeOptions:
    """Settings of one grading run (the ``grade`` command's flags).

    Attributes:
        out: output folder.
        jobs: submissions graded at once (separate processes), >= 1.
        gpus: CUDA device ids for the GPU pool; empty = no GPU tests.
        force: regrade students whose results are up to date.
        miou: where the trained-model mIoU test runs: ``none``, ``cpu`` or ``gpu``.
        timeout: seconds per request to the sandboxed worker (the runner's ``request_timeout``),
            or ``None`` for its default.
        data_root: CMP Facade data for the mIoU tests (``None``: the runner finds it).
        submission_timeout: seconds for a whole submission before its process is killed.
        runner: ``"module:function"`` with the signature of ``autograder.runner.grade_submission``.
        config_factory: ``"module:function"`` building the runner's config from
            ``(options, gpu_lease, slot)``; ``None`` uses :func:`runner_config`.
        progress: show a tqdm progress bar.
        pdf: also print ``inline_answers.html`` to PDF (when Chromium is installed).
    """

    out: Path
    jobs: int = 1
    gpus: list[int] = field(default_factory=list)
    force: bool = False
    miou: str = "none"
    timeout: float | None = None
    data_root: Path | None = None
    submission_timeout: float = 1800.0
    runner: str = DEFAULT_RUNNER
    config_factory: str | None = None
    progress: bool = True
    pdf: bool = True

    def __post_init__(self):
        self.out = Path(self.out)
        if self.jobs < 1:
            raise ValueError(f"--jobs must be >= 1, got {self.jobs}")
        if self.miou not in MIOU_MODES:
            raise ValueError(f"--miou must be one of {MIOU_MODES}, got {self.miou!r}")
        if self.miou == "gpu" and not self.gpus:
            raise ValueError("--miou gpu needs GPUs: pass --gpus 0 (or several ids)")

    def settings(self) -> dict:
        """The settings that change a grade; a stored result with other settings is regraded."""
        return {"miou": self.miou, "timeout": self.timeout, "runner": self.runner,
                "data_root": str(self.data_root) if self.data_root else None}


# ----------------------------------------------------------------------------- GPU pool

class GpuLease:
    """A cross-process lease on one GPU of a :class:`GpuPool`.

    ``with lease() as device:`` blocks until a GPU is free and yields ``"cuda:<id>"``; the id goes
    back to the pool when the block ends, whatever happens inside it.
    """

    def __init__(self, device_queue):
        self._queue = device_queue

    @contextlib.contextmanager
    def __call__(self, timeout: float | None = None):
        device_id = self._queue.get(timeout=timeout)
        try:
            yield f"cuda:{device_id}"
        finally:
            self._queue.put(device_id)


class GpuPool:
    """A pool of CUDA device ids shared by the worker processes (a multiprocessing queue)."""

    def __init__(self, device_ids: list[int], ctx=None):
        ctx = ctx or mp.get_context("spawn")
        self.device_ids = list(device_ids)
        self._queue = ctx.Queue()
        for d in self.device_ids:
            self._queue.put(d)

    def lease(self) -> GpuLease | None:
        return GpuLease(self._queue) if self.device_ids else None


# ----------------------------------------------------------------------------- runner plumbing

def load_callable(spec: str) -> Callable:
    """Import ``"package.module:function"``; raises ``ValueError`` naming ``spec`` if it is wrong."""
    module, _, name = spec.partition(":")
    if not module or not name:
        raise ValueError(f"expected 'module:function', got {spec!r}")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as e:
        raise ValueError(f"cannot load {spec!r}: {e}") from e


def runner_config(options: GradeOptions, gpu_lease: GpuLease | None, slot: int):
    """``autograder.runner.RunnerConfig`` from the options; ``slot`` is distinct per parallel job."""
    from autograder.runner import RunnerConfig

    kw = {"miou_tier": options.miou, "gpu_lease": gpu_lease, "slot": slot}
    if options.timeout is not None:
        kw["request_timeout"] = options.timeout
    if options.data_root is not None:
        kw["data_root"] = Path(options.data_root)
    return RunnerConfig(**kw)


def rubric_tests() -> list[TestResult]:
    """The rubric (``autograder/rubric.toml``) as zero-score tests; ``[]`` if it cannot be read."""
    try:
        from autograder.rubric import load_rubric

        return [TestResult(e.name, e.part, 0.0, e.points, "error", "", e.visibility)
                for e in load_rubric().values()]
    except Exception:  # noqa: BLE001 - a failure result must still be written without it
        return []


def failure_result(student: str, message: str, template: list[TestResult],
                   assignment: str = ASSIGNMENT) -> SubmissionResult:
    """A result with every rubric test at zero (status ``error``) and ``message`` as the reason."""
    tests = [
        TestResult(name=t.name, part=t.part, score=0.0, max_score=t.max_score,
                   status="not_run" if t.status == "not_run" else "error",
                   output=f"Not graded: {message}", visibility=t.visibility)
        for t in template
    ]
    return SubmissionResult(student=student, assignment=assignment, tests=tests,
                            isolation="not run (grading failed before the sandbox)", problems=[message])


def _watch_parent(parent_pid: int) -> None:
    """Exit this worker when the grader that started it dies (so nothing outlives a killed run)."""
    def loop():
        while True:
            if os.getppid() != parent_pid:
                os._exit(3)
            time.sleep(0.5)

    threading.Thread(target=loop, daemon=True).start()


#: Exit code of a worker that wrote a zero result because the runner raised.
EXIT_RUNNER_FAILED = 2


def _worker(sub: Submission, options: GradeOptions, lease: GpuLease | None, slot: int, sha: str,
            run_id: str, parent_pid: int, template: list[TestResult]) -> None:
    """Body of one worker process: grade ``sub`` and write its outputs.

    Exits with 0 when the runner produced the result, :data:`EXIT_RUNNER_FAILED` when it raised
    (a zero result with the reason is written either way).
    """
    _watch_parent(parent_pid)
    student_dir = options.out / sub.student
    t0 = time.perf_counter()
    try:
        if sub.error:
            raise RuntimeError(sub.error)
        runner = load_callable(options.runner)
        factory = load_callable(options.config_factory) if options.config_factory else runner_config
        result = runner(sub.student, dict(sub.notebooks), factory(options, lease, slot))
        if not isinstance(result, SubmissionResult):
            raise TypeError(f"the runner returned {type(result).__name__}, not SubmissionResult")
    except BaseException as e:  # noqa: BLE001 - every submission gets a result
        if sub.error:
            message = sub.error
        else:
            tb = traceback.format_exception_only(type(e), e)[-1].strip()
            message = f"the grader failed on this submission: {tb}"
        result = failure_result(sub.student, message, template)
        result.wall_s = time.perf_counter() - t0
        result.intake = sub.intake()
        reports.write_student_outputs(result, student_dir, submission_sha256=sha,
                                      settings=options.settings(), run_id=run_id)
        sys.exit(EXIT_RUNNER_FAILED)
    result.intake = sub.intake()
    reports.write_student_outputs(result, student_dir, submission_sha256=sha,
                                  settings=options.settings(), run_id=run_id)


# ----------------------------------------------------------------------------- orchestration

@dataclass
class RunSummary:
    """What one run did: students graded now, skipped (up to date) and failed (zero result)."""

    graded: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    results: list[SubmissionResult] = field(default_factory=list)
    outputs: dict[str, str] = field(default_factory=dict)


def is_up_to_date(student_dir: Path, sha: str, settings: dict) -> bool:
    """True if ``student_dir/results.json`` was graded from this exact submission and settings."""
    path = student_dir / reports.RESULTS_JSON
    if not path.is_file():
        return False
    try:
        _, extra = reports.read_results_json(path)
    except ValueError:
        return False
    return extra.get("submission_sha256") == sha and extra.get("settings") == settings


def _copy_submission(sub: Submission, student_dir: Path) -> None:
    """Keep the graded notebooks next to the result (``<student>/submission/``) for formgrader."""
    dest = student_dir / "submission"
    tmp = student_dir / ".submission.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for name, path in sub.notebooks.items():
        shutil.copyfile(path, tmp / f"{name}.ipynb")
    shutil.rmtree(dest, ignore_errors=True)
    tmp.rename(dest)


def _run_one(ctx, sub: Submission, options: GradeOptions, pool: GpuPool, slots: queue.Queue, sha: str,
             run_id: str, template: list[TestResult]) -> tuple[SubmissionResult, bool]:
    """Grade ``sub`` in its own process; returns ``(result, ok)`` where ``ok`` is False on a crash."""
    student_dir = options.out / sub.student
    student_dir.mkdir(parents=True, exist_ok=True)
    if sub.notebooks:
        _copy_submission(sub, student_dir)
    slot = slots.get()  # one sandbox slot per concurrent job (the runner maps it to a uid)
    try:
        proc = ctx.Process(target=_worker, name=f"grade-{sub.student}", daemon=False,
                           args=(sub, options, pool.lease(), slot, sha, run_id, os.getpid(), template))
        t0 = time.perf_counter()
        proc.start()
        proc.join(options.submission_timeout)
        reason = None
        if proc.is_alive():
            proc.kill()
            proc.join()
            reason = f"grading took longer than {options.submission_timeout:g} s and was stopped"
        elif proc.exitcode not in (0, EXIT_RUNNER_FAILED):
            code = proc.exitcode
            how = f"killed by signal {-code}" if code < 0 else f"exit code {code}"
            reason = f"the grading process died ({how})"
    finally:
        slots.put(slot)
    path = student_dir / reports.RESULTS_JSON
    if reason is None:
        try:
            result, extra = reports.read_results_json(path)
            if extra.get("run_id") == run_id:
                return result, proc.exitcode == 0
            reason = "the grading process ended without writing a result"
        except ValueError as e:
            reason = f"the grading process ended without a readable result ({e})"
    result = failure_result(sub.student, reason, template)
    result.wall_s = time.perf_counter() - t0
    result.intake = sub.intake()
    reports.write_student_outputs(result, student_dir, submission_sha256=sha,
                                  settings=options.settings(), run_id=run_id)
    return result, False


def grade_all(submissions: list[Submission], options: GradeOptions, log=print) -> RunSummary:
    """Grade ``submissions`` into ``options.out`` (see the module docstring); returns a summary.

    The class reports (``grades.csv``, ``inline_answers.html``/``.pdf``) are regenerated at the
    end from every ``<out>/<student>/results.json``, including students of earlier runs.
    """
    from tqdm import tqdm

    out = options.out
    out.mkdir(parents=True, exist_ok=True)
    run_id = uuid.uuid4().hex
    summary = RunSummary()
    settings = options.settings()
    todo = []
    for sub in submissions:
        sha = sub.sha256()
        if not options.force and is_up_to_date(out / sub.student, sha, settings):
            summary.skipped.append(sub.student)
        else:
            todo.append((sub, sha))
    if summary.skipped:
        log(f"skipping {len(summary.skipped)} up-to-date result(s) (use --force to regrade): "
            + ", ".join(summary.skipped))

    # The zero-result template for crashed workers: the rubric (for the real runner), else the tests
    # of an earlier result, else those of the first result of this run (filled in at the end).
    template = rubric_tests() if options.runner == DEFAULT_RUNNER else []
    if not template:
        for p in sorted(out.glob(f"*/{reports.RESULTS_JSON}")):
            with contextlib.suppress(ValueError):
                template = reports.read_results_json(p)[0].tests
                if template:
                    break

    template = list(template)  # shared with the threads: filled by the first result with tests
    untested: list = []
    shas = {sub.student: sha for sub, sha in todo}
    slots: queue.Queue = queue.Queue()
    for i in range(options.jobs):
        slots.put(i)
    ctx = mp.get_context("spawn")
    pool = GpuPool(options.gpus, ctx)
    bar = tqdm(total=len(todo), unit="submission", disable=not options.progress or not todo,
               file=sys.stderr, dynamic_ncols=True)
    try:
        with ThreadPoolExecutor(max_workers=options.jobs) as ex:
            futures = {ex.submit(_run_one, ctx, sub, options, pool, slots, sha, run_id, template): sub
                       for sub, sha in todo}
            for fut in as_completed(futures):
                sub = futures[fut]
                result, ok = fut.result()
                (summary.graded if ok else summary.failed).append(sub.student)
                if not template and result.tests:
                    template[:] = result.tests
                if not result.tests:
                    untested.append((sub, shas[sub.student], result))
                bar.update(1)
                bar.set_postfix(done=len(summary.graded), failed=len(summary.failed),
                                left=len(todo) - len(summary.graded) - len(summary.failed))
        # A worker that failed before any rubric was known: give it the rubric's zero tests now.
        for sub, sha, result in untested:
            if template:
                fixed = failure_result(sub.student, "; ".join(result.problems) or "not graded", template)
                fixed.wall_s = result.wall_s
                fixed.intake = result.intake
                reports.write_student_outputs(fixed, out / sub.student, submission_sha256=sha,
                                              settings=settings, run_id=run_id)
    finally:
        bar.close()
        summary.outputs = reports.write_class_reports(out, pdf=options.pdf)
        summary.outputs.update(analytics.analytics_step(out))  # analytics.html: never raises
    summary.results = reports.load_all_results(out)
    return summary

"""Grade many submissions: the coordinator of a run (``python -m autograder grade``).

:func:`grade_all` turns each :class:`~autograder.submissions.Submission` into a
:class:`~autograder.job.GradeJob` (its notebooks' bytes, the run's one
:class:`~autograder.settings.GradingSettings`, the grader bundle), skips the students whose stored
result has the same fingerprint (:mod:`autograder.fingerprint`: submission, hidden tests, rubric,
source notebooks, thresholds, kit version, settings) unless ``force``, hands the rest to an executor
(:mod:`autograder.executors`: local threads or Dask), and stores each result as it arrives
(:class:`~autograder.store.ResultsStore`, atomic writes). Jobs write nothing shared; only this
process writes outputs, so a killed run loses nothing it had stored and a rerun resumes.

An infrastructure error (the grader failed, not the submission) is stored for the record but is
never a grade and never up to date: it is listed in the summary and regraded by the next run.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

from autograder import analytics, reports
from autograder.bundle import Bundle
from autograder.executors import EXECUTORS, DaskExecutor, LocalExecutor
from autograder.fingerprint import fingerprint
from autograder.job import GradeJob
from autograder.results import InfrastructureError, SubmissionResult
from autograder.settings import GradingSettings
from autograder.store import ResultsStore
from autograder.submissions import Submission


class GradingRefused(ValueError):
    """The run cannot grade as asked (e.g. the mIoU tier cannot run as calibrated); says why."""


@dataclass
class GradeOptions:
    """How one run is carried out (the ``grade`` command's flags besides the grading settings).

    Attributes:
        out: output folder.
        settings: the :class:`GradingSettings` every job gets.
        jobs: submissions graded at once (local threads, or LocalCluster workers), >= 1.
        gpus: CUDA device ids of the local GPU pool; ``--miou gpu`` with the local executor needs one.
        force: regrade students whose results are up to date.
        executor: ``"local"`` or ``"dask"``.
        scheduler: the Dask scheduler's address; ``None`` with ``dask`` starts a LocalCluster.
        bundle: the grader bundle (``None``: this repository's bundle of the one assignment the
            submitted notebooks name, :func:`autograder.assignment.infer_assignment`).
        runner: ``"module:function"`` replacing the hidden tests (the project's tests only).
        progress: show a tqdm progress bar.
        pdf: also print ``inline_answers.html`` to PDF (when Chromium is installed).

    Raises:
        ValueError: bad ``jobs``, ``executor``, or ``--miou gpu`` locally without GPUs.
    """

    out: Path
    settings: GradingSettings = field(default_factory=GradingSettings)
    jobs: int = 1
    gpus: list[int] = field(default_factory=list)
    force: bool = False
    executor: str = "local"
    scheduler: str | None = None
    bundle: Bundle | None = None
    runner: str | None = None
    progress: bool = True
    pdf: bool = True

    def __post_init__(self):
        self.out = Path(self.out)
        if self.jobs < 1:
            raise ValueError(f"--jobs must be >= 1, got {self.jobs}")
        if self.executor not in EXECUTORS:
            raise ValueError(f"--executor must be one of {EXECUTORS}, got {self.executor!r}")
        if self.settings.miou == "gpu" and self.executor == "local" and not self.gpus:
            raise ValueError("--miou gpu needs GPUs: pass --gpus 0 (or several ids)")


@dataclass
class RunSummary:
    """What one run did.

    Attributes:
        graded: students graded now. failed: refused submissions (a zero with the reason).
        skipped: up to date. infrastructure: the grader failed on them (not graded; the next run
        retries). results: every stored result (this run's and the up-to-date ones), by student.
        outputs: ``{name: path or message}`` of the class reports.
    """

    graded: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    infrastructure: list[str] = field(default_factory=list)
    results: list[SubmissionResult] = field(default_factory=list)
    outputs: dict[str, str] = field(default_factory=dict)


def _notebooks(sub: Submission) -> dict[str, bytes]:
    return {f"{name}.ipynb": Path(path).read_bytes() for name, path in sub.notebooks.items()}


def preflight(options: GradeOptions, bundle: Bundle) -> None:
    """Refuse a run that cannot grade as calibrated: a recipe without a threshold, changed since its
    calibration or too long for the budget (always), missing weights or data differing from the
    calibration's (checked here for the local executor or a LocalCluster; remote workers check
    those in each job).

    Raises:
        GradingRefused: why, and what to do.
    """
    if options.runner or options.settings.miou == "none":
        return
    from autograder.recipes import check_tier_ready, graded_recipes

    try:
        if options.scheduler:
            graded_recipes(options.settings, bundle)
        else:
            check_tier_ready(options.settings, bundle)
    except InfrastructureError as err:
        raise GradingRefused(str(err)) from None


def grade_all(submissions: list[Submission], options: GradeOptions, log=print) -> RunSummary:
    """Grade ``submissions`` into ``options.out`` (see the module docstring); returns a summary.

    Raises:
        GradingRefused: the run cannot grade as asked (nothing is graded then).
    """
    from tqdm import tqdm

    bundle = options.bundle
    if bundle is None:
        from autograder.assignment import AssignmentError, infer_assignment

        try:
            bundle = Bundle.for_assignment(infer_assignment({n for s in submissions for n in s.notebooks}))
        except AssignmentError as err:
            raise GradingRefused(str(err)) from None
    preflight(options, bundle)
    store = ResultsStore(options.out)
    options.out.mkdir(parents=True, exist_ok=True)
    digest = bundle.digest()
    summary = RunSummary()
    todo, meta, intake = [], {}, {}
    for sub in submissions:
        intake[sub.student] = sub.intake()
        sha = sub.sha256()
        fp = fingerprint(sha, digest, options.settings, options.runner)
        if not options.force and store.is_up_to_date(sub.student, fp):
            summary.skipped.append(sub.student)
            continue
        nbs = _notebooks(sub) if not sub.error else {}
        job = GradeJob(sub.student, nbs, options.settings, bundle, error=sub.error, runner=options.runner)
        todo.append(job)
        meta[sub.student] = (sha, fp)
    if summary.skipped:
        log(f"skipping {len(summary.skipped)} up-to-date result(s) (use --force to regrade): "
            + ", ".join(summary.skipped))
    if options.executor == "dask":
        executor = DaskExecutor(options.scheduler, options.jobs, bundle)
    else:
        executor = LocalExecutor(options.jobs, options.gpus)
    bar = tqdm(total=len(todo), unit="submission", disable=not options.progress or not todo,
               file=sys.stderr, dynamic_ncols=True)
    try:
        for job, result in executor.run(todo):
            sha, fp = meta[job.student]
            result.intake = intake[job.student]
            store.write(result, fingerprint=fp, submission_sha256=sha, notebooks=job.notebooks)
            if result.infrastructure_error:
                summary.infrastructure.append(job.student)
            elif job.error:
                summary.failed.append(job.student)
            else:
                summary.graded.append(job.student)
            bar.update(1)
    finally:
        bar.close()
        summary.outputs = reports.write_class_reports(options.out, pdf=options.pdf)
        summary.outputs.update(analytics.analytics_step(options.out))  # analytics.html: never raises
    summary.results = store.load_all()
    return summary


def print_summary(summary: RunSummary, log=print) -> None:
    """The score table, then what was done and where every output is."""
    log("")
    log(reports.score_table([r for r in summary.results if not r.infrastructure_error]))
    log("")
    log(f"graded now: {len(summary.graded)}, refused (zero with the reason): {len(summary.failed)}, "
        f"skipped (up to date): {len(summary.skipped)}, "
        f"infrastructure errors (not graded; rerun to retry): {len(summary.infrastructure)}")
    by = {r.student: r for r in summary.results}
    for student in summary.infrastructure:
        log(f"  infrastructure error, {student}: {by[student].infrastructure_error.splitlines()[0]}"
            if student in by else f"  infrastructure error, {student}")
    for line in reports.intake_summary(summary.results):
        log(line)
    for key, value in summary.outputs.items():
        log(f"{key:>18}: {value}")
    if summary.results:
        log(f"{'per student':>18}: <out>/<student>/results.json, feedback.html")

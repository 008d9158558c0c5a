"""``python -m autograder``: the instructor's commands.

    release           build the nbgrader course folder and the student bundles (autograder.release);
                      --assignment NAME for one, else every assignment into one course
    grade             grade submissions into an output folder (autograder.grade); the assignment
                      is inferred from the notebooks' names, or --assignment NAME
    demo              release, make sample submissions, grade them, print the scores (per assignment)
    new               scaffold an assignment package: notebook, rubric, hidden test (autograder.scaffold)
    calibrate         measure reference timings and thresholds (autograder.calibrate)
    export-gradebook  write grades into an nbgrader gradebook (autograder.gradebook)
    feedback          re-render every student's feedback for a release state (e.g. --published)
    export-canvas     write a Canvas gradebook CSV from a roster (autograder.canvas)
    analytics         class analytics page from graded results (autograder.analytics)
    gradescope        write Gradescope's autograder.zip (autograder.gradescope)
    doctor            check isolation, limits, GPUs, data and weights here (autograder.doctor)
    worker            start a Dask grading worker on this machine (autograder.cluster)
    cluster           start Dask grading workers through a batch system (autograder.cluster)

Heavy modules (torch, nbgrader, the runner) are imported only by the command that needs them,
so ``--help`` is instant.
"""

from __future__ import annotations

import argparse
import sys


def _gpus(text: str) -> list[int]:
    try:
        ids = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--gpus takes comma-separated device ids like 0,1, got {text!r}")
    if any(i < 0 for i in ids) or len(set(ids)) != len(ids):
        raise argparse.ArgumentTypeError(f"--gpus: ids must be distinct and >= 0, got {text!r}")
    return ids


def _positive_int(text: str) -> int:
    n = int(text)
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {n}")
    return n


def add_grade_arguments(p: argparse.ArgumentParser) -> None:
    """The ``grade`` flags (shared with the demo's)."""
    from autograder.settings import GradingSettings  # light: no torch

    d = GradingSettings()
    p.add_argument("--jobs", type=_positive_int, default=1,
                   help="submissions graded at once (threads, or LocalCluster workers)")
    p.add_argument("--gpus", type=_gpus, default=[], help="CUDA device ids for GPU tests, e.g. 0,1")
    p.add_argument("--force", action="store_true", help="regrade students whose results are up to date")
    p.add_argument("--tier", "--miou", dest="miou", choices=("none", "cpu", "gpu"), default=d.miou,
                   help="the trained-model tests (FCN's mIoU, transfer_learning's probe): none (default), "
                        "cpu (short CPU training) or gpu; as calibrate --tier (--miou: its first name)")
    p.add_argument("--timeout", type=float, default=d.request_timeout, metavar="S",
                   help=f"seconds per request to the sandboxed code (default {d.request_timeout:g})")
    p.add_argument("--data-root", default=d.data_root, metavar="DIR",
                   help="CMP Facade data for the mIoU tests (default: $CMP_FACADE_ROOT, then the usual places)")
    p.add_argument("--submission-timeout", type=float, default=d.submission_budget, metavar="S",
                   help=f"seconds of sandbox time per submission (default {d.submission_budget:g})")
    p.add_argument("--executor", choices=("local", "dask"), default="local",
                   help="local threads (default) or Dask (with --scheduler, or a LocalCluster here)")
    p.add_argument("--scheduler", default=None, metavar="ADDR",
                   help="Dask scheduler address, e.g. tcp://head:8786 (with --executor dask)")
    p.add_argument("--assignment", default=None, metavar="NAME",
                   help="the assignment graded (default: inferred from the submitted notebooks' names)")
    p.add_argument("--grader", default=None, metavar="DIR",
                   help="a grader bundle folder (assignment.toml, hidden_tests/, rubric.toml, notebooks/, "
                        "thresholds.json) instead of this repository's")
    p.add_argument("--course", default=None, metavar="DIR",
                   help="the released nbgrader course whose check-cell points must equal the rubric's "
                        "(default: build/course when it holds the assignment; 'none' skips the check)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--no-pdf", action="store_true", help="do not print inline_answers.html to PDF")
    add_intake_arguments(p)
    p.add_argument("--runner", default=None, help=argparse.SUPPRESS)  # tests inject a fake runner


def _fraction(text: str) -> float:
    """``10%`` or ``0.1`` -> 0.1."""
    t = text.strip()
    try:
        return float(t[:-1]) / 100 if t.endswith("%") else float(t)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a fraction like 0.1 or a percentage like 10%, got {text!r}")


def add_intake_arguments(p: argparse.ArgumentParser) -> None:
    """The ``grade`` flags for resubmissions, the late policy and the release state (autograder.policy)."""
    from autograder.policy import UNITS
    from autograder.submissions import KEEP_RULES

    g = p.add_argument_group("resubmissions, late work, release (see autograder/policy.py)")
    g.add_argument("--keep", choices=KEEP_RULES, default=KEEP_RULES[0],
                   help="which of a student's several hand-ins is graded, by submission time "
                        "(default latest; error: stop as before)")
    g.add_argument("--late-policy", default=None, metavar="FILE.toml",
                   help="late policy file: due, per, penalty, cap, grace_minutes, basis, [extensions]")
    g.add_argument("--due", default=None, metavar="ISO", help="due date, e.g. 2026-12-01T23:59:00+01:00")
    g.add_argument("--late-penalty", type=_fraction, default=None, metavar="F",
                   help="fraction lost per day/hour late, e.g. 10%% or 0.1")
    g.add_argument("--late-per", choices=tuple(UNITS), default=None, help="unit of the penalty (default day)")
    g.add_argument("--late-cap", type=_fraction, default=None, metavar="F", help="largest fraction lost")
    g.add_argument("--extensions", default=None, metavar="FILE",
                   help="per-student extensions: CSV (student, due or hours) or TOML")
    g.add_argument("--published", action="store_true",
                   help="grades are published: students' feedback.html shows after_published tests")


def late_policy(args: argparse.Namespace):
    """The run's :class:`autograder.policy.LatePolicy` from the flags (raises PolicyError)."""
    from autograder.policy import load_policy

    overrides = {"due": args.due, "penalty": args.late_penalty, "per": args.late_per, "cap": args.late_cap}
    return load_policy(args.late_policy, overrides=overrides, extensions=args.extensions)


def assess_lateness(subs, policy) -> None:
    """Set each submission's ``late`` verdict; file modification times never count as evidence."""
    from autograder.submissions import TIME_SOURCES

    for sub in subs:
        if policy.active or sub.lms.get("late"):
            trusted = sub.time_source in TIME_SOURCES[:3]
            sub.late = policy.assess(sub.student, sub.submitted_at if trusted else None,
                                     sub.time_source if trusted else "", bool(sub.lms.get("late")))


def grade_options(args: argparse.Namespace, out, bundle=None):
    from autograder.grade import GradeOptions
    from autograder.settings import GradingSettings

    data_root = str(args.data_root) if args.data_root else None
    settings = GradingSettings(request_timeout=args.timeout, submission_budget=args.submission_timeout,
                               miou=args.miou, data_root=data_root)
    return GradeOptions(out=out, settings=settings, jobs=args.jobs, gpus=args.gpus, force=args.force,
                        executor=args.executor, scheduler=args.scheduler, bundle=bundle,
                        runner=args.runner, progress=not args.no_progress, pdf=not args.no_pdf)


def choose_bundle(args: argparse.Namespace, subs, log=print):
    """The grader bundle of the run: ``--grader``, else ``--assignment``, else the one assignment the
    submitted notebooks name (said on the console).

    Raises:
        autograder.assignment.AssignmentError: unknown, or not exactly one assignment inferred.
    """
    from autograder.assignment import infer_assignment
    from autograder.bundle import Bundle

    if args.grader:
        return Bundle.from_dir(args.grader)
    if args.assignment:
        return Bundle.for_assignment(args.assignment)
    names = {n for sub in subs for n in sub.notebooks}
    name = infer_assignment(names)
    log(f"assignment: {name} (inferred from the submitted notebooks; --assignment NAME to choose)")
    return Bundle.for_assignment(name)


def check_course_points(course: str | None, spec) -> None:
    """Refuse when the released course's check-cell points disagree with ``spec``'s rubric
    (``course`` ``None``: ``build/course`` when it holds the assignment; ``"none"``: no check).

    Raises:
        autograder.points.PointsError: they disagree.
    """
    from pathlib import Path

    from autograder.bundle import REPO
    from autograder.points import verify_course

    if course == "none":
        return
    folder = Path(course) if course else REPO / "build" / "course"
    if course or (folder / "source" / spec.name).is_dir():
        verify_course(folder, spec)


def cmd_grade(args: argparse.Namespace) -> int:
    """Exit 0 when every submission has a grade, 1 after infrastructure errors (rerun to retry),
    2 when the run was refused (bad flags, no submissions, an mIoU tier that cannot run as
    calibrated, check-cell points that disagree with the rubric)."""
    from pathlib import Path

    from autograder import reports
    from autograder.grade import GradingRefused, grade_all, print_summary
    from autograder.submissions import SubmissionError, duplicates_report, find_submissions

    out = Path(args.out)
    try:
        policy = late_policy(args)
        subs = find_submissions(args.submissions, out / ".work", assignment=args.assignment, keep=args.keep)
        bundle = choose_bundle(args, subs)
        check_course_points(args.course, bundle.spec())
        options = grade_options(args, out, bundle)
    except (SubmissionError, ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    assess_lateness(subs, policy)
    print(f"grading {len(subs)} submission(s) of {bundle.spec().name} from {', '.join(map(str, args.submissions))} "
          f"into {out} with {args.jobs} job(s), executor {args.executor}; late policy: {policy.describe()}")
    for line in duplicates_report(subs):
        print(f"resubmitted: {line}")
    try:
        summary = grade_all(subs, options)
    except GradingRefused as e:
        print(f"error: nothing graded: {e}", file=sys.stderr)
        return 2
    # every student's feedback (earlier runs' too) for this release state and the current time
    reports.rewrite_feedback(out, published=args.published)
    print_summary(summary)
    print(f"{'feedback':>18}: <student>/feedback.html is the student version "
          f"({'published' if args.published else 'before publication: non-visible tests withheld'}); "
          "feedback_instructor.html shows everything")
    return 1 if summary.infrastructure else 0


def cmd_feedback(args: argparse.Namespace) -> int:
    from autograder import reports

    try:
        n = reports.rewrite_feedback(args.results, published=args.published)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    state = "published" if args.published else "before publication"
    print(f"re-rendered the feedback of {n} student(s) in {args.results} ({state})")
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    from autograder.cluster import run_worker

    return run_worker(args.scheduler, gpu=args.gpu, cpu_slots=args.cpu_slots, check_only=args.check_only)


def cmd_cluster(args: argparse.Namespace) -> int:
    from autograder.cluster import cmd_slurm

    return cmd_slurm(args)


def cmd_export_gradebook(args: argparse.Namespace) -> int:
    from autograder.gradebook import export_gradebook

    try:
        n = export_gradebook(args.results, args.course, assignment=args.assignment,
                             copy_notebooks=not args.no_notebooks, published=args.published)
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {n} student(s) into the gradebook of {args.course}")
    return 0


def cmd_export_canvas(args: argparse.Namespace) -> int:
    from autograder.canvas import export_canvas

    try:
        export, problems = export_canvas(args.results, args.roster, args.out, args.assignment_column,
                                         args.id_column)
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {args.out}: {export.matched} student(s) matched the roster")
    for row in export.problems:
        print(f"  {row[0]}: {row[1]} {row[2]} {row[3]}".rstrip())
    print(f"problems ({len(export.problems)}): {problems}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from autograder.assignment import AssignmentError
    from autograder.demo import run_demo

    try:
        return run_demo(out=args.out, jobs=args.jobs, miou=args.miou, timeout=args.timeout,
                        progress=not args.no_progress, assignment=args.assignment)
    except AssignmentError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


def cmd_doctor(args: argparse.Namespace) -> int:
    from autograder.doctor import run_doctor

    return 0 if run_doctor(args.gpus, need_data=args.need_data, need_weights=args.need_weights) else 1


def _delegate(module: str, argv: list[str]) -> int:
    import importlib

    return importlib.import_module(module).main(argv) or 0


#: Commands that own their flags: ``{command: module under autograder}``.
DELEGATED = {"release": "release", "calibrate": "calibrate", "analytics": "analytics",
             "gradescope": "gradescope", "new": "scaffold"}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m autograder", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    sub.add_parser("release", help="build the nbgrader course folder and student bundle", add_help=False)
    sub.add_parser("calibrate", help="measure reference timings and thresholds", add_help=False)
    sub.add_parser("analytics", help="class analytics page (analytics.html) from graded results", add_help=False)
    sub.add_parser("gradescope", help="write Gradescope's autograder.zip", add_help=False)
    sub.add_parser("new", help="scaffold a new assignment package (notebook, rubric, hidden test)",
                   add_help=False)

    g = sub.add_parser("grade", help="grade submissions", description=(
        "Grade nbgrader submitted/<student>/<assignment>/ folders, <student>/ folders of notebooks, "
        "or submission zips; writes grades.csv, <student>/results.json (Gradescope format), "
        "<student>/feedback.html and inline_answers.html into --out."))
    g.add_argument("submissions", nargs="+", help="folders or .zip files")
    g.add_argument("--out", required=True, help="output folder")
    add_grade_arguments(g)
    g.set_defaults(func=cmd_grade)

    d = sub.add_parser("demo", help="for each assignment (or --assignment NAME): release, make sample "
                           "submissions, grade them, print the scores")
    d.add_argument("--out", default="grading_out/demo", help="output folder (default: grading_out/demo)")
    d.add_argument("--jobs", type=_positive_int, default=2)
    d.add_argument("--tier", "--miou", dest="miou", choices=("none", "cpu", "gpu"), default="none",
                   help="trained-model tier, as for grade (default none)")
    d.add_argument("--timeout", type=float, default=30.0, metavar="S",
                   help="seconds per request to the sandboxed code (default 30: the broken student's "
                        "infinite loop is stopped after this)")
    d.add_argument("--no-progress", action="store_true")
    d.add_argument("--assignment", default=None, metavar="NAME",
                   help="demo one assignment (default: every assignment, one after the other)")
    d.set_defaults(func=cmd_demo)

    e = sub.add_parser("export-gradebook", help="write graded results into an nbgrader gradebook")
    e.add_argument("--results", required=True, help="the grade command's --out folder")
    e.add_argument("--course", required=True, help="the nbgrader course folder (holds gradebook.db)")
    e.add_argument("--assignment", default=None,
                   help="the assignment to export (default: the one the results name)")
    e.add_argument("--no-notebooks", action="store_true",
                   help="do not copy the graded notebooks into <course>/autograded/")
    e.add_argument("--published", action="store_true",
                   help="grades are published: the comments students see include after_published tests")
    e.set_defaults(func=cmd_export_gradebook)

    f = sub.add_parser("feedback", help="re-render every student's feedback.html for a release state")
    f.add_argument("--results", required=True, help="the grade command's --out folder")
    f.add_argument("--published", action="store_true",
                   help="grades are published: show after_published tests (hidden ones stay aggregated)")
    f.set_defaults(func=cmd_feedback)

    from autograder import canvas  # light: csv and the results model only

    c = sub.add_parser("export-canvas", help="write a Canvas gradebook CSV from a roster CSV")
    c.add_argument("--results", required=True, help="the grade command's --out folder")
    c.add_argument("--roster", required=True,
                   help="CSV with Student and --id-column (Canvas's gradebook export works)")
    c.add_argument("--out", required=True, help="the Canvas CSV to write (problems go next to it)")
    c.add_argument("--assignment-column", default=canvas.DEFAULT_ASSIGNMENT_COLUMN,
                   help="Canvas column header; 'Name (id)' updates an existing Canvas assignment")
    c.add_argument("--id-column", default=canvas.DEFAULT_ID_COLUMN,
                   help="roster column holding the grader's student ids (default: %(default)s)")
    c.set_defaults(func=cmd_export_canvas)

    dr = sub.add_parser("doctor", help="check isolation, limits, GPUs, data and weights; exit 1 if unusable")
    dr.add_argument("--gpus", type=_gpus, default=[], help="GPU ids to check inside a CUDA sandbox, e.g. 0,1")
    dr.add_argument("--need-data", action="store_true", help="fail when the CMP Facade data is not found")
    dr.add_argument("--need-weights", action="store_true", help="fail when the VGG-16 weights are not found")
    dr.set_defaults(func=cmd_doctor)

    w = sub.add_parser("worker", help="start a Dask grading worker here (after a self-check)")
    w.add_argument("--scheduler", default=None, metavar="ADDR",
                   help="e.g. tcp://head:8786 (needed unless --check-only)")
    res = w.add_mutually_exclusive_group()
    res.add_argument("--gpu", type=int, default=None, metavar="I",
                     help="serve GPU-tier jobs on CUDA device I (resource GPU=1)")
    res.add_argument("--cpu-slots", type=_positive_int, default=1, metavar="K",
                     help="serve K CPU jobs at once (resource CPU=K; default 1)")
    w.add_argument("--check-only", action="store_true", help="run the self-check and exit")
    w.set_defaults(func=cmd_worker)

    cl = sub.add_parser("cluster", help="start grading workers through a batch system (dask-jobqueue)")
    csub = cl.add_subparsers(dest="system", required=True)
    sl = csub.add_parser("slurm", help="SLURM: submit worker jobs, or print their job script")
    from autograder.cluster import add_slurm_arguments

    add_slurm_arguments(sl)
    cl.set_defaults(func=cmd_cluster)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # these commands own their flags: hand them everything after the command name.
    if argv and argv[0] in DELEGATED:
        return _delegate(f"autograder.{DELEGATED[argv[0]]}", argv[1:])
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())

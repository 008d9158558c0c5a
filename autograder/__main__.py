"""``python -m autograder``: the instructor's commands.

    release           build the nbgrader course folder and the student bundle (autograder.release)
    grade             grade submissions into an output folder (autograder.grade)
    demo              release, make three sample submissions, grade them, print the scores
    calibrate         measure reference timings and thresholds (autograder.calibrate)
    export-gradebook  write grades into an nbgrader gradebook (autograder.gradebook)
    doctor            check isolation, limits, GPUs, data and weights here (autograder.doctor)

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
    p.add_argument("--jobs", type=_positive_int, default=1, help="submissions graded at once (processes)")
    p.add_argument("--gpus", type=_gpus, default=[], help="CUDA device ids for GPU tests, e.g. 0,1")
    p.add_argument("--force", action="store_true", help="regrade students whose results are up to date")
    p.add_argument("--miou", choices=("none", "cpu", "gpu"), default="none",
                   help="trained-model mIoU test: none (default), cpu (short CPU training) or gpu")
    p.add_argument("--timeout", type=float, default=None, metavar="S",
                   help="seconds per request to the sandboxed code (default: the runner's, 120)")
    p.add_argument("--data-root", default=None, metavar="DIR",
                   help="CMP Facade data for the mIoU tests (default: $CMP_FACADE_ROOT, then the usual places)")
    p.add_argument("--submission-timeout", type=float, default=1800.0, metavar="S",
                   help="seconds for a whole submission before it is stopped (default 1800)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--no-pdf", action="store_true", help="do not print inline_answers.html to PDF")
    p.add_argument("--runner", default=None, help=argparse.SUPPRESS)  # tests inject a fake runner
    p.add_argument("--runner-config", default=None, help=argparse.SUPPRESS)


def grade_options(args: argparse.Namespace, out):
    from autograder.grade import DEFAULT_RUNNER, GradeOptions

    return GradeOptions(out=out, jobs=args.jobs, gpus=args.gpus, force=args.force, miou=args.miou,
                        timeout=args.timeout, data_root=args.data_root, submission_timeout=args.submission_timeout,
                        runner=args.runner or DEFAULT_RUNNER, config_factory=args.runner_config,
                        progress=not args.no_progress, pdf=not args.no_pdf)


def print_summary(summary, log=print) -> None:
    """The score table, then where every output is."""
    from autograder import reports

    log("")
    log(reports.score_table(summary.results))
    log("")
    log(f"graded now: {len(summary.graded)}, failed (zero result with a reason): {len(summary.failed)}, "
        f"skipped (up to date): {len(summary.skipped)}")
    for key, value in summary.outputs.items():
        log(f"{key:>18}: {value}")
    if summary.results:
        log(f"{'per student':>18}: <out>/<student>/results.json, feedback.html")


def cmd_grade(args: argparse.Namespace) -> int:
    from pathlib import Path

    from autograder.grade import grade_all
    from autograder.submissions import SubmissionError, find_submissions

    out = Path(args.out)
    try:
        options = grade_options(args, out)
        subs = find_submissions(args.submissions, out / ".work")
    except (SubmissionError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"grading {len(subs)} submission(s) from {', '.join(map(str, args.submissions))} "
          f"into {out} with {args.jobs} job(s)")
    summary = grade_all(subs, options)
    print_summary(summary)
    return 0


def cmd_export_gradebook(args: argparse.Namespace) -> int:
    from autograder.gradebook import export_gradebook

    try:
        n = export_gradebook(args.results, args.course, assignment=args.assignment,
                             copy_notebooks=not args.no_notebooks)
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {n} student(s) into the gradebook of {args.course}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from autograder.demo import run_demo

    return run_demo(out=args.out, jobs=args.jobs, miou=args.miou, timeout=args.timeout,
                    progress=not args.no_progress)


def cmd_doctor(args: argparse.Namespace) -> int:
    from autograder.doctor import run_doctor

    return 0 if run_doctor(args.gpus, need_data=args.need_data, need_weights=args.need_weights) else 1


def _delegate(module: str, argv: list[str]) -> int:
    import importlib

    return importlib.import_module(module).main(argv) or 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m autograder", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    sub.add_parser("release", help="build the nbgrader course folder and student bundle", add_help=False)
    sub.add_parser("calibrate", help="measure reference timings and thresholds", add_help=False)

    g = sub.add_parser("grade", help="grade submissions", description=(
        "Grade nbgrader submitted/<student>/<assignment>/ folders, <student>/ folders of notebooks, "
        "or submission zips; writes grades.csv, <student>/results.json (Gradescope format), "
        "<student>/feedback.html and inline_answers.html into --out."))
    g.add_argument("submissions", nargs="+", help="folders or .zip files")
    g.add_argument("--out", required=True, help="output folder")
    add_grade_arguments(g)
    g.set_defaults(func=cmd_grade)

    d = sub.add_parser("demo", help="release, make 3 sample submissions, grade them, print the scores")
    d.add_argument("--out", default="grading_out/demo", help="output folder (default: grading_out/demo)")
    d.add_argument("--jobs", type=_positive_int, default=2)
    d.add_argument("--miou", choices=("none", "cpu", "gpu"), default="none")
    d.add_argument("--timeout", type=float, default=30.0, metavar="S",
                   help="seconds per request to the sandboxed code (default 30: the broken student's "
                        "infinite loop is stopped after this)")
    d.add_argument("--no-progress", action="store_true")
    d.set_defaults(func=cmd_demo)

    e = sub.add_parser("export-gradebook", help="write graded results into an nbgrader gradebook")
    e.add_argument("--results", required=True, help="the grade command's --out folder")
    e.add_argument("--course", required=True, help="the nbgrader course folder (holds gradebook.db)")
    e.add_argument("--assignment", default="fcn_segmentation")
    e.add_argument("--no-notebooks", action="store_true",
                   help="do not copy the graded notebooks into <course>/autograded/")
    e.set_defaults(func=cmd_export_gradebook)

    dr = sub.add_parser("doctor", help="check isolation, limits, GPUs, data and weights; exit 1 if unusable")
    dr.add_argument("--gpus", type=_gpus, default=[], help="GPU ids to check inside a CUDA sandbox, e.g. 0,1")
    dr.add_argument("--need-data", action="store_true", help="fail when the CMP Facade data is not found")
    dr.add_argument("--need-weights", action="store_true", help="fail when the VGG-16 weights are not found")
    dr.set_defaults(func=cmd_doctor)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # release and calibrate own their flags: hand them everything after the command name.
    if argv and argv[0] in ("release", "calibrate"):
        return _delegate(f"autograder.{argv[0]}", argv[1:])
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())

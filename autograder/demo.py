"""``python -m autograder demo [--assignment NAME]``: the whole instructor loop on made-up students.

Per assignment (default: every one, into ``OUT/<name>/``):

1. builds the release (:func:`autograder.release.release`) into ``OUT/release`` (one course);
2. writes the demo students' submissions from the release notebooks, as a student's notebook would
   look: the assignment's own ``demo.py`` names them (FCN: ``reference``, ``partly_wrong`` and
   ``broken``, see ``autograder/assignments/fcn_segmentation/demo.py``), else ``reference`` and
   ``unanswered`` (:class:`GenericStudents`);
3. packs each with :func:`assignment_lib.submit.pack` into ``OUT/<name>/submissions/<student>.zip``
   (the notebooks are filled in but never executed, to keep the demo short, so each zip records
   submit's "not run" problems as a ``--force`` hand-in, and the summary lists every demo student
   under ``handed in with submit --force``);
4. grades them with ``--jobs 2`` on the real data (``CMP_FACADE_ROOT``, else
   ``../shared/datasets/cmp_facade`` next to the repository, else the bundled sample) and prints
   the score table and where every output is.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def demo_data_root() -> Path:
    """``$CMP_FACADE_ROOT``, else ``<repo>/../shared/datasets/cmp_facade`` if present, else the sample."""
    if env := os.environ.get("CMP_FACADE_ROOT"):
        return Path(env)
    shared = REPO.parent / "shared" / "datasets" / "cmp_facade"
    return shared if (shared / "base").is_dir() else REPO / "datasets" / "sample"


def solution(source_cell: str) -> str:
    """The source cell without nbgrader's solution markers (what a student would have written)."""
    return "\n".join(line for line in source_cell.splitlines()
                     if line.strip() not in ("### BEGIN SOLUTION", "### END SOLUTION"))


def bug(text: str, old: str, new: str, what: str) -> str:
    """``text`` with ``old`` replaced by ``new``; raises RuntimeError when ``old`` is gone."""
    if old not in text:
        raise RuntimeError(f"demo: cannot inject the {what} bug: {old!r} is not in the solution any more")
    return text.replace(old, new)


class GenericStudents:
    """The demo students of an assignment without its own ``demo.py``: ``reference`` (the source
    notebooks' solutions) and ``unanswered`` (the release's stubs left in place)."""

    STUDENTS = ("reference", "unanswered")

    @staticmethod
    def student_cells(student: str, solutions: dict[str, str]) -> dict[str, str]:
        return {gid: solution(src) for gid, src in solutions.items()} if student == "reference" else {}

    @staticmethod
    def inline_text(student: str, grade_id: str) -> str:
        return f"{student}'s answer to {grade_id}: (demo text)."


def students_of(assignment):
    """The module (or :class:`GenericStudents`) giving ``STUDENTS``, ``student_cells`` and
    ``inline_text`` for ``assignment``: ``autograder.assignments.<name>.demo`` when it exists."""
    import importlib

    try:
        return importlib.import_module(f"autograder.assignments.{assignment.name}.demo")
    except ModuleNotFoundError as err:
        if err.name != f"autograder.assignments.{assignment.name}.demo":
            raise
        return GenericStudents


def make_submissions(release_dir: Path, assignment, expected_path: Path, out: Path) -> list[Path]:
    """Write ``out/<student>/*.ipynb`` and ``out/<student>.zip`` for each demo student of
    ``assignment`` (an :class:`~autograder.assignment.Assignment`, see :func:`students_of`);
    return the zips."""
    import nbformat

    from assignment_lib import submit
    from autograder import reference

    solutions = {gid: reference.cell_source(gid, assignment) for gid in assignment.answer_cells}
    expected = submit.load_expected(expected_path)
    kind = students_of(assignment)
    zips = []
    for student in kind.STUDENTS:
        folder = out / student
        folder.mkdir(parents=True, exist_ok=True)
        cells = kind.student_cells(student, solutions)
        for rel in sorted(release_dir.glob("*.ipynb")):
            nb = nbformat.read(rel, as_version=4)
            for cell in nb.cells:
                meta = cell.metadata.get("nbgrader", {})
                gid = meta.get("grade_id")
                if meta.get("solution") and cell.cell_type == "code" and gid in cells:
                    cell.source = cells[gid]
                elif meta.get("solution") and cell.cell_type == "markdown":
                    cell.source = kind.inline_text(student, gid)
            nbformat.write(nb, folder / rel.name)
        problems = submit.check_folder(folder, expected)
        zips.append(submit.pack(folder, out / f"{student}.zip", student, expected, problems, forced=bool(problems)))
    return zips


def run_demo(out: str | Path = "grading_out/demo", jobs: int = 2, miou: str = "none", timeout: float | None = 30.0,
             progress: bool = True, log=print, assignment: str | None = None) -> int:
    """Release, make the demo submissions, grade them, print the scores, for ``assignment`` (default:
    every assignment, one after the other, into ``OUT/<name>/``); returns 0 (an exit code).

    Raises:
        autograder.assignment.AssignmentError: an unknown ``assignment``.
    """
    from autograder.assignment import all_assignments, get_assignment

    specs = [get_assignment(assignment)] if assignment else all_assignments()
    t0 = time.perf_counter()
    out = Path(out).resolve()
    for spec in specs:
        demo_one(spec, out, jobs=jobs, miou=miou, timeout=timeout, progress=progress, log=log)
    log(f"demo: done in {time.perf_counter() - t0:.0f} s")
    return 0


def demo_one(spec, out: Path, *, jobs: int, miou: str, timeout: float | None, progress: bool, log=print):
    """The demo of one assignment: release into ``out/release`` (the shared course), submissions into
    ``out/<name>/submissions``, grades into ``out/<name>/graded``."""
    from autograder import release as release_mod
    from autograder.bundle import Bundle
    from autograder.grade import GradeOptions, grade_all, print_summary
    from autograder.points import verify_course
    from autograder.settings import GradingSettings
    from autograder.submissions import find_submissions

    log(f"demo {spec.name}: building the release into {out / 'release'}")
    paths = release_mod.release(out / "release", spec)
    verify_course(paths.course, spec)  # as `grade` does: the released points are the rubric's
    here = out / spec.name
    zips = make_submissions(paths.release, spec, paths.expected_cells, here / "submissions")
    data_root = demo_data_root()
    log(f"demo {spec.name}: {len(zips)} submissions in {here / 'submissions'} (filled in, not executed: "
        f"packed as submit --force hand-ins); grading with --jobs {jobs} on {data_root}")
    subs = find_submissions(zips, here / "graded" / ".work")
    settings = GradingSettings(miou=miou, data_root=str(data_root),
                               **({} if timeout is None else {"request_timeout": timeout}))
    options = GradeOptions(out=here / "graded", settings=settings, jobs=jobs, force=True, progress=progress,
                           bundle=Bundle.for_assignment(spec.name))
    summary = grade_all(subs, options, log=log)
    print_summary(summary, log=log)
    log(f"{'release':>18}: {paths.course} (nbgrader course), {paths.zip} (student zip)")
    log(f"{'submissions':>18}: {here / 'submissions'}")

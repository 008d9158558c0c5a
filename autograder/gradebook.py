"""Write this grader's scores into an nbgrader gradebook, for formgrader.

``python -m autograder export-gradebook --results DIR --course COURSE_DIR``.

The course folder is the one :mod:`autograder.release` builds (``nbgrader generate_assignment``
has created the assignment, its notebooks and grade cells in ``gradebook.db``). For every
``DIR/<student>/results.json``:

* the student and the submission are created (``Gradebook.update_or_create_student``,
  ``Gradebook.add_submission``; an existing submission is reused);
* each rubric part ``P`` goes to the check cell of the answer cell ``P`` (the mapping of
  :mod:`autograder.points`: the first autograded test cell after it): ``Grade.auto_score`` = the
  part's points, ``needs_manual_grade`` = False, and the cell's ``max_score`` is set to the part's
  total in ``rubric.toml`` (:func:`autograder.points.part_points`), which is also the ``points``
  the release wrote into the check cell; a course released with other points is refused
  (:func:`autograder.points.verify_course`), so plain ``nbgrader autograde`` and this export agree
  on the maxima;
* the per-test verdicts and messages become the ``auto_comment`` of the answer cell ``P``. nbgrader
  returns these comments to students (``nbgrader generate_feedback``), so they follow the same
  visibility rules as the student ``feedback.html`` (:func:`autograder.reports.student_view`):
  before publication only the tests students may see, plus a count of the withheld ones;
  ``published=True`` adds the ``after_published`` tests, and ``hidden`` ones stay an aggregate;
* the submission time goes to ``SubmittedAssignment.timestamp`` and the late policy's penalty to
  the notebooks' ``late_submission_penalty`` (split over the notebooks by their points), so that
  nbgrader's own totals and ``nbgrader export`` agree with ``grades.csv``'s ``final``;
* the inline-answer (manual) cells are left alone for formgrader;
* the graded notebooks (``DIR/<student>/submission/*.ipynb``) are copied to
  ``COURSE_DIR/autograded/<student>/<assignment>/`` so that formgrader can show them.

A part with no check cell (e.g. ``training``) is reported, not silently dropped.
Nbgrader API: https://nbgrader.readthedocs.io/en/stable/api/gradebook.html
"""

from __future__ import annotations

import re
import shutil
import warnings
from pathlib import Path

from autograder import reports
from autograder.assignment import AssignmentError, get_assignment
from autograder.points import check_cells, part_points, verify_course
from autograder.results import SubmissionResult


def course_id_of(course: Path) -> str:
    """The ``CourseDirectory.course_id`` set in ``course/nbgrader_config.py`` (else nbgrader's default)."""
    cfg = course / "nbgrader_config.py"
    if cfg.is_file():
        m = re.search(r"course_id\s*=\s*['\"]([^'\"]+)['\"]", cfg.read_text(encoding="utf-8"))
        if m:
            return m.group(1)
    return "default_course"


def _comment(result: SubmissionResult, part: str, published: bool = False) -> str:
    """The student-safe comment for one part (see the module docstring)."""
    view = reports.student_view(result, published)
    lines = [f"Autograder ({result.isolation or 'isolation unknown'}):"]
    for t in view["tests"]:
        if t.part != part:
            continue
        pts = "not run" if t.status == "not_run" else f"{reports.fmt(t.score)}/{reports.fmt(t.max_score)}"
        lines.append(f"- {t.name}: {reports.STATUS_WORDS[t.status]} ({pts})")
        if t.output and t.status != "passed":
            lines += [f"    {line}" for line in t.output.splitlines()]
    others = [t for t in result.tests
              if t.part == part and t not in view["tests"] and t.status != "not_run"]
    if others:
        possible = sum(t.max_score for t in others)
        if published:
            got = sum(t.score for t in others)
            lines.append(f"- other tests ({len(others)}): {reports.fmt(got)}/{reports.fmt(possible)}")
        else:
            lines.append(f"- {len(others)} more test(s) worth {reports.fmt(possible)} point(s): "
                         "shown when grades are published")
    return "\n".join(lines)


def _late_into_gradebook(gb, result: SubmissionResult, assignment: str, nb_parts: dict[str, list[str]]) -> None:
    """Submission time and late penalty of ``result`` into nbgrader's submission and notebooks."""
    from autograder.policy import parse_time

    intake = result.intake or {}
    sub = gb.find_submission(assignment, result.student)
    if intake.get("submitted_at"):
        sub.timestamp = parse_time(intake["submitted_at"]).replace(tzinfo=None)  # nbgrader: naive UTC
    penalty = reports.late_penalty(result)
    parts = result.part_scores()
    nb_score = {nb: sum(parts.get(p, (0.0, 0.0))[0] for p in ps) for nb, ps in nb_parts.items()}
    total = sum(nb_score.values())
    for nb in sub.notebooks:
        share = nb_score.get(nb.name, 0.0) / total if total else 0.0
        nb.late_submission_penalty = round(penalty * share, 4) if penalty else None


def export_gradebook(results_dir: str | Path, course: str | Path, assignment: str | None = None,
                     copy_notebooks: bool = True, log=print, published: bool = False) -> int:
    """Write every result under ``results_dir`` into ``course/gradebook.db``; returns the student count.

    ``assignment``: default the one assignment the results name. ``published``: the release state
    for the comments students see (module docstring).

    Raises:
        FileNotFoundError: no ``gradebook.db`` in ``course`` (run ``python -m autograder release``).
        ValueError: the assignment is not in the gradebook, the results name several assignments
            (pass one), or there are no results.
        autograder.points.PointsError: the course's check-cell points disagree with the rubric.
    """
    from nbgrader.api import Gradebook, MissingEntry

    results_dir, course = Path(results_dir), Path(course)
    db = course / "gradebook.db"
    if not db.is_file():
        raise FileNotFoundError(f"{db} does not exist: build the course with `python -m autograder release`")
    results = reports.load_all_results(results_dir)
    if not results:
        raise ValueError(f"{results_dir}: no <student>/results.json to export")

    if assignment is None:
        named = sorted({r.assignment for r in results if r.assignment})
        if len(named) != 1:
            raise ValueError(f"{results_dir}: the results name {named or 'no assignment'}: pass --assignment")
        assignment = named[0]
    results = [r for r in results if r.assignment in (assignment, "")]
    try:
        spec = get_assignment(assignment)
    except AssignmentError as err:
        raise ValueError(str(err)) from None
    verify_course(course, spec)  # one source of points: refuse a course released before a rubric edit

    # The check cells' max_score: the rubric's total per part (= the cells' points in the notebooks);
    # a part the rubric does not know keeps the largest maximum it had in the results.
    totals = part_points(spec.rubric)
    part_max: dict[str, float] = {}
    for r in results:
        for part, (_, m) in r.part_scores().items():
            part_max[part] = totals.get(part, max(part_max.get(part, 0.0), m))

    with warnings.catch_warnings(), Gradebook(f"sqlite:///{db.resolve()}", course_id=course_id_of(course)) as gb:
        # nbgrader's own add_submission builds the submission's relationships before adding it to its
        # session, and SQLAlchemy 2 warns about that ("... not in session, add operation along
        # 'Student.submissions' will not proceed"); the rows are written all the same (the round-trip
        # test reads them back), so only that message is silenced.
        warnings.filterwarnings("ignore", message=r".* not in session, add operation along .*")
        try:
            asg = gb.find_assignment(assignment)
        except MissingEntry:
            raise ValueError(f"{db}: no assignment {assignment!r}; run `nbgrader generate_assignment "
                             f"{assignment}` in {course}") from None
        source = course / "source" / assignment
        pairs = check_cells(spec, source if source.is_dir() else spec.source_dir)
        known = {(nb.name, gc.name) for nb in asg.notebooks for gc in nb.grade_cells}
        cell_of: dict[str, tuple[str, str]] = {}  # part -> (notebook, grade cell)
        for part, (file, cell) in pairs.items():
            key = (Path(file).stem, cell.metadata["nbgrader"]["grade_id"])
            if key in known:
                cell_of[part] = key
        answer_of: dict[str, tuple[str, str]] = {}  # part -> (notebook, solution cell)
        for nb in asg.notebooks:
            for sc in nb.solution_cells:
                answer_of[sc.name] = (nb.name, sc.name)
        unmapped = sorted(set(part_max) - set(cell_of))
        if unmapped:
            log(f"note: part(s) {', '.join(unmapped)} have no check cell in the gradebook; "
                "their points are in grades.csv only")
        for part, (nb_name, cell) in cell_of.items():
            if part in part_max:
                gb.update_or_create_grade_cell(cell, nb_name, assignment, max_score=part_max[part])

        for r in results:
            gb.update_or_create_student(r.student)
            try:
                gb.find_submission(assignment, r.student)
            except MissingEntry:
                gb.add_submission(assignment, r.student)
            parts = r.part_scores()
            for part, (nb_name, cell) in cell_of.items():
                if part not in parts:
                    continue
                grade = gb.find_grade(cell, nb_name, assignment, r.student)
                grade.auto_score = parts[part][0]
                grade.needs_manual_grade = grade.manual_score is not None
                if part in answer_of:
                    a_nb, a_cell = answer_of[part]
                    gb.find_comment(a_cell, a_nb, assignment, r.student).auto_comment = _comment(
                        r, part, published)
            nb_parts: dict[str, list[str]] = {}
            for part, (nb_name, _) in cell_of.items():
                nb_parts.setdefault(nb_name, []).append(part)
            _late_into_gradebook(gb, r, assignment, nb_parts)
            gb.db.commit()
            if copy_notebooks:
                src = results_dir / r.student / "submission"
                if src.is_dir():
                    dest = course / "autograded" / r.student / assignment
                    dest.mkdir(parents=True, exist_ok=True)
                    for nb_file in src.glob("*.ipynb"):
                        shutil.copyfile(nb_file, dest / nb_file.name)
    return len(results)

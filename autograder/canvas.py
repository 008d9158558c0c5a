"""A Canvas gradebook CSV from the grader's results and a roster: ``python -m autograder export-canvas``.

Canvas imports a CSV whose first columns are ``Student, ID, SIS User ID, SIS Login ID, Section``
followed by one column per assignment, with an optional second row ``Points Possible`` (what
Canvas's own gradebook export writes; Canvas guide "How do I import grades in the Gradebook?").
The roster is any CSV with at least the ``Student`` column and the column that holds the grader's
student ids (``--id-column``, default ``SIS Login ID``); a gradebook exported from Canvas is one.
Its ``Points Possible`` row, if any, is skipped; other columns are ignored.

Nobody is dropped silently:

* a roster entry with no graded submission gets an empty cell (Canvas leaves the grade as it is)
  and a line ``no submission`` (or ``no id``, for a row without an id) in the problems file;
* a graded student that no roster row names is not in the Canvas CSV (Canvas could not match it)
  and gets a line ``not in the roster`` with the score in the problems file;
* a result whose grading failed before the sandbox ran (its isolation says ``not run``) keeps its
  score in the CSV and gets a line ``check by hand`` with the reason.

Scores are after the late penalty (:func:`autograder.reports.final_score`, as ``grades.csv``'s
``final``): apply lateness here or in Canvas's own late policy, not both.

The problems file is ``<out stem>_problems.csv`` next to the Canvas CSV, with the columns
``problem, student, canvas_name, score, detail``.
"""

from __future__ import annotations

import csv
import io
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from autograder import reports
from autograder.results import SubmissionResult, atomic_write_text

#: The identity columns of a Canvas gradebook CSV, in Canvas's order.
CANVAS_COLUMNS = ("Student", "ID", "SIS User ID", "SIS Login ID", "Section")
#: First cell of Canvas's second row (Canvas writes it with four leading spaces).
POINTS_POSSIBLE = "    Points Possible"
DEFAULT_ID_COLUMN = "SIS Login ID"
DEFAULT_ASSIGNMENT_COLUMN = "FCN segmentation"
PROBLEM_COLUMNS = ("problem", "student", "canvas_name", "score", "detail")
NO_SUBMISSION = "on the roster but no graded result; the Canvas cell is left empty"
NO_ID = "this roster row has no id to match (a Canvas test student?); the Canvas cell is left empty"
NOT_IN_ROSTER = "graded but no roster row has this id; add it to the roster or enter the grade by hand"


class RosterError(ValueError):
    """The roster CSV cannot be used (the message names the file and what to fix)."""


@dataclass(frozen=True)
class RosterEntry:
    """One Canvas user: the five identity columns, and ``key``, the grader's student id."""

    key: str
    student: str
    canvas_id: str = ""
    sis_user_id: str = ""
    sis_login_id: str = ""
    section: str = ""

    def cells(self) -> list[str]:
        return [self.student, self.canvas_id, self.sis_user_id, self.sis_login_id, self.section]


@dataclass
class CanvasExport:
    """What :func:`canvas_gradebook` built.

    Attributes:
        csv_text: the Canvas CSV (header, ``Points Possible`` row, one row per roster entry).
        problems: rows ``(problem, student, canvas_name, score, detail)`` for the problems file.
        matched: number of roster entries that got a score.
    """

    csv_text: str
    problems: list[tuple[str, str, str, str, str]] = field(default_factory=list)
    matched: int = 0

    def problems_csv(self) -> str:
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(PROBLEM_COLUMNS)
        w.writerows(self.problems)
        return buf.getvalue()


def _norm(key: str) -> str:
    return key.strip().casefold()


def read_roster(path: str | Path, id_column: str = DEFAULT_ID_COLUMN) -> list[RosterEntry]:
    """Read a roster CSV (UTF-8, with or without BOM) into :class:`RosterEntry` rows, file order.

    Args:
        path: the roster CSV; ``Student`` and ``id_column`` are required, the other Canvas
            columns are copied when present.
        id_column: the column that holds the ids the grader knows the students by (folder names,
            ``assignment_lib.submit --student`` ids).

    Raises:
        RosterError: unreadable file, a missing column, or two rows with the same id. A row
            with an empty id is kept (its Canvas cell stays empty and it is listed as a problem).
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise RosterError(f"{path}: cannot read the roster ({e}); save it as UTF-8 CSV") from None
    rows = csv.DictReader(io.StringIO(text))
    columns = [c.strip() for c in rows.fieldnames or []]
    for need in ("Student", id_column):
        if need not in columns:
            raise RosterError(f"{path}: the roster has no {need!r} column (it has {columns}); "
                              "use Canvas's gradebook export or pass --id-column")
    entries, seen = [], {}
    for line, raw in enumerate(rows, start=2):
        row = {(k or "").strip(): (v or "").strip() for k, v in raw.items()}
        if row.get("Student", "") in ("", POINTS_POSSIBLE.strip()):
            continue  # Canvas's "Points Possible" (and old "Muted") rows are not students
        key = row.get(id_column, "")
        if key and _norm(key) in seen:
            raise RosterError(f"{path}: id {key!r} is on lines {seen[_norm(key)]} and {line}")
        seen[_norm(key)] = line
        entries.append(RosterEntry(key=key, student=row["Student"], canvas_id=row.get("ID", ""),
                                   sis_user_id=row.get("SIS User ID", ""),
                                   sis_login_id=row.get("SIS Login ID", ""), section=row.get("Section", "")))
    return entries


def points_possible(results: list[SubmissionResult]) -> float:
    """The assignment's maximum: the most common ``max_score`` over the results (0 if none).

    The maximum counts only tests that ran, so it is the same for every student of one run.
    """
    counts = Counter(r.max_score for r in results)
    return counts.most_common(1)[0][0] if counts else 0.0


def canvas_gradebook(results: list[SubmissionResult], roster: list[RosterEntry],
                     assignment_column: str) -> CanvasExport:
    """Build the Canvas CSV and the problem list (see the module docstring).

    Args:
        results: one per graded student (``reports.load_all_results``).
        roster: from :func:`read_roster`.
        assignment_column: the Canvas column header, e.g. ``"FCN segmentation (12345)"`` to
            update an existing Canvas assignment, or a new name to create one.

    Raises:
        ValueError: an empty ``assignment_column``.
    """
    if not assignment_column.strip():
        raise ValueError("the Canvas assignment column needs a name, e.g. 'FCN segmentation'")
    by_key = {_norm(r.student): r for r in results}
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow([*CANVAS_COLUMNS, assignment_column])
    w.writerow([POINTS_POSSIBLE, "", "", "", "", reports.fmt(points_possible(results))])
    export = CanvasExport(csv_text="")
    used = set()
    for entry in roster:
        result = by_key.get(_norm(entry.key))
        if result is None:
            w.writerow([*entry.cells(), ""])
            export.problems.append(("no submission", entry.key, entry.student, "", NO_SUBMISSION) if entry.key
                                   else ("no id", "", entry.student, "", NO_ID))
            continue
        used.add(_norm(entry.key))
        export.matched += 1
        w.writerow([*entry.cells(), reports.fmt(reports.final_score(result))])
        if result.isolation.startswith("not run"):
            export.problems.append(("check by hand", entry.key, entry.student, reports.fmt(reports.final_score(result)),
                                    "; ".join(result.problems) or "grading failed before the sandbox"))
    for result in sorted(results, key=lambda r: r.student):
        if _norm(result.student) not in used:
            export.problems.append(("not in the roster", result.student, "", reports.fmt(reports.final_score(result)),
                                    NOT_IN_ROSTER))
    export.csv_text = buf.getvalue()
    return export


def export_canvas(results_dir: str | Path, roster_path: str | Path, out: str | Path,
                  assignment_column: str = DEFAULT_ASSIGNMENT_COLUMN,
                  id_column: str = DEFAULT_ID_COLUMN) -> tuple[CanvasExport, Path]:
    """Write ``out`` (the Canvas CSV) and ``<out stem>_problems.csv``, each atomically.

    Returns ``(export, problems path)``. Raises :class:`RosterError` for a bad roster and
    ``ValueError`` for an unreadable ``results.json`` (the message names the file).
    """
    out = Path(out)
    results = reports.load_all_results(results_dir)
    export = canvas_gradebook(results, read_roster(roster_path, id_column), assignment_column)
    problems_path = out.with_name(f"{out.stem}_problems.csv")
    atomic_write_text(out, export.csv_text)
    atomic_write_text(problems_path, export.problems_csv())
    return export, problems_path

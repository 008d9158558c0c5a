"""One source of points: the rubric decides, the notebooks' check cells follow.

Mapping (documented in the README, "Add your own assignment"): every answer cell of
``assignment.toml`` has ONE check cell, the first autograded test cell (a code cell with nbgrader
``grade: true`` and ``solution: false``) after it in its notebook, before the next answer cell.
That check cell's nbgrader ``points`` are the sum of the rubric points of the tests whose ``part``
is the answer cell's grade_id. A rubric part that is no answer cell (FCN's ``training``: the mIoU
tests) has no check cell: only this kit's grader awards it.

:func:`set_check_points` writes the points at release (into the course's copies, never into the
source notebooks); :func:`verify_course` lets ``grade`` and ``export-gradebook`` refuse a course
released before the rubric changed.
"""

from __future__ import annotations

import os
from pathlib import Path

import nbformat

from autograder.assignment import Assignment
from autograder.rubric import load_rubric


class PointsError(ValueError):
    """An answer cell without a check cell, or check-cell points that disagree with the rubric."""


def part_points(rubric_path: str | os.PathLike) -> dict[str, float]:
    """``{part: sum of the points of its tests}`` of a ``rubric.toml`` (e.g. ``fcn32s``: 11.0)."""
    totals: dict[str, float] = {}
    for entry in load_rubric(rubric_path).values():
        totals[entry.part] = totals.get(entry.part, 0.0) + entry.points
    return totals


def expected_points(assignment: Assignment) -> dict[str, float]:
    """``{answer grade_id: the points its check cell must carry}``."""
    totals = part_points(assignment.rubric)
    return {gid: totals.get(gid, 0.0) for gid in assignment.answer_cells}


def check_cells(assignment: Assignment, folder: str | os.PathLike) -> dict[str, tuple[str, nbformat.NotebookNode]]:
    """``{answer grade_id: (notebook file, its check cell)}`` in the notebooks under ``folder``.

    Raises:
        PointsError: an answer cell has no check cell after it (the message names both).
        OSError: a notebook is missing.
    """
    out = {}
    for spec in assignment.notebooks:
        nb = nbformat.read(Path(folder) / spec.file, as_version=4)
        _pair(spec.file, nb, {g for g, _ in spec.answers}, out)
        missing = [g for g, _ in spec.answers if g not in out]
        if missing:
            raise PointsError(f"{spec.file}: no check cell (an autograded test cell) after the answer "
                              f"cell(s) {missing}: add one, it carries the part's rubric points")
    return out


def _pair(file: str, nb, answers: set[str], out: dict) -> None:
    pending = None
    for cell in nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        gid = meta.get("grade_id")
        if gid in answers:
            pending = gid
        elif (pending is not None and cell.cell_type == "code" and meta.get("grade")
              and not meta.get("solution")):
            out[pending] = (file, cell)
            pending = None


def set_check_points(assignment: Assignment, folder: str | os.PathLike) -> dict[str, float]:
    """Set the check cells' ``points`` of the notebooks under ``folder`` (copies of the source
    notebooks) from the rubric; returns ``{answer grade_id: points}``.

    Raises:
        PointsError: see :func:`check_cells`.
    """
    want = expected_points(assignment)
    by_nb: dict[str, list[tuple[str, str]]] = {}
    for gid, (file, cell) in check_cells(assignment, folder).items():
        by_nb.setdefault(file, []).append((cell.metadata["nbgrader"]["grade_id"], gid))
    for file, pairs in by_nb.items():
        path = Path(folder) / file
        nb = nbformat.read(path, as_version=4)
        cells = {c.metadata.get("nbgrader", {}).get("grade_id"): c for c in nb.cells}
        for check_id, gid in pairs:
            pts = want[gid]
            cells[check_id].metadata["nbgrader"]["points"] = int(pts) if pts == int(pts) else pts
        nbformat.write(nb, path)
    return want


def mismatches(assignment: Assignment, folder: str | os.PathLike) -> list[str]:
    """Where the check cells under ``folder`` disagree with the rubric (empty: they agree)."""
    want = expected_points(assignment)
    out = []
    for gid, (file, cell) in check_cells(assignment, folder).items():
        got = float(cell.metadata["nbgrader"].get("points", 0))
        if abs(got - want[gid]) > 1e-9:
            out.append(f"{file}: check cell {cell.metadata['nbgrader']['grade_id']!r} carries {got:g} "
                       f"points, the rubric's tests of part {gid!r} add up to {want[gid]:g}")
    return out


def verify_course(course: str | os.PathLike, assignment: Assignment) -> None:
    """Refuse a released course whose check-cell points disagree with ``assignment``'s rubric
    (``course/source/<name>`` and ``course/release/<name>``, those that exist).

    Raises:
        PointsError: what disagrees and how to fix it (release again).
    """
    problems = []
    for kind in ("source", "release"):
        folder = Path(course) / kind / assignment.name
        if folder.is_dir():
            try:
                problems += [f"{kind}/{p}" for p in mismatches(assignment, folder)]
            except (OSError, PointsError) as err:
                problems.append(f"{kind}: {err}")
    if problems:
        raise PointsError(
            f"the course {course} was released with other points than the rubric of "
            f"{assignment.name!r} gives:\n  " + "\n  ".join(problems)
            + f"\nrelease again (python -m autograder release --assignment {assignment.name}) so that "
            "nbgrader's gradebook and this grader agree on every maximum")

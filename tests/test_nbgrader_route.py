"""The plain-nbgrader route: ``nbgrader autograde fcn_segmentation`` in the course folder that
``python -m autograder release`` builds.

nbgrader executes each submitted notebook in the student's kernel and gives a check cell its
``points`` when it raises nothing (all or nothing per part); the hidden tests do not run. The
check cells' points are the rubric's part totals, so that route's maxima match this grader's.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from test_release import released  # noqa: F401  (the module-scoped release fixture)

from autograder import demo
from autograder.assignment import get_assignment
from autograder.gradebook import course_id_of
from autograder.points import part_points

FCN = get_assignment("fcn_segmentation")
ASSIGNMENT, NOTEBOOKS = FCN.name, FCN.notebook_files

FCN_RUBRIC = get_assignment("fcn_segmentation").rubric

#: The demo's ``partly_wrong`` student breaks exactly these parts (see :mod:`autograder.demo`).
BROKEN_BY_PARTLY_WRONG = {"fcn32s", "transposed_conv_padding"}


def _check_cells(notebooks: Path) -> dict[str, tuple[str, float]]:
    """``{part: (notebook name without .ipynb, points)}`` of the ``check_<part>`` cells."""
    out = {}
    for name in NOTEBOOKS:
        for cell in nbformat.read(notebooks / name, as_version=4).cells:
            meta = cell.metadata.get("nbgrader", {})
            if meta.get("grade_id", "").startswith("check_"):
                assert meta.get("grade") and cell.cell_type == "code", meta["grade_id"]
                out[meta["grade_id"][len("check_"):]] = (Path(name).stem, float(meta.get("points", 0)))
    return out


def test_check_cell_points_equal_rubric_part_totals(repo_root):
    """Each check cell carries its rubric part's total, so plain nbgrader and export-gradebook
    agree on the maxima. Fails when a rubric.toml edit is not mirrored in the notebooks."""
    cells = _check_cells(repo_root / "notebooks" / "fcn_segmentation")
    totals = part_points(FCN_RUBRIC)
    assert set(cells) == {"fcn32s", "fcn8s", "transposed_conv_padding", "soft_iou_loss"}
    for part, (nb, points) in cells.items():
        assert points == totals[part] > 0, (
            f"check_{part} in {nb}.ipynb carries {points} points but the rubric parts '{part}' add up "
            f"to {totals[part]}: set the cell's nbgrader points to the rubric total")


def _autograde(course: Path, data_root: Path, weights: Path, cache: Path) -> subprocess.CompletedProcess:
    """``nbgrader autograde fcn_segmentation`` in ``course``, as an instructor would run it."""
    env = dict(os.environ, ASSIGNMENT_SMOKE="1", CMP_FACADE_ROOT=str(data_root),
               VGG16_WEIGHTS=str(weights), FCN_KIT_CACHE=str(cache), OMP_NUM_THREADS="2")
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return subprocess.run([sys.executable, "-m", "nbgrader", "autograde", ASSIGNMENT], cwd=course,
                          env=env, capture_output=True, text=True, timeout=600, check=False)


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:Object of type:Warning")
def test_nbgrader_autograde_scores_reference_and_wrong_submission(
        released, repo_root, sample_root, vgg16_features_path, tmp_path):  # noqa: F811
    from nbgrader.api import Gradebook

    course = released.course
    demo.make_submissions(released.release, FCN, released.expected_cells, tmp_path / "subs")
    students = ("reference", "partly_wrong")  # not "broken": its `while True` would hang nbgrader
    for student in students:
        dest = course / "submitted" / student / ASSIGNMENT
        dest.mkdir(parents=True)
        for name in NOTEBOOKS:
            shutil.copy2(tmp_path / "subs" / student / name, dest / name)

    # The bundled sample keeps this fast; the route is the same with the full base set.
    proc = _autograde(course, sample_root, vgg16_features_path, tmp_path / "cache")
    assert proc.returncode == 0, f"nbgrader autograde failed:\n{proc.stdout}\n{proc.stderr[-5000:]}"
    for student in students:
        for name in NOTEBOOKS:
            assert (course / "autograded" / student / ASSIGNMENT / name).is_file(), (student, name)

    cells = _check_cells(repo_root / "notebooks" / "fcn_segmentation")
    totals = part_points(FCN_RUBRIC)
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}", course_id=course_id_of(course)) as gb:
        scores = {}
        for student in students:
            for part, (nb, points) in cells.items():
                g = gb.find_grade(f"check_{part}", nb, ASSIGNMENT, student)
                assert g.max_score == points == totals[part], part
                scores[student, part] = g.auto_score
        ref = gb.find_submission(ASSIGNMENT, "reference")
        assert ref.code_score == ref.max_code_score == sum(totals[p] for p in cells)
        for part in cells:
            expected = 0.0 if part in BROKEN_BY_PARTLY_WRONG else totals[part]
            assert scores["partly_wrong", part] == expected, (
                f"partly_wrong's check_{part}: {scores['partly_wrong', part]}, expected {expected}")

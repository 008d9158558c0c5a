"""Assignments as packages: discovery, inference, the bundle, and one source of points."""

from __future__ import annotations

import shutil
from pathlib import Path

import nbformat
import pytest

from autograder import points, reports
from autograder.__main__ import main as cli
from autograder.assignment import (
    Assignment,
    AssignmentError,
    assignment_names,
    get_assignment,
    infer_assignment,
)
from autograder.bundle import Bundle
from autograder.results import SubmissionResult
from autograder.rubric import load_rubric

FCN = get_assignment("fcn_segmentation")


def fcn_copy(tmp_path: Path) -> Assignment:
    """A copy of the FCN package and its notebooks under ``tmp_path`` (the repository is never edited)."""
    pkg = tmp_path / "assignments" / "fcn_segmentation"
    shutil.copytree(FCN.folder, pkg, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(FCN.source_dir, tmp_path / "notebooks" / "fcn_segmentation")
    return get_assignment("fcn_segmentation", tmp_path / "assignments", tmp_path / "notebooks")


def test_fcn_toml_gives_the_cells_the_grader_always_ran():
    assert FCN.reference_cells == {
        "fcn_segmentation.ipynb": ("fcn_imports", "fcn32s", "fcn8s"),
        "upsampling_and_iou.ipynb": ("upsampling_imports", "transposed_conv_padding", "soft_iou_loss")}
    assert FCN.locked_cells == ("fcn_imports", "upsampling_imports")
    assert FCN.answer_cells == {"fcn32s": ("FCN32s",), "fcn8s": ("FCN8s",),
                                "transposed_conv_padding": ("transposed_conv_padding",),
                                "soft_iou_loss": ("soft_iou_loss",)}
    assert Path(FCN.source_dir) == Path(__file__).resolve().parents[1] / "notebooks" / "fcn_segmentation"


def test_a_folder_without_assignment_toml_is_skipped_and_inference(tmp_path):
    fcn_copy(tmp_path)
    (tmp_path / "assignments" / "half_done" / "hidden_tests").mkdir(parents=True)  # being written
    other = tmp_path / "assignments" / "other"
    other.mkdir()
    (other / "assignment.toml").write_text(
        'name = "other"\n[[notebooks]]\nfile = "other.ipynb"\n[notebooks.answers]\nf = ["f"]\n'
        '[[notebooks]]\nfile = "upsampling_and_iou.ipynb"\n')
    root = tmp_path / "assignments"
    assert assignment_names(root) == ["fcn_segmentation", "other"]
    assert infer_assignment(["fcn_segmentation.ipynb"], root) == "fcn_segmentation"
    assert infer_assignment(["other"], root) == "other"
    with pytest.raises(AssignmentError, match="several assignments.*--assignment"):
        infer_assignment(["upsampling_and_iou.ipynb"], root)
    with pytest.raises(AssignmentError, match="no assignment"):
        infer_assignment(["notes.ipynb"], root)
    with pytest.raises(AssignmentError, match="unknown assignment 'half_done'.*fcn_segmentation, other"):
        get_assignment("half_done", root)


def test_bundle_digest_covers_assignment_toml(tmp_path):
    spec = fcn_copy(tmp_path)
    b = Bundle.of(spec)
    assert "assignment.toml" in dict(b.entries()) and b.spec() == spec
    before = b.digest()
    spec.toml.write_text(spec.toml.read_text() + "\n# an edit\n")
    assert b.digest() != before


def test_release_points_follow_the_rubric_and_grade_refuses_a_stale_course(tmp_path, capsys):
    """The issue's scenario in a copy: a test's points 1 -> 2, release again: the check cell carries
    the new total; tamper the released points: grade and export-gradebook refuse."""
    from autograder.gradebook import export_gradebook
    from autograder.release import release

    spec = fcn_copy(tmp_path)
    rubric = spec.rubric.read_text()
    old = '[tests.test_fcn32s_layer_names]\npart = "fcn32s"\npoints = 1\n'
    assert old in rubric
    spec.rubric.write_text(rubric.replace(old, old.replace("points = 1", "points = 2")))
    totals = points.part_points(spec.rubric)
    assert totals["fcn32s"] == 12 and sum(e.points for e in load_rubric(spec.rubric).values()) == 42

    paths = release(tmp_path / "build", spec)
    released = {cell.metadata["nbgrader"]["grade_id"]: cell.metadata["nbgrader"]["points"]
                for cell in nbformat.read(paths.release / "fcn_segmentation.ipynb", as_version=4).cells
                if cell.metadata.get("nbgrader", {}).get("grade")}
    assert released["check_fcn32s"] == 12 and released["check_fcn8s"] == 12
    points.verify_course(paths.course, spec)  # agrees: no raise
    # the source notebooks in the repository copy are untouched: only the course's copies change
    src = nbformat.read(Path(spec.source_dir) / "fcn_segmentation.ipynb", as_version=4)
    assert {c.metadata["nbgrader"]["grade_id"]: c.metadata["nbgrader"].get("points")
            for c in src.cells if c.metadata.get("nbgrader", {}).get("grade")}["check_fcn32s"] == 11

    nb_path = paths.release / "fcn_segmentation.ipynb"
    nb = nbformat.read(nb_path, as_version=4)
    for cell in nb.cells:
        if cell.metadata.get("nbgrader", {}).get("grade_id") == "check_fcn32s":
            cell.metadata["nbgrader"]["points"] = 11
    nbformat.write(nb, nb_path)
    with pytest.raises(points.PointsError, match="check_fcn32s.*11 points.*add up to 12"):
        points.verify_course(paths.course, spec)

    grader = tmp_path / "grader"  # the copy as a grader bundle folder (grade --grader)
    grader.mkdir()
    for name, path in Bundle.of(spec).members().items():
        (shutil.copytree if path.is_dir() else shutil.copy)(path, grader / name)
    sub = tmp_path / "subs" / "alice"
    sub.mkdir(parents=True)
    shutil.copy(paths.release / "fcn_segmentation.ipynb", sub)
    code = cli(["grade", str(sub.parent), "--out", str(tmp_path / "out"), "--grader", str(grader),
                "--course", str(paths.course), "--no-progress", "--no-pdf"])
    err = capsys.readouterr().err
    assert code == 2 and "check_fcn32s" in err and "release again" in err
    assert not (tmp_path / "out" / "grades.csv").exists()

    results = tmp_path / "results"
    reports.write_student_outputs(SubmissionResult("alice", "fcn_segmentation"), results / "alice")
    with pytest.raises(points.PointsError, match="check_fcn32s"):
        export_gradebook(results, paths.course, assignment="fcn_segmentation")


def test_an_answer_cell_without_check_cell_is_refused_at_release(tmp_path):
    spec = fcn_copy(tmp_path)
    path = Path(spec.source_dir) / "upsampling_and_iou.ipynb"
    nb = nbformat.read(path, as_version=4)
    nb.cells = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") != "check_soft_iou_loss"]
    nbformat.write(nb, path)
    with pytest.raises(points.PointsError, match=r"no check cell.*\['soft_iou_loss'\]"):
        points.check_cells(spec, spec.source_dir)

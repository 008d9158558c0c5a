"""The transfer_learning grader for notebook 1 (transfer_and_features.ipynb): rubric coverage of
hidden_tests/test_transfer.py and test_features.py, check-cell points equal to the rubric, and two
graded runs through the grading job: the reference gets full marks, and a submission with one
mistake in each part loses the right points in that part only.

(Every mistake of the visible checks' list, tests/test_transfer.py, was also graded one by one
while the tests were written: each lost points in its own part only; see the README.)"""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

from autograder.assignment import get_assignment
from autograder.notebook import cells_by_grade_id
from autograder.rubric import load_rubric

TL = get_assignment("transfer_learning")
NOTEBOOK = "transfer_and_features.ipynb"
PARTS = ("transfer_head", "extract_features")
MY_FILES = ("test_transfer.py", "test_features.py")




def test_rubric_covers_exactly_the_tests_of_both_parts():
    rubric = load_rubric(TL.rubric)
    mine = {n for n, e in rubric.items() if e.part in PARTS}
    import ast

    defined = set()
    for f in MY_FILES:
        tree = ast.parse((Path(TL.hidden_tests) / f).read_text())
        defined |= {n.name for n in tree.body if isinstance(n, ast.FunctionDef) and n.name.startswith("test_")}
    assert defined == mine, defined ^ mine


def test_check_cells_carry_the_rubric_points():
    rubric = load_rubric(TL.rubric)
    cells = cells_by_grade_id(nbformat.read(Path(TL.source_dir) / NOTEBOOK, as_version=4))
    for part in PARTS:
        want = sum(e.points for e in rubric.values() if e.part == part)
        assert cells[f"check_{part}"].metadata["nbgrader"]["points"] == want, part


def _submission(dest: Path, edits: dict) -> dict[str, bytes]:
    nb = nbformat.read(Path(TL.source_dir) / NOTEBOOK, as_version=4)
    cells = cells_by_grade_id(nb)
    for gid, (old, new) in edits.items():
        assert old in cells[gid].source, (gid, old)
        cells[gid].source = cells[gid].source.replace(old, new)
    for cell in nb.cells:  # what a student hands in: no solution markers
        cell.source = "\n".join(line for line in cell.source.splitlines()
                                if line.strip() not in ("### BEGIN SOLUTION", "### END SOLUTION"))
    dest.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, dest / NOTEBOOK)
    return {NOTEBOOK: (dest / NOTEBOOK).read_bytes()}


def _grade(tmp_path_factory, name, edits):
    from autograder.bundle import Bundle
    from autograder.job import GradeJob, grade_job
    from autograder.settings import GradingSettings

    root = tmp_path_factory.mktemp(name)
    settings = GradingSettings(scratch_root=str(root / "grading"), threads=2)
    result = grade_job(GradeJob(name, _submission(root / "sub", edits), settings,
                                bundle=Bundle.of(TL)))
    return {t.name: t for t in result.tests if t.part in PARTS}


@pytest.mark.slow
def test_reference_full_marks_and_mistakes_lose_points_in_their_part(tmp_path_factory):
    ref = _grade(tmp_path_factory, "reference", {})
    assert ref and all(t.score == t.max_score for t in ref.values()), {
        n: (t.status, t.output[:300]) for n, t in ref.items() if t.score != t.max_score}
    # feature_extractor that only calls model.features.eval() (nothing frozen), and features that
    # are the logits
    bad = _grade(tmp_path_factory, "mistakes", {
        "transfer_head": ("""        for p in model.features.parameters():
            p.requires_grad_(False)""", "        model.features.eval()"),
        "extract_features": ("model.classifier[:-1](torch.flatten(x, 1))",
                             "model.classifier(torch.flatten(x, 1))")})
    lost = {n for n, t in bad.items() if t.score < t.max_score}
    assert lost == {"test_set_trainable_modes", "test_frozen_weights_unchanged_after_step",
                    "test_features_shape", "test_features_match_reference"}, lost
    modes = bad["test_set_trainable_modes"]
    assert 0 < modes.score < modes.max_score and "feature_extractor" in modes.output
    assert "requires_grad False" in bad["test_frozen_weights_unchanged_after_step"].output
    assert "in_features" in bad["test_features_shape"].output

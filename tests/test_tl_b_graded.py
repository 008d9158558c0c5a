"""byol_and_aspp through the real grading job (autograder.job.grade_job, sandbox included): the
reference byol_and_aspp.ipynb gets full marks in ASPP, byol_loss and ema_update, and a submission
with one mistake in each loses points only in the tests that the mistake breaks, with partial
credit and teaching messages (the mistakes of other parts: tests/test_tl_hidden_byol_aspp.py). (Two graded runs: the mistakes one by one, through the
hidden tests directly, are in tests/test_tl_hidden_byol_aspp.py.)"""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

from autograder.assignment import get_assignment
from autograder.notebook import cells_by_grade_id
from autograder.rubric import load_rubric
from tests.test_byol_aspp_checks import MISTAKES

TL = get_assignment("transfer_learning")
MY_PARTS = ("aspp", "byol_loss", "ema_update")
#: The mistakes of the graded run, one per part.
RUN_MISTAKES = ("aspp_hardcoded_three_rates", "loss_z_not_detached", "ema_tau_swapped")


NOTEBOOK = "byol_and_aspp.ipynb"


def _grade(tmp_path, student, mistakes=()):
    """Grade byol_and_aspp.ipynb alone (the other notebook's parts are then missing), as a student
    hands it in: the reference with ``mistakes`` applied, without the solution markers."""
    from autograder.bundle import Bundle
    from autograder.job import GradeJob, grade_job
    from autograder.settings import GradingSettings

    nb = nbformat.read(Path(TL.source_dir) / NOTEBOOK, as_version=4)
    for m in mistakes:
        answer, _, edits, _ = MISTAKES[m]
        cell = cells_by_grade_id(nb)[answer]
        for old, new in edits:
            assert old in cell.source
            cell.source = cell.source.replace(old, new)
    for cell in nb.cells:
        cell.source = "\n".join(line for line in cell.source.splitlines()
                                if line.strip() not in ("### BEGIN SOLUTION", "### END SOLUTION"))
    settings = GradingSettings(scratch_root=str(tmp_path / "grading"), threads=1)
    result = grade_job(GradeJob(student, {NOTEBOOK: nbformat.writes(nb).encode()}, settings,
                                bundle=Bundle.of(TL)))
    return [t for t in result.tests if t.part in MY_PARTS]


@pytest.fixture(scope="module")
def rubric():
    return load_rubric(TL.rubric)


def test_check_cells_carry_the_rubric_points(rubric):
    cells = cells_by_grade_id(nbformat.read(Path(TL.source_dir) / NOTEBOOK, as_version=4))
    for part in MY_PARTS:
        want = sum(e.points for e in rubric.values() if e.part == part)
        assert cells[f"check_{part}"].metadata["nbgrader"]["points"] == want, part


@pytest.mark.slow
def test_reference_gets_full_marks(tmp_path, rubric):
    tests = _grade(tmp_path, "reference")
    mine = [n for n, e in rubric.items() if e.part in MY_PARTS]
    assert len(mine) == 10 and sorted(mine) == sorted(t.name for t in tests)
    for t in tests:
        assert t.status == "passed" and t.score == t.max_score, (t.name, t.output)
    assert sum(t.max_score for t in tests) == 18


@pytest.mark.slow
def test_one_mistake_per_part_loses_points_only_there(tmp_path):
    t = {r.name: r for r in _grade(tmp_path, "mistakes", RUN_MISTAKES)}
    # rates hard-coded: the (6, 12, 18) model is right, the 2-rate one is not
    assert t["test_aspp_output_shapes"].status == "passed"
    assert t["test_aspp_layer_names"].status == "passed"
    assert t["test_aspp_param_count"].score == 0 and "one atrous branch per rate" in t["test_aspp_param_count"].output
    same = t["test_aspp_same_weights"]
    assert same.score == pytest.approx(same.max_score / 2) and "do not fit" in same.output
    # z not detached: only the stop-gradient test fails
    assert t["test_byol_loss_values"].status == t["test_byol_loss_gradient_wrt_p"].status == "passed"
    assert t["test_byol_loss_stop_gradient"].score == 0 and "z.detach()" in t["test_byol_loss_stop_gradient"].output
    # tau and 1 - tau swapped: right only at tau = 0.5; tau = 1 moves the target
    exact = t["test_ema_update_exact"]
    assert 0 < exact.score < exact.max_score and "swapped" in exact.output
    assert t["test_ema_update_tau_one_keeps_the_target"].score == 0
    assert t["test_ema_update_leaves_the_online_network"].status == "passed"

"""byol_and_aspp through the real grading job (autograder.job.grade_job, sandbox included): the
reference notebooks of the transfer_learning assignment get full marks, and a submission with one
mistake in each of ASPP, byol_loss and ema_update loses points only in the tests of those parts,
with partial credit and teaching messages. (Two graded runs: the mistakes one by one, through the
hidden tests directly, are in tests/test_tl_hidden_byol_aspp.py.)"""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

from autograder.assignment import get_assignment
from autograder.notebook import cells_by_grade_id
from autograder.rubric import load_rubric
from tests.test_byol_aspp_checks import MISTAKES

pytestmark = pytest.mark.slow

TL = get_assignment("transfer_learning")
MY_PARTS = ("aspp", "byol_loss", "ema_update")
#: The mistakes of the graded run, one per part.
RUN_MISTAKES = ("aspp_hardcoded_three_rates", "loss_z_not_detached", "ema_tau_swapped")


def _grade(tmp_path, student, mistakes=()):
    from autograder.job import GradeJob, grade_job
    from autograder.settings import GradingSettings

    nbs = {n: nbformat.read(Path(TL.source_dir) / n, as_version=4) for n in TL.notebook_files}
    for m in mistakes:
        answer, _, edits, _ = MISTAKES[m]
        cell = cells_by_grade_id(nbs["byol_and_aspp.ipynb"])[answer]
        for old, new in edits:
            assert old in cell.source
            cell.source = cell.source.replace(old, new)
    settings = GradingSettings(scratch_root=str(tmp_path / "grading"), threads=2)
    return grade_job(GradeJob(student, {n: nbformat.writes(nb).encode() for n, nb in nbs.items()},
                              settings))


@pytest.fixture(scope="module")
def rubric():
    return load_rubric(TL.rubric)


def test_reference_gets_full_marks(tmp_path, rubric):
    result = _grade(tmp_path, "reference")
    tests = {t.name: t for t in result.tests}
    mine = [n for n, e in rubric.items() if e.part in MY_PARTS]
    assert len(mine) == 10 and set(mine) <= set(tests)
    for t in result.tests:
        assert t.status == "passed" and t.score == t.max_score, (t.name, t.output)
    assert sum(rubric[n].points for n in mine) == 18


def test_one_mistake_per_part_loses_points_only_there(tmp_path, rubric):
    result = _grade(tmp_path, "mistakes", RUN_MISTAKES)
    t = {r.name: r for r in result.tests}
    for name, entry in rubric.items():
        if entry.part not in MY_PARTS:
            assert t[name].status == "passed", (name, t[name].output)
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

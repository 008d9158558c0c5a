"""Rubric coverage, and the hidden tests on a submission with typical bugs (partial credit)."""

from pathlib import Path

import pytest
from _submissions import build_submission

from autograder.assignment import get_assignment
from autograder.rubric import hidden_test_names, load_rubric, to_result

FCN_RUBRIC = get_assignment("fcn_segmentation").rubric

pytestmark = pytest.mark.slow


def test_every_hidden_test_has_a_rubric_entry_and_vice_versa():
    tests = hidden_test_names(get_assignment("fcn_segmentation").hidden_tests)
    rubric = load_rubric(FCN_RUBRIC)
    assert len(tests) == len(set(tests))
    assert set(tests) == set(rubric), (set(tests) ^ set(rubric))


def test_outcome_mapping():
    e = load_rubric(FCN_RUBRIC)["test_fcn32s_output_size"]
    assert to_result(e, {"outcome": "failed", "message": "m", "fraction": 0.5}).score == 1.0
    assert to_result(e, {"outcome": "error", "message": "m", "fraction": 0.5}).score == 0.0
    assert to_result(e, {"outcome": "skipped", "message": "needs a GPU"}).status == "not_run"
    assert to_result(e, None).status == "error"


@pytest.fixture(scope="module")
def buggy(tmp_path_factory, repo_root):
    from autograder.job import GradeJob, grade_job
    from autograder.settings import GradingSettings

    root = tmp_path_factory.mktemp("buggy")
    nbs = build_submission(root / "sub", {
        "fcn32s": [("19:19", "18:18")],  # crop offset off by one
        "transposed_conv_padding": [("-(-(kernel_size - stride) // 2)", "(kernel_size - stride) // 2")],
        "soft_iou_loss": [("union = (probs + onehot - probs * onehot)", "union = (probs + onehot)")],
        "fcn8s": [("self.fc6 = nn.Conv2d(512, 4096, 7)", "self.fc_six = nn.Conv2d(512, 4096, 7)"),
                  ("self.fc6(h)", "self.fc_six(h)")],
    })
    settings = GradingSettings(scratch_root=str(Path(tmp_path_factory.getbasetemp()) / "grading"), threads=2)
    return grade_job(GradeJob("buggy", {n: p.read_bytes() for n, p in nbs.items()}, settings))


def test_buggy_submission_loses_only_what_its_bugs_break(buggy):
    t = {r.name: r for r in buggy.tests}
    # crop offset 18: sizes stay right, the same-weights comparison fails and teaches
    assert t["test_fcn32s_output_size"].status == "passed"
    assert t["test_fcn32s_same_weights"].score == 0
    assert "crop offset (19" in t["test_fcn32s_same_weights"].output
    assert t["test_fcn32s_layers"].status == "passed"
    # FCN-8s with a renamed fc6: only the naming test fails; weights load by order and shape
    assert t["test_fcn8s_layer_names"].status == "failed"
    assert 0 < t["test_fcn8s_layer_names"].score < t["test_fcn8s_layer_names"].max_score
    for name in ("test_fcn8s_same_weights", "test_fcn8s_output_size", "test_fcn8s_param_count",
                 "test_fcn8s_layers"):
        assert t[name].status == "passed", (name, t[name].output)
    # floor instead of ceil: odd kernels fail, even ones pass -> partial credit
    pad = t["test_transposed_conv_padding_stride2"]
    assert pad.status == "failed" and 0 < pad.score < pad.max_score
    assert "kernel_size=3, stride=2" in pad.output
    assert t["test_soft_iou_loss_values"].score == 0
    assert t["test_soft_iou_loss_ignore_index"].status == "failed"
    assert t["test_fcn8s_miou_gpu"].status == "not_run"
    assert "needs a GPU" in t["test_fcn8s_miou_gpu"].output
    assert buggy.isolation

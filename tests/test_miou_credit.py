"""Partial credit of the trained-model tiers scales from the trivial predictor, not from zero."""

import json

import pytest

from autograder.assignment import get_assignment
from autograder.recipes import threshold_credit

FCN_RUBRIC = get_assignment("fcn_segmentation").rubric


def test_constant_predictor_earns_nothing_and_the_threshold_earns_everything():
    assert threshold_credit(0.033, threshold=0.05, baseline=0.033) == 0.0
    assert threshold_credit(0.020, threshold=0.05, baseline=0.033) == 0.0
    assert threshold_credit(0.050, threshold=0.05, baseline=0.033) == 1.0
    assert threshold_credit(0.080, threshold=0.05, baseline=0.033) == 1.0
    assert threshold_credit(0.0415, threshold=0.05, baseline=0.033) == pytest.approx(0.5)


def test_the_probe_accuracy_scales_the_same_way():
    assert threshold_credit(0.10, threshold=0.30, baseline=0.10) == 0.0
    assert threshold_credit(0.20, threshold=0.30, baseline=0.10) == pytest.approx(0.5)
    assert threshold_credit(0.35, threshold=0.30, baseline=0.10) == 1.0


def test_without_a_baseline_credit_scales_from_zero():
    assert threshold_credit(0.25, threshold=0.5, baseline=None) == pytest.approx(0.5)
    # a baseline at or above the threshold would divide by <= 0: ignored
    assert threshold_credit(0.25, threshold=0.5, baseline=0.6) == pytest.approx(0.5)


def test_every_tier_with_a_threshold_records_the_baseline_it_was_calibrated_against(repo_root):
    table = json.loads((repo_root / "autograder" / "assignments" / "fcn_segmentation" / "thresholds.json").read_text())
    for tier in ("cpu", "gpu"):
        need = table[tier].get("FCN8s")
        if need is None:
            continue
        record = table["recipes"][f"{tier}_fcn8s"]
        assert record["constant_predictor_mean_iou"] < need
        assert min(r["mean_iou"] for r in record["reference"]) >= need


def test_recipes_name_only_hidden_tests_that_exist(repo_root):
    from autograder import recipes
    from autograder.rubric import load_rubric

    rubric = load_rubric(FCN_RUBRIC)
    book = recipes.load_recipes(FCN_RUBRIC.parent / "recipes.toml")
    named = {r.name: r.test for r in book.values() if r.test is not None}
    assert named == {"cpu_fcn8s": "test_fcn8s_miou_cpu", "gpu_fcn8s": "test_fcn8s_miou_gpu"}
    assert set(named.values()) <= set(rubric)
    table = json.loads((repo_root / "autograder" / "assignments" / "fcn_segmentation" / "thresholds.json").read_text())
    for name, record in table["recipes"].items():
        assert record.get("recipe", record).get("test", named.get(name)) == named.get(name), name

"""Unit tests of the calibration rule and its "known-wrong models must fail" check (no training)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from assignment_lib.train import TrainConfig
from autograder import calibrate as C
from autograder import recipes as R
from autograder.assignment import get_assignment


def test_threshold_is_min_minus_margin_when_seeds_agree():
    out = C.choose_threshold([0.50, 0.52, 0.51], margin=0.02, k=3)
    # std = 0.01 -> mean - 3 std = 0.48 ; min - margin = 0.48 -> both 0.48
    assert out["threshold"] == pytest.approx(0.48, abs=1e-4)
    out = C.choose_threshold([0.50, 0.50, 0.50], margin=0.02, k=3)
    assert out["threshold"] == pytest.approx(0.48) and "min - margin" in out["rule"]


def test_threshold_is_mean_minus_k_std_when_seeds_spread():
    vals = [0.30, 0.50, 0.52]
    out = C.choose_threshold(vals, margin=0.01, k=2)
    assert out["threshold"] == pytest.approx(np.mean(vals) - 2 * np.std(vals, ddof=1), abs=1e-4)
    assert out["threshold"] < min(vals) - 0.01 and "mean - k*std" in out["rule"]
    assert out["min"] == 0.30 and out["max"] == 0.52


def test_threshold_rejects_nonsense():
    with pytest.raises(ValueError):
        C.choose_threshold([])
    with pytest.raises(ValueError, match="nan"):
        C.choose_threshold([0.5, float("nan")])


def test_check_flags_a_known_wrong_model_that_passes():
    thr = C.choose_threshold([0.40, 0.42, 0.41])["threshold"]
    assert C.check_calibration([0.40, 0.42, 0.41], thr, {"wrong": [0.10, 0.12]}, baseline=0.04) == []
    problems = C.check_calibration([0.40, 0.42, 0.41], thr, {"wrong": [0.10, 0.395]})
    assert len(problems) == 1 and "wrong" in problems[0] and "run 1" in problems[0]


def test_check_flags_a_reference_below_threshold_and_a_useless_threshold():
    assert any("reference run 2" in p for p in C.check_calibration([0.5, 0.5, 0.3], 0.4, {}))
    assert any("constant-predictor" in p for p in C.check_calibration([0.05], 0.03, {}, baseline=0.04))


def test_main_exits_nonzero_and_writes_nothing_when_a_known_wrong_model_passes(tmp_path, monkeypatch):
    def fake(recipe, seeds, **kw):
        entry = {"threshold": 0.3, "rule": "r"}
        return entry, ["known-wrong model 'x' (run 0) scored 0.5 >= threshold 0.3"]

    monkeypatch.setattr(C, "calibrate_recipe", fake)
    monkeypatch.setattr("assignment_lib.weights.load_vgg16_state_dict", lambda path=None: {})
    out = tmp_path / "t.json"
    assert C.main(["--tier", "cpu", "--seeds", "0", "--out", str(out)]) == 1
    assert not out.exists()


def test_main_writes_thresholds_where_the_hidden_tests_read_them(tmp_path, monkeypatch):
    monkeypatch.setattr(C, "calibrate_recipe",
                        lambda recipe, seeds, **kw: ({"threshold": 0.25, "rule": "r"}, []))
    monkeypatch.setattr("assignment_lib.weights.load_vgg16_state_dict", lambda path=None: {})
    out = tmp_path / "t.json"
    assert C.main(["--tier", "cpu", "--seeds", "0", "--out", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert doc["cpu"]["FCN8s"] == 0.25 and doc["cpu"]["FCN32s"] == 0.25
    assert doc["gpu"]["FCN8s"] is None and doc["gpu"]["status"] == C.NOT_MEASURED


FCN = get_assignment("fcn_segmentation")


@pytest.mark.parametrize("assignment_name", ["fcn_segmentation", "transfer_learning"])
def test_committed_thresholds_file_is_consistent(assignment_name):
    assignment = get_assignment(assignment_name)
    doc = json.loads(assignment.thresholds.read_text())
    measured = 0
    for name, r in R.load_recipes(assignment.recipes).items():
        entry = doc["recipes"][name]
        metric = "accuracy" if r.trainer == "classifier" else "mean_iou"
        if r.tier == "gpu" and entry.get("threshold") is None:
            assert entry["status"] == C.NOT_MEASURED  # never an invented GPU number
            continue
        if entry.get("status") != "measured":
            continue
        # the rule reproduces the recorded threshold, and every known-wrong model and the constant
        # predictor fail it
        ref = [x[metric] for x in entry["reference"]]
        assert C.choose_threshold(ref)["threshold"] == pytest.approx(entry["threshold"])
        wrong = {n: [w[metric] for w in v] for n, v in entry["known_wrong"].items()}
        assert wrong and C.check_calibration(ref, entry["threshold"], wrong,
                                             entry[f"constant_predictor_{metric}"]) == []
        assert R.Recipe.from_dict(entry["recipe"]).training_view() == r.training_view(), \
            f"{name}: recipe changed since calibration"
        assert doc[r.tier][C.summary_key(r)] == entry["threshold"]
        measured += 1
    assert measured  # each assignment has a calibrated CPU tier


def test_recipes_are_plain_data_and_round_trip():
    book = R.load_recipes(FCN.recipes)
    for r in book.values():
        d = r.to_dict()
        assert json.loads(json.dumps(d)) == d
        assert R.Recipe.from_dict(d) == r
        assert TrainConfig.from_dict(d["config"]) == r.config
    assert {r.tier for r in R.of_tier(book, "cpu")} == {"cpu"}
    assert R.grading_recipe(book, "cpu") is book["cpu_fcn8s"]
    assert R.grading_recipe(book, "gpu") is book["gpu_fcn8s"]


def test_main_calibrates_each_recipe_over_its_own_seeds_unless_told(tmp_path, monkeypatch):
    got = {}

    def fake(recipe, seeds, **kw):
        got[recipe.name] = list(seeds)
        return {"threshold": 0.3, "rule": "r"}, []

    monkeypatch.setattr(C, "calibrate_recipe", fake)
    monkeypatch.setattr("assignment_lib.weights.load_vgg16_state_dict", lambda path=None: {})
    assert C.main(["--assignment", "transfer_learning", "--tier", "cpu", "--out", str(tmp_path / "a.json")]) == 0
    assert C.main(["--tier", "cpu", "--out", str(tmp_path / "b.json")]) == 0
    assert got == {"cpu_probe": list(range(8)), "cpu_fcn32s": [0, 1, 2], "cpu_fcn8s": [0, 1, 2]}
    assert C.main(["--tier", "cpu", "--recipes", "cpu_fcn8s", "--seeds", "5", "--out", str(tmp_path / "c.json")]) == 0
    assert got["cpu_fcn8s"] == [5]
    assert json.loads((tmp_path / "a.json").read_text())["cpu"] == {"probe_accuracy": 0.3}

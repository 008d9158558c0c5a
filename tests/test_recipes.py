"""The training recipes are data in each assignment's package (``recipes.toml``), part of its grader
bundle; grading refuses a recipe that cannot run as it was calibrated."""

from __future__ import annotations

import dataclasses
import json
import shutil

import pytest

from autograder import job
from autograder import recipes as R
from autograder.assignment import get_assignment
from autograder.bundle import Bundle
from autograder.results import InfrastructureError
from autograder.settings import GradingSettings

FCN = get_assignment("fcn_segmentation")


def _bundle_with(tmp_path, recipes_text: str | None = None, thresholds: dict | None = None) -> Bundle:
    """The FCN bundle with its recipes.toml and/or thresholds.json replaced by copies in tmp."""
    b = Bundle.for_assignment("fcn_segmentation")
    rec, thr = tmp_path / "recipes.toml", tmp_path / "thresholds.json"
    shutil.copy(b.recipes, rec)
    shutil.copy(b.thresholds, thr)
    if recipes_text is not None:
        rec.write_text(recipes_text)
    if thresholds is not None:
        thr.write_text(json.dumps(thresholds))
    return dataclasses.replace(b, recipes=str(rec), thresholds=str(thr))


def test_the_package_recipes_are_the_ones_the_thresholds_were_calibrated_with():
    """Moving the table into recipes.toml changed no recipe: each equals what calibration recorded
    (timeout_s and trainer were not recorded then)."""
    book = R.load_recipes(FCN.recipes)
    table = json.loads(FCN.thresholds.read_text())["recipes"]
    assert list(book) == ["cpu_fcn32s", "cpu_fcn8s", "gpu_fcn32s", "gpu_fcn8s", "gpu_iou_window"]
    for name, r in book.items():
        recorded = dict(table[name]["recipe"])
        assert "timeout_s" not in recorded and "trainer" not in recorded
        assert json.loads(json.dumps(r.to_dict())) == {**recorded, "timeout_s": r.timeout_s,
                                                       "trainer": "segmentation"}, name
        assert R.Recipe.from_dict(recorded).training_view() == r.training_view()
    assert {r.timeout_s for r in book.values() if r.tier == "gpu"} == {1800.0}
    # a recipe states only what differs from its base
    assert book["gpu_iou_window"].config.steps == 500 and book["gpu_fcn8s"].config.steps == 1500
    assert book["gpu_iou_window"].data.binary_class == "window" and book["gpu_fcn8s"].data.binary_class is None


def test_the_bundle_carries_the_recipes_and_its_digest_follows_them(tmp_path):
    b = Bundle.for_assignment("fcn_segmentation")
    assert ("recipes.toml", FCN.recipes) in b.entries()
    changed = _bundle_with(tmp_path, FCN.recipes.read_text().replace("steps = 16", "steps = 17"))
    assert changed.digest() != b.digest()
    tl = Bundle.for_assignment("transfer_learning")
    assert job.tier_of_tests(tl) == {"test_probe_accuracy_cpu": "cpu"}
    assert [r.trainer for r in R.graded_recipes(GradingSettings(miou="cpu"), tl)] == ["classifier"]
    assert R.graded_recipes(GradingSettings(miou="gpu"), tl) == []  # no probe on the GPU tier
    # an assignment that trains no model has no recipes.toml: no tier tests, nothing to check
    none = dataclasses.replace(tl, recipes=str(tmp_path / "absent" / "recipes.toml"))
    assert R.bundle_recipes(none) == {} and job.tier_of_tests(none) == {}
    assert R.graded_recipes(GradingSettings(miou="cpu"), none) == []


@pytest.mark.parametrize("text, words", [
    ('[recipe.x]\nbase = "nope"\nmodel = "fcn8s"\n', "base 'nope' is not defined"),
    ('[recipe.x]\ntier = "cpu"\nmodel = "fcn8s"\ninit = "imagenet"\nstep = 3\n', "unknown recipe fields ['step']"),
    ('[recipe.x]\ntier = "cpu"\nmodel = "fcn8s"\ninit = "imagenet"\n[recipe.x.config]\nsteps = 0\n', "steps must be"),
    ('[recipe.x]\ntier = "tpu"\nmodel = "fcn8s"\ninit = "imagenet"\n', "tier/model/init"),
    ('[recipe.x]\nmodel = "fcn8s"\n', "missing"),
    ('[recipes.x]\n', "unknown top-level tables"),
    ('[recipe.x\n', "recipes.toml"),
])
def test_a_bad_recipes_file_is_refused_naming_file_recipe_and_field(tmp_path, text, words):
    path = tmp_path / "recipes.toml"
    path.write_text(text)
    with pytest.raises(R.RecipeError) as err:
        R.load_recipes(path)
    assert words in str(err.value) and str(path) in str(err.value)


def test_grading_refuses_a_recipe_changed_since_its_calibration(tmp_path):
    b = _bundle_with(tmp_path, FCN.recipes.read_text().replace("lr = 1e-3", "lr = 2e-3"))
    with pytest.raises(InfrastructureError, match=r"cpu_fcn8s .* differs .*config\.lr 0\.001 -> 0\.002.*calibrate"):
        R.graded_recipes(GradingSettings(miou="cpu"), b)
    # a change that does not touch training (the description) is fine
    b = _bundle_with(tmp_path, FCN.recipes.read_text().replace("the skip and upsampling", "the skips"))
    assert [r.name for r in R.graded_recipes(GradingSettings(miou="cpu"), b)] == ["cpu_fcn8s"]


def test_grading_refuses_a_tier_without_a_threshold_or_too_long_for_the_budget(tmp_path):
    with pytest.raises(InfrastructureError, match="no calibrated threshold for recipe gpu_fcn8s"):
        R.graded_recipes(GradingSettings(miou="gpu"), Bundle.for_assignment("fcn_segmentation"))
    with pytest.raises(InfrastructureError, match="may train for 600 s, more than the submission budget"):
        R.graded_recipes(GradingSettings(miou="cpu", submission_budget=500, request_timeout=100),
                         Bundle.for_assignment("fcn_segmentation"))
    doc = json.loads(FCN.thresholds.read_text())
    doc["recipes"]["cpu_fcn8s"]["status"] = "not yet measured"
    with pytest.raises(InfrastructureError, match="calibrate --assignment fcn_segmentation --tier cpu"):
        R.graded_recipes(GradingSettings(miou="cpu"), _bundle_with(tmp_path, thresholds=doc))


@pytest.mark.parametrize("name", ["fcn_segmentation", "transfer_learning"])
def test_every_recipe_test_is_a_rubric_entry_and_a_hidden_test(name):
    from autograder.rubric import load_rubric

    a = get_assignment(name)
    tests = {r.test for r in R.load_recipes(a.recipes).values() if r.test}
    assert tests and tests <= set(load_rubric(a.rubric))
    source = "".join(p.read_text() for p in a.hidden_tests.glob("test_*.py"))
    assert all(f"def {t}(" in source for t in tests)

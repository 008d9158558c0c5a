"""mIoU tiers: train the student's FCN-8s with the grading recipe in the sandbox, score it HERE.

The recipe is the bundle's (this package's ``recipes.toml``): the one whose ``test`` is this test at
the run's tier. The trusted side sends ``Recipe.to_dict()``, the training pairs and the test IMAGES
only; the worker runs :func:`assignment_lib.recipe.train_and_predict` (the function calibration runs
on the reference) and returns class-index maps; :func:`autograder.recipes.score_predictions`
computes the mIoU against test labels the sandbox never saw. The threshold is the recipe's record
in the bundle's ``thresholds.json``; the grading job refused beforehand to run a tier whose recipe,
weights or data differ from the calibration's (:func:`autograder.recipes.check_tier_ready`).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from autograder import recipes as R


def _run(submission, grading, tier, device):
    submission.require("fcn8s")
    recipe = R.grading_recipe(R.load_recipes(grading["bundle"]["recipes"]), tier)
    record = json.loads(Path(grading["bundle"]["thresholds"]).read_text())["recipes"][recipe.name]
    need = float(record["threshold"])
    baseline = record.get("constant_predictor_mean_iou")
    train, test = R.load_data(recipe.data, grading["settings"]["data_root"])
    vgg = None
    if recipe.init == "imagenet":
        from assignment_lib.weights import load_vgg16_state_dict

        vgg = load_vgg16_state_dict()
    resp = submission.request(
        "train_predict", timeout=recipe.timeout_s, name="FCN8s", recipe=recipe.to_dict(),
        loss_fn="soft_iou_loss" if recipe.config.loss == "soft_iou" else None,
        device=device, vgg16=vgg, train=[(torch.tensor(i), torch.tensor(t)) for i, t in train],
        test_images=[torch.tensor(i) for i, _ in test])
    preds = resp["predictions"]
    assert type(preds) is list and all(type(p) is torch.Tensor for p in preds), \
        "FCN8s's predictions did not come back as class maps"
    try:
        miou = R.score_predictions(preds, test, recipe.config.n_classes)["mean_iou"]
    except ValueError as err:
        pytest.fail(str(err))
    return miou, need, R.threshold_credit(miou, need, baseline)


@pytest.mark.gpu
def test_fcn8s_miou_gpu(submission, grading, partial):
    device = grading.get("device")
    if grading["settings"]["miou"] != "gpu" or not device:
        pytest.skip("not run: needs a GPU")
    miou, need, credit = _run(submission, grading, "gpu", device)
    partial(credit, f"mIoU {miou:.3f} (threshold {need:.3f})")
    assert miou >= need, f"FCN-8s reached mIoU {miou:.3f} on held-out images; needs {need:.3f}"


def test_fcn8s_miou_cpu(submission, grading, partial):
    if grading["settings"]["miou"] != "cpu":
        pytest.skip("not run: the CPU mIoU tier is off for this run (opt-in)")
    miou, need, credit = _run(submission, grading, "cpu", "cpu")
    partial(credit, f"mIoU {miou:.3f} (threshold {need:.3f})")
    assert miou >= need, f"FCN-8s reached mIoU {miou:.3f} on held-out images; needs {need:.3f}"

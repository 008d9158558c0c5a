"""mIoU tiers: train the student's FCN-8s with a fixed recipe in the sandbox, score it HERE.

The trusted side sends training pairs and test IMAGES only; the worker returns class-index maps and
the mIoU is computed against test labels the sandbox never saw. Recipes and thresholds come from
``autograder/recipes.py`` and ``autograder/thresholds.json`` (``{tier: {"FCN8s": min mIoU}}``).
GPU tier: ``miou_tier="gpu"`` and a leased device; CPU tier: opt-in ``miou_tier="cpu"``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from assignment_lib import data as D
from assignment_lib import metrics as M


def _recipe(tier):
    try:
        from autograder import recipes
    except ImportError:
        pytest.skip("the mIoU tier is not configured (autograder/recipes.py is missing)")
    fn = getattr(recipes, "recipe", None)
    if fn is None:
        pytest.skip("autograder/recipes.py has no recipe(tier) function")
    thresholds = Path(recipes.__file__).with_name("thresholds.json")
    if not thresholds.is_file():
        pytest.skip("autograder/thresholds.json is missing")
    table = json.loads(thresholds.read_text())
    need = table.get(tier, {}).get("FCN8s")
    if need is None:
        pytest.skip(f"not run: no calibrated {tier.upper()} threshold yet; run "
                    f"`python -m autograder calibrate --tier {tier}` on the grading machine")
    record = table.get("recipes", {}).get(f"{tier}_fcn8s", {})
    return fn(tier), float(need), record.get("constant_predictor_mean_iou")


def _run(submission, grading, tier, device):
    submission.require("fcn8s")
    recipe, need, baseline = _recipe(tier)
    root = grading.get("data_root")
    max_side = recipe.get("max_side")
    train = D.load_split("train", root=root, max_side=max_side)[: recipe.get("n_train")]
    test = D.load_split(recipe.get("test_split", "val"), root=root,
                        max_side=max_side)[: recipe.get("n_test")]
    vgg = None
    if recipe.get("pretrained", True):
        from assignment_lib.weights import load_vgg16_state_dict
        try:
            vgg = load_vgg16_state_dict()
        except Exception as err:  # no weights on this machine: the tier cannot be run fairly
            pytest.skip(f"no VGG-16 weights for the mIoU tier: {err}")
    resp = submission.request(
        "train_predict", timeout=recipe.get("timeout_s", 1800), name="FCN8s", n_classes=12,
        config=recipe["config"], device=device, max_side=max_side, vgg16=vgg,
        train=[(torch.tensor(i), torch.tensor(t)) for i, t in train],
        test_images=[torch.tensor(i) for i, _ in test])
    preds = resp["predictions"]
    assert type(preds) is list and len(preds) == len(test), "wrong number of predictions"
    cm = torch.zeros(12, 12, dtype=torch.int64)
    for p, (_, t) in zip(preds, test):
        t = torch.as_tensor(t)
        assert type(p) is torch.Tensor and p.shape == t.shape, (
            "a prediction has the wrong size: FCN8s must return logits of the input's size")
        cm += M.confusion_matrix(p.long(), t, 12, ignore_index=D.IGNORE_INDEX)
    miou = float(M.mean_iou(cm))
    return miou, need, _credit(miou, need, baseline)


def _credit(miou, need, baseline):
    """Partial credit: 0 at the calibrated always-the-most-frequent-class mIoU, 1 at the threshold.

    Scaling from 0 would hand a model that learned nothing most of the points, since a constant
    predictor already scores a fraction of the threshold.
    """
    floor = float(baseline) if baseline is not None and float(baseline) < need else 0.0
    return max(0.0, min(1.0, (miou - floor) / (need - floor)))


@pytest.mark.gpu
def test_fcn8s_miou_gpu(submission, grading, partial):
    device = grading.get("device")
    if grading.get("miou_tier") != "gpu" or not device:
        pytest.skip("not run: needs a GPU")
    miou, need, credit = _run(submission, grading, "gpu", device)
    partial(credit, f"mIoU {miou:.3f} (threshold {need:.3f})")
    assert miou >= need, f"FCN-8s reached mIoU {miou:.3f} on held-out images; needs {need:.3f}"


def test_fcn8s_miou_cpu(submission, grading, partial):
    if grading.get("miou_tier") != "cpu":
        pytest.skip("not run: the CPU mIoU tier is off for this run (opt-in)")
    miou, need, credit = _run(submission, grading, "cpu", "cpu")
    partial(credit, f"mIoU {miou:.3f} (threshold {need:.3f})")
    assert miou >= need, f"FCN-8s reached mIoU {miou:.3f} on held-out images; needs {need:.3f}"

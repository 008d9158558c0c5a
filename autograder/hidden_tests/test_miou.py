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
    return fn(tier), json.loads(thresholds.read_text())[tier]


def _run(submission, grading, tier, device):
    submission.require("fcn8s")
    recipe, thresholds = _recipe(tier)
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
        train=[(torch.as_tensor(i), torch.as_tensor(t)) for i, t in train],
        test_images=[torch.as_tensor(i) for i, _ in test])
    preds = resp["predictions"]
    assert type(preds) is list and len(preds) == len(test), "wrong number of predictions"
    cm = torch.zeros(12, 12, dtype=torch.int64)
    for p, (_, t) in zip(preds, test):
        t = torch.as_tensor(t)
        assert type(p) is torch.Tensor and p.shape == t.shape, (
            "a prediction has the wrong size: FCN8s must return logits of the input's size")
        cm += M.confusion_matrix(p.long(), t, 12, ignore_index=D.IGNORE_INDEX)
    miou = float(M.mean_iou(cm))
    need = float(thresholds["FCN8s"])
    return miou, need


@pytest.mark.gpu
def test_fcn8s_miou_gpu(submission, grading, partial):
    device = grading.get("device")
    if grading.get("miou_tier") != "gpu" or not device:
        pytest.skip("not run: needs a GPU")
    miou, need = _run(submission, grading, "gpu", device)
    partial(min(1.0, miou / need), f"mIoU {miou:.3f} (threshold {need:.3f})")
    assert miou >= need, f"FCN-8s reached mIoU {miou:.3f} on held-out images; needs {need:.3f}"


def test_fcn8s_miou_cpu(submission, grading, partial):
    if grading.get("miou_tier") != "cpu":
        pytest.skip("not run: the CPU mIoU tier is off for this run (opt-in)")
    miou, need = _run(submission, grading, "cpu", "cpu")
    partial(min(1.0, miou / need), f"mIoU {miou:.3f} (threshold {need:.3f})")
    assert miou >= need, f"FCN-8s reached mIoU {miou:.3f} on held-out images; needs {need:.3f}"

"""Linear probe: the student's ``replace_head`` and ``set_trainable`` on a VGG-16 with the ImageNet
convolutions, the head trained on facade parts in the sandbox, scored HERE.

The sandbox builds torchvision's VGG-16, receives the ImageNet convolution weights as tensors (it
cannot read the weights file), runs the student's ``replace_head(model, 10)`` and
``set_trainable(model, "feature_extractor")``, then :func:`assignment_lib.transfer.probe_predictions`
(the function calibration runs on the reference) on the training crops and the eval IMAGES only; it
returns class indices, and :func:`autograder.probe.score_accuracy` scores them against eval labels
the sandbox never saw. The recipe is the bundle's (this package's ``recipes.toml``: the one whose
``test`` is this test); its threshold and the constant predictor's accuracy are its record in the
bundle's ``thresholds.json`` (``calibrate --assignment transfer_learning``), and partial credit
scales from the one to the other. The grading job refused beforehand to run the tier when the
recipe, the data or the weights differ from the calibration's
(:func:`autograder.recipes.check_tier_ready`).

What it catches: a ``set_trainable`` that re-initialises or unfreezes the convolutions in
feature_extractor mode, a head that does not train, a ``replace_head`` whose pooling or head breaks
the features.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from assignment_lib.facade_parts import N_PART_CLASSES
from autograder import recipes as R
from autograder.probe import score_accuracy
from autograder.sandbox import SandboxError

#: Handles of the objects the test stores in the sandbox.
VGG, FEATURES, MODEL = "probe_vgg", "probe_vgg_features", "probe_model"


def grading_recipe(grading, tier: str = "cpu") -> R.Recipe:
    """The bundle's recipe whose hidden test this is, at ``tier``."""
    return R.grading_recipe(R.load_recipes(grading["bundle"]["recipes"]), tier)


def _infrastructure(request, message):
    """Not the student's fault: the job reports it and grades nothing (as a sandbox that cannot start)."""
    request.config._grading_infrastructure = message
    pytest.skip(f"not run: {message}")


def _trusted_inputs(request, grading, recipe):
    """Threshold, baseline, data and ImageNet weights, or an infrastructure stop."""
    from autograder.probe import load_probe_data

    path = Path(grading["bundle"]["thresholds"])
    table = json.loads(path.read_text()) if path.is_file() else {}
    record = table.get("recipes", {}).get(recipe.name, {})
    need = record.get("threshold") if record.get("status") == "measured" else None
    if need is None:
        _infrastructure(request, f"no calibrated threshold for recipe {recipe.name} in {path}")
    root = grading["settings"].get("data_root")
    try:
        data = load_probe_data(recipe.data, root)
    except (OSError, ValueError) as err:  # DataError is an OSError/ValueError subclass
        _infrastructure(request, f"no usable CMP Facade data for the probe ({err})")
    try:
        from assignment_lib.weights import load_vgg16_state_dict

        vgg = load_vgg16_state_dict()
    except Exception as err:
        _infrastructure(request, f"the probe needs the ImageNet VGG-16 weights; set VGG16_WEIGHTS ({err})")
    features = [(k.removeprefix("features."), v) for k, v in vgg.items() if k.startswith("features.")]
    return float(need), record.get("constant_predictor_accuracy"), data, features


def _predict(submission, recipe, train, eval_images, features):
    """The sandbox sequence; returns the predicted classes or fails the test with what went wrong."""
    ref = submission.ref
    submission.new(VGG, "torchvision.models.vgg16", weights=None, seed=0)
    submission.invoke("torch.nn.Module.get_submodule", ref(VGG), "features", handle=FEATURES)
    submission.load(FEATURES, tensors=features)
    try:
        submission.invoke("replace_head", ref(VGG), N_PART_CLASSES, handle=MODEL)
    except SandboxError as err:
        pytest.fail(f"replace_head(vgg16, {N_PART_CLASSES}) raised: {err}")
    try:
        submission.invoke("set_trainable", ref(MODEL), "feature_extractor")
    except SandboxError as err:
        pytest.fail(f"set_trainable(model, 'feature_extractor') raised: {err}")
    resp = submission.request(
        "invoke", timeout=recipe.timeout_s, name="assignment_lib.transfer.probe_predictions",
        args=[ref(MODEL), [train[0], train[1]], eval_images, recipe.config.to_dict()],
        kwargs={"device": "cpu"}, handle=None, grad=[])
    if not resp.get("ok"):
        pytest.fail(f"training the head of your model (replace_head, then set_trainable(model, "
                    f"'feature_extractor')) raised {resp.get('raised')}: {resp.get('message')}; check "
                    "that replace_head returns the model and that the new head stays trainable")
    return resp["value"]


def test_probe_accuracy_cpu(submission, grading, partial, request):
    if grading["settings"]["miou"] != "cpu":
        pytest.skip("not run: the CPU trained-model tier is off for this run (opt-in)")
    submission.require("transfer_head")
    recipe = grading_recipe(grading)
    need, baseline, ((x, y), (x_eval, y_eval)), features = _trusted_inputs(request, grading, recipe)
    preds = _predict(submission, recipe, (x, y), x_eval, features)
    if type(preds) is not torch.Tensor:
        pytest.fail(f"the probe's predictions came back as {type(preds).__name__}, not a tensor of classes")
    try:
        accuracy = score_accuracy(preds, y_eval)["accuracy"]
    except ValueError as err:
        pytest.fail(str(err))
    partial(R.threshold_credit(accuracy, need, baseline), f"probe accuracy {accuracy:.3f} (threshold {need:.3f})")
    assert accuracy >= need, (
        f"a linear probe on your VGG-16 (ImageNet convolutions frozen by set_trainable(model, "
        f"'feature_extractor'), your head trained for {recipe.config.epochs} epochs on "
        f"{recipe.data.n_train_per_class} facade parts per class) reached accuracy {accuracy:.3f} on "
        f"{len(y_eval)} held-out parts; needs {need:.3f} (a constant guess scores "
        f"{baseline if baseline is not None else 1 / N_PART_CLASSES:.3f}). Check that feature_extractor "
        "mode keeps the pretrained convolution weights (no reset_parameters() outside scratch) and "
        "freezes them, and that the head is Linear(512, 256), ReLU, Dropout, Linear(256, n_classes) "
        "after a global average pooling")

"""Self-checks of the transfer-learning notebook (``transfer_and_features.ipynb``).

Like :mod:`assignment_lib.checks`: each ``check_*`` takes your function, tries it on small models
on the CPU in a few seconds, prints one ``✓ ...`` line per passed check and raises
``AssertionError`` saying what is wrong and what to look at. More tests run after you hand in.

Most checks use :class:`assignment_lib.transfer.TinyVGG`, a toy with VGG's layout
(``features``, ``avgpool``, ``classifier``), so that they are fast and your functions are tried
on a second architecture: write them for any model with that layout, not for VGG-16's indices.
"""

from __future__ import annotations

import torch
import torchvision
from torch import nn

from .transfer import TinyVGG, optimizer_step, training_flags

MODES = ("feature_extractor", "fine_tune", "scratch")


def _ok(message: str) -> None:
    print(f"\u2713 {message}")


def _trainable(model: nn.Module) -> dict[str, bool]:
    return {n: p.requires_grad for n, p in model.named_parameters()}


def check_replace_head(replace_head) -> None:
    """``replace_head(vgg16, n_classes)``: global average pooling and the new classifier of the
    notebook, in place; logits (N, n_classes) at any input size >= 32 px."""
    model = torchvision.models.vgg16(weights=None)
    conv_before = model.features[0].weight.detach().clone()
    out = replace_head(model, 7)
    assert out is model, ("replace_head must change the model IN PLACE and return it (return "
                          "model at the end)")
    assert isinstance(model.avgpool, nn.AdaptiveAvgPool2d) and model.avgpool.output_size in (1, (1, 1)), (
        "model.avgpool should be nn.AdaptiveAvgPool2d(1): global average pooling turns the 512 "
        "feature maps into 512 numbers, whatever the input size")
    head = model.classifier
    assert isinstance(head, nn.Sequential), "model.classifier should be an nn.Sequential"
    kinds = [type(m).__name__ for m in head]
    assert kinds == ["Linear", "ReLU", "Dropout", "Linear"], (
        f"model.classifier is {kinds}; the notebook asks for Linear, ReLU, Dropout, Linear")
    assert (head[0].in_features, head[0].out_features) == (512, 256), (
        f"the first Linear maps {head[0].in_features} -> {head[0].out_features}; after global "
        "average pooling VGG-16 gives 512 numbers, and the hidden layer has 256")
    assert (head[3].in_features, head[3].out_features) == (256, 7), (
        f"the last Linear maps {head[3].in_features} -> {head[3].out_features}; it must map the 256 "
        "hidden units to n_classes (7 here)")
    assert abs(head[2].p - 0.5) < 1e-9, f"Dropout has p={head[2].p}; use 0.5"
    assert torch.equal(model.features[0].weight, conv_before), (
        "replace_head changed the convolutions: keep model.features as it is (it holds the "
        "ImageNet weights)")
    _ok("head: global average pooling, Linear(512, 256), ReLU, Dropout(0.5), Linear(256, n_classes)")
    model.eval()
    with torch.no_grad():
        for n, h, w in ((2, 32, 32), (1, 50, 61)):
            y = model(torch.randn(n, 3, h, w))
            assert tuple(y.shape) == (n, 7), (
                f"an input (N={n}, 3, {h}, {w}) gave output {tuple(y.shape)}, expected ({n}, 7)")
    _ok("logits (N, n_classes) for inputs of 32x32 and 50x61 pixels")


def check_set_trainable(set_trainable) -> None:
    """``set_trainable(model, mode)`` on :class:`TinyVGG`: which parameters train in each mode,
    weights kept or re-initialised, ValueError for an unknown mode, frozen weights unchanged by an
    optimiser step."""
    for mode in MODES:
        torch.manual_seed(0)
        model = TinyVGG()
        before = {n: p.detach().clone() for n, p in model.named_parameters()}
        out = set_trainable(model, mode)
        assert out is model, f"set_trainable(model, {mode!r}) must change the model in place and return it"
        flags = _trainable(model)
        features_frozen = mode == "feature_extractor"
        if features_frozen:
            wrong = [n for n, f in flags.items() if f != (not n.startswith("features."))]
            assert not wrong, (
                f"feature_extractor: these parameters have the wrong requires_grad: {wrong}. Freeze "
                "every parameter of model.features (requires_grad False) and train all the others "
                "(the classifier)")
        else:
            frozen = [n for n, f in flags.items() if not f]
            assert not frozen, (f"{mode}: every parameter must be trainable, but these are frozen: "
                                f"{frozen} (a model may come in frozen: set requires_grad True everywhere)")
        changed = [n for n, p in model.named_parameters() if not torch.equal(p, before[n])]
        if mode == "scratch":
            kept = [n for n in before if n not in changed and n.endswith("weight")]
            assert not kept, (f"scratch: these weights were not re-initialised: {kept}. Call "
                              "reset_parameters() of every layer that has one")
        else:
            assert not changed, (f"{mode}: set_trainable changed the weights {changed}; only scratch "
                                 "re-initialises")
        _ok(f"{mode}: the right parameters train" + (
            ", every weight re-initialised" if mode == "scratch" else ", weights kept"))
    model = TinyVGG()
    model.features.requires_grad_(False)
    set_trainable(model, "fine_tune")
    assert all(_trainable(model).values()), (
        "fine_tune after feature_extractor left parameters frozen: set requires_grad True for all")
    _ok("fine_tune unfreezes a model that was frozen before")
    try:
        set_trainable(TinyVGG(), "freeze_all")
    except ValueError:
        _ok("an unknown mode raises ValueError")
    else:
        raise AssertionError("set_trainable(model, 'freeze_all') should raise ValueError "
                             f"(modes: {MODES})")
    torch.manual_seed(1)
    model = set_trainable(TinyVGG(), "feature_extractor")
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    optimizer_step(model, torch.randn(4, 3, 16, 16), torch.tensor([0, 1, 2, 3]))
    moved = [n for n, p in model.named_parameters() if n.startswith("features.")
             and not torch.equal(p, before[n])]
    assert not moved, (f"feature_extractor: one SGD step changed the frozen {moved}: their "
                       "requires_grad must be False so that they get no gradient")
    assert not torch.equal(model.classifier[-1].weight, before["classifier.3.weight"]), (
        "feature_extractor: one SGD step did not change the classifier: it must stay trainable")
    _ok("feature_extractor: an optimiser step changes the classifier only")


def check_extract_features(extract_features) -> None:
    """``extract_features(model, images)`` on :class:`TinyVGG`: the input of the last classifier
    layer, (N, D) float32 on the CPU, deterministic, without autograd graph, mode restored."""
    torch.manual_seed(0)
    model = TinyVGG(n_classes=5, hidden=12)
    images = torch.randn(70, 3, 20, 24)
    model.train()
    feats = extract_features(model, images)
    assert isinstance(feats, torch.Tensor), f"extract_features returned {type(feats).__name__}, not a tensor"
    assert tuple(feats.shape) == (70, 12), (
        f"features of 70 images have shape {tuple(feats.shape)}; expected (70, 12): one row per "
        "image, D = the number of inputs of the LAST layer of model.classifier (its in_features)")
    assert feats.dtype == torch.float32 and feats.device.type == "cpu", (
        f"return float32 features on the CPU (got {feats.dtype} on {feats.device})")
    _ok("shape (N, D) with D = in_features of the last classifier layer, float32 on the CPU")
    assert feats.grad_fn is None and not feats.requires_grad, (
        "the features carry an autograd graph: compute them under torch.no_grad()")
    _ok("no autograd graph")
    assert all(training_flags(model)), (
        "the model was in train mode before extract_features and is not any more: remember "
        "model.training and restore it at the end (model.train(mode_before))")
    model.eval()
    extract_features(model, images[:3])
    assert not any(training_flags(model)), "a model in eval mode must stay in eval mode"
    _ok("the model's train/eval mode is restored")
    model.train()
    again = extract_features(model, images)
    assert torch.equal(feats, again), (
        "two calls gave different features: dropout was active. Switch to eval mode "
        "(model.eval()) while extracting")
    _ok("deterministic (dropout off)")
    model.eval()
    with torch.no_grad():
        logits = model(images)
        through_last = model.classifier[-1](feats)
    assert torch.allclose(through_last, logits, atol=1e-5), (
        "the last classifier layer applied to your features does not give the model's logits: "
        "the features must be exactly what enters that layer (after the hidden Linear and ReLU)")
    _ok("last layer(features) == the model's logits")

"""assignment_lib.transfer (the classifier loop of the transfer-learning notebooks), its SIZES rows,
and assignment_lib.transfer_checks against the reference answers and against wrong ones."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from assignment_lib import config, transfer
from assignment_lib import transfer_checks as checks
from assignment_lib.facade_parts import PartsConfig


def _blobs(n=64, seed=0):
    """Two classes told apart by the mean colour: a 2-class problem any classifier learns."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 2
    x = torch.randn(n, 3, 8, 8, generator=g) * 0.3 + (y.float() * 2 - 1).view(-1, 1, 1, 1)
    return x, y.to(torch.int64)


@pytest.mark.parametrize("budget", config.BUDGETS)
def test_sizes_rows_are_valid(budget):
    entry = config.sizes("transfer_and_features", budget)
    PartsConfig(**entry["parts"])
    transfer.ClassifierConfig(**entry["train"])
    assert entry["train"]["epochs"] >= 2  # features after the first AND the last epoch differ
    epochs = [config.SIZES["transfer_and_features"][b]["train"]["epochs"] for b in config.BUDGETS]
    assert epochs == sorted(epochs, reverse=True)


def test_fit_learns_trains_only_trainable_and_is_seeded():
    x, y = _blobs()
    results = []
    for _ in range(2):
        torch.manual_seed(0)
        model = transfer.TinyVGG(n_classes=2)
        model.features.requires_grad_(False)
        frozen = model.features[0].weight.detach().clone()
        seen = []
        hist = transfer.fit_classifier(model, (x, y), transfer.ClassifierConfig(epochs=4, batch_size=16, lr=1e-2),
                                       test=(x, y), device="cpu", progress=False,
                                       on_epoch_end=lambda e, m, seen=seen: seen.append(e))
        assert torch.equal(model.features[0].weight, frozen)
        assert seen == [1, 2, 3, 4] and [h["epoch"] for h in hist] == [1, 2, 3, 4]
        results.append(hist[-1]["test_accuracy"])
        assert hist[-1]["loss"] < hist[0]["loss"]
    assert results[0] == results[1] and results[0] > 0.9
    model.features.requires_grad_(False)
    model.classifier.requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable parameter"):
        transfer.fit_classifier(model, (x, y), transfer.ClassifierConfig(epochs=1), device="cpu",
                                progress=False)
    with pytest.raises(ValueError, match="int64"):
        transfer.fit_classifier(model, (x, y.float()), transfer.ClassifierConfig(epochs=1), progress=False)


def test_evaluate_confusion_and_embeddings():
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 3))
    x, y = _blobs(30)
    r = transfer.evaluate_classifier(model, x, y, 3)
    assert r["confusion"].sum() == 30 and r["confusion"].shape == (3, 3)
    assert np.isnan(r["per_class_accuracy"][2])  # class 2 never occurs
    assert r["accuracy"] == pytest.approx(np.trace(r["confusion"]) / 30)
    feats = torch.randn(20, 6)
    for method in ("pca", "tsne"):
        assert transfer.embed_2d(feats, method).shape == (20, 2)
    with pytest.raises(ValueError):
        transfer.embed_2d(feats, "umap")


def test_vgg16_imagenet_loads_the_convolutions(vgg16_features_path):
    from assignment_lib.weights import load_vgg16_state_dict

    model = transfer.vgg16_imagenet(vgg16_features_path)
    state = load_vgg16_state_dict(vgg16_features_path)
    assert torch.equal(model.features[28].weight, state["features.28.weight"])


def test_vgg16_imagenet_downloads_only_when_asked(monkeypatch, tmp_path):
    """Offline by default (the grader must fail at once); ``download=True`` (the notebooks) reaches
    the download code with torchvision's URL when no file is found."""
    from assignment_lib import weights

    monkeypatch.delenv("VGG16_WEIGHTS", raising=False)
    monkeypatch.setattr(weights.torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    with pytest.raises(FileNotFoundError, match="download=True"):
        transfer.vgg16_imagenet()
    urls = []

    def no_network(url, dst, **kwargs):
        urls.append(url)
        raise OSError("offline")

    monkeypatch.setattr(weights.torch.hub, "download_url_to_file", no_network)
    with pytest.raises(RuntimeError, match="could not download"):
        transfer.vgg16_imagenet(download=True)
    assert urls == [weights.TORCHVISION_URL]


# ----------------------------------------------------------------- visible checks vs. answers


def _replace_head(model, n_classes, hidden=256, p=0.5, gap=True):
    if gap:
        model.avgpool = nn.AdaptiveAvgPool2d(1)
    model.classifier = nn.Sequential(nn.Linear(512 if gap else 512 * 49, hidden), nn.ReLU(inplace=True),
                                     nn.Dropout(p), nn.Linear(hidden, n_classes))
    return model


def _set_trainable(model, mode, bug=None):
    if mode not in checks.MODES:
        if bug == "no_error":
            return model
        raise ValueError(mode)
    if mode == "scratch" and bug != "scratch_keeps":
        for m in model.modules():
            if m is not model and hasattr(m, "reset_parameters"):
                m.reset_parameters()
    for p in model.parameters():
        p.requires_grad_(bug != "fine_tune_keeps" or mode != "fine_tune" or p.requires_grad)
    if mode == "feature_extractor":
        frozen = model if bug == "all_frozen" else model.features
        if bug == "eval_only":
            model.features.eval()
        else:
            frozen.requires_grad_(False)
    return model


def _extract(model, images, bug=None):
    was = model.training
    if bug != "train_mode":
        model.eval()
    with torch.enable_grad() if bug == "grad" else torch.no_grad():
        x = torch.flatten(model.avgpool(model.features(images)), 1)
        out = model.classifier(x) if bug == "logits" else model.classifier[:-1](x)
    if bug != "mode_lost":
        model.train(was)
    return out


def test_checks_pass_the_reference(capsys):
    checks.check_replace_head(_replace_head)
    checks.check_set_trainable(_set_trainable)
    checks.check_extract_features(_extract)
    assert capsys.readouterr().out.count("\u2713") == 13


@pytest.mark.parametrize("bug, match", [
    ("all_frozen", "wrong requires_grad"), ("eval_only", "wrong requires_grad"),
    ("scratch_keeps", "not re-initialised"), ("no_error", "ValueError"),
    ("fine_tune_keeps", "left parameters frozen")])
def test_check_set_trainable_catches(bug, match):
    with pytest.raises(AssertionError, match=match):
        checks.check_set_trainable(lambda m, mode: _set_trainable(m, mode, bug))


@pytest.mark.parametrize("bug, match", [
    ("train_mode", "dropout"), ("grad", "autograd"), ("logits", "expected"), ("mode_lost", "restore")])
def test_check_extract_features_catches(bug, match):
    with pytest.raises(AssertionError, match=match):
        checks.check_extract_features(lambda m, x: _extract(m, x, bug))


@pytest.mark.parametrize("kw, match", [({"hidden": 128}, "256"), ({"p": 0.2}, "p=0.2"),
                                        ({"gap": False}, "AdaptiveAvgPool2d")])
def test_check_replace_head_catches(kw, match):
    with pytest.raises(AssertionError, match=match):
        checks.check_replace_head(lambda m, n: _replace_head(m, n, **kw))

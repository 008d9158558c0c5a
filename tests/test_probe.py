"""The linear-probe test's pieces: the balanced subsets, the spec, the trusted scoring, the one
prediction function calibration and grading share, and the data/checksum on the full base set."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from assignment_lib.facade_parts import N_PART_CLASSES, balanced_subset
from assignment_lib.transfer import ClassifierConfig, TinyVGG, probe_predictions
from autograder.probe import (
    PartsSpec,
    constant_accuracy,
    load_probe_data,
    probe_checksum,
    score_accuracy,
)


def _toy(n_per_class=6, n_classes=3, size=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n_classes).repeat_interleave(n_per_class)
    x = torch.randn(len(y), 3, size, size, generator=g) + y.view(-1, 1, 1, 1).float() * 2
    return x, y


def test_balanced_subset_is_balanced_deterministic_and_keeps_pairs():
    x, y = _toy(n_per_class=6)
    y = y.flip(0).contiguous()  # labels not sorted in the source
    x = x.flip(0).contiguous()
    a = balanced_subset(x, y, 4, seed=3, n_classes=3)
    b = balanced_subset(x, y, 4, seed=3, n_classes=3)
    c = balanced_subset(x, y, 4, seed=4, n_classes=3)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])
    assert a[1].dtype == torch.int64 and a[1].tolist() == [0] * 4 + [1] * 4 + [2] * 4
    for img, label in zip(*a):  # every picked image is still with its own label
        i = next(k for k in range(len(x)) if torch.equal(x[k], img))
        assert int(y[i]) == int(label)


def test_balanced_subset_errors():
    x, y = _toy(n_per_class=2)
    with pytest.raises(ValueError, match="class 0 .*has 2 items, fewer than n_per_class=3"):
        balanced_subset(x, y, 3, n_classes=3)
    with pytest.raises(ValueError, match="n_per_class must be >= 1"):
        balanced_subset(x, y, 0, n_classes=3)
    with pytest.raises(ValueError, match="x has 6 items but y has 5"):
        balanced_subset(x, y[:5], 1, n_classes=3)


def test_parts_spec_round_trip_and_rejects_unknown_keys():
    spec = PartsSpec(size=48, n_train_per_class=40)
    assert PartsSpec.from_dict(spec.to_dict()) == spec
    with pytest.raises(ValueError, match=r"unknown PartsSpec keys \['n_evl'\]"):
        PartsSpec.from_dict({**spec.to_dict(), "n_evl": 300})
    with pytest.raises(ValueError, match="multiple of 10"):
        PartsSpec(n_eval=305)
    with pytest.raises(ValueError, match="must differ"):
        PartsSpec(train_split="test")


def test_score_accuracy_and_its_teaching_errors():
    labels = torch.tensor([0, 0, 1, 1, 2])
    r = score_accuracy(torch.tensor([0, 1, 1, 1, 0]), labels, n_classes=4)
    assert r["accuracy"] == pytest.approx(0.6)
    assert r["per_class_accuracy"][:3] == [0.5, 1.0, 0.0] and r["per_class_accuracy"][3] != r["per_class_accuracy"][3]
    with pytest.raises(ValueError, match="integer class indices.*argmax"):
        score_accuracy(torch.zeros(5, 4), labels)
    with pytest.raises(ValueError, match=r"\(4,\) predictions for 5 labels"):
        score_accuracy(torch.tensor([0, 1, 1, 1]), labels)
    with pytest.raises(ValueError, match="must lie in 0..9"):
        score_accuracy(torch.tensor([0, 1, 1, 1, 10]), labels)
    with pytest.raises(ValueError, match="tensor of class indices"):
        score_accuracy([0, 1, 1, 1, 0], labels)


def test_constant_accuracy_is_the_most_frequent_training_class():
    assert constant_accuracy([2, 2, 1], [2, 0, 2, 1]) == 0.5
    assert constant_accuracy([0, 1, 1, 0], [0, 1, 2, 3]) == 0.25  # tie: the smallest class


def test_probe_predictions_trains_then_predicts_classes():
    x, y = _toy(n_per_class=16)
    model = TinyVGG(n_classes=3)
    for p in model.features.parameters():
        p.requires_grad_(False)
    frozen = {n: t.clone() for n, t in model.features.state_dict().items()}
    cfg = ClassifierConfig(epochs=8, batch_size=8, lr=1e-2)
    pred = probe_predictions(model, (x, y), x, cfg.to_dict(), device="cpu")  # a dict is accepted too
    assert pred.dtype == torch.int64 and pred.shape == (len(x),)
    assert (pred == y).float().mean() > 0.6  # separable toy data
    assert all(torch.equal(frozen[n], t) for n, t in model.features.state_dict().items())
    with pytest.raises(ValueError, match=r"test images must be a float tensor \(M, 3, H, W\)"):
        probe_predictions(TinyVGG(n_classes=3), (x, y), x[:, 0], cfg)


def test_probe_predictions_is_deterministic_for_a_seed():
    x, y = _toy(n_per_class=8)
    cfg = ClassifierConfig(epochs=2, batch_size=8, lr=1e-2, seed=5)
    outs = []
    for _ in range(2):
        torch.manual_seed(0)
        outs.append(probe_predictions(TinyVGG(n_classes=3), (x, y), x, cfg, device="cpu"))
    assert torch.equal(outs[0], outs[1])


def test_probe_data_is_balanced_deterministic_and_checksummed(full_data_root):
    spec = PartsSpec(size=32, n_train_per_class=2, n_eval=20, n_train_images=40, n_eval_images=20)
    (x, y), (xe, ye) = load_probe_data(spec, full_data_root)
    assert x.shape == (2 * N_PART_CLASSES, 3, 32, 32) and x.dtype == torch.float32
    assert xe.shape == (2 * N_PART_CLASSES, 3, 32, 32)
    assert torch.bincount(y, minlength=N_PART_CLASSES).tolist() == [2] * N_PART_CLASSES
    assert torch.bincount(ye, minlength=N_PART_CLASSES).tolist() == [2] * N_PART_CLASSES
    (x2, _), _ = load_probe_data(spec, full_data_root)
    assert torch.equal(x, x2)
    digest = probe_checksum(spec, full_data_root)
    assert digest == probe_checksum(spec, full_data_root) and len(digest) == 64
    assert probe_checksum(dataclasses.replace(spec, seed=1), full_data_root) != digest
    assert probe_checksum(dataclasses.replace(spec, n_eval_images=21), full_data_root) != digest


def test_hidden_probe_test_stops_as_infrastructure_without_a_calibrated_threshold(tmp_path):
    """No measured threshold for the recipe in thresholds.json: not the student's fault; the job
    reports an infrastructure error (hidden_plugin writes ``_grading_infrastructure``) instead of
    scoring. (``check_tier_ready`` refuses this before grading; the test does not rely on it.)"""
    import types

    from autograder.assignment import get_assignment
    from autograder.assignments.transfer_learning.hidden_tests import test_probe as hidden

    (tmp_path / "thresholds.json").write_text(
        '{"cpu": {"FCN8s": 0.05}, "recipes": {"cpu_probe": {"status": "not yet measured"}}}')
    request = types.SimpleNamespace(config=types.SimpleNamespace())
    grading = {"bundle": {"thresholds": str(tmp_path / "thresholds.json"),
                          "recipes": str(get_assignment("transfer_learning").recipes)},
               "settings": {"data_root": None}}
    with pytest.raises(pytest.skip.Exception, match="no calibrated threshold for recipe cpu_probe"):
        hidden._trusted_inputs(request, grading, hidden.grading_recipe(grading))
    assert "no calibrated threshold for recipe cpu_probe" in request.config._grading_infrastructure

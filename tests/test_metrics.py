"""Tests of assignment_lib.metrics against hand-computed examples, the FCN authors' numpy
formulation (course handout / shelhamer/fcn.berkeleyvision.org score.py) and torchmetrics."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torchmetrics.classification import MulticlassConfusionMatrix, MulticlassJaccardIndex

from assignment_lib.metrics import (
    SegmentationMetrics,
    confusion_matrix,
    frequency_weighted_iou,
    iou_per_class,
    mean_iou,
    mean_pixel_accuracy,
    pixel_accuracy,
)


# ---- the reference formulation from the handout, written with numpy only ----------------------
def np_hist(gt: np.ndarray, pred: np.ndarray, n: int, ignore_index=None) -> np.ndarray:
    mask = (gt >= 0) & (gt < n)
    if ignore_index is not None:
        mask &= gt != ignore_index
    return np.bincount(n * gt[mask].astype(int) + pred[mask], minlength=n ** 2).reshape(n, n)


def np_scores(hist: np.ndarray) -> dict:
    with np.errstate(divide="ignore", invalid="ignore"):
        diag = np.diag(hist)
        acc = diag.sum() / hist.sum()
        acc_cls = np.nanmean(diag / hist.sum(1))
        iu = diag / (hist.sum(1) + hist.sum(0) - diag)
        mean_iu = np.nanmean(iu)
        freq = hist.sum(1) / hist.sum()
        fwavacc = (freq[freq > 0] * iu[freq > 0]).sum()
    return {"acc": acc, "acc_cls": acc_cls, "iu": iu, "mean_iu": mean_iu, "fwavacc": fwavacc}


def random_batch(seed, n_classes=5, shape=(3, 17, 23), ignore_index=None, absent=()):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(shape[0], n_classes, *shape[1:], generator=g)
    target = torch.randint(0, n_classes, shape, generator=g)
    for c in absent:  # remove class c from both target and prediction
        target[target == c] = (c + 1) % n_classes
        logits[:, c] = -1e9
    if ignore_index is not None:
        target[torch.rand(shape, generator=g) < 0.2] = ignore_index
    return logits, target


# ---- hand-computed example -----------------------------------------------------------------
def test_hand_computed_example():
    # 1 image 2x3, 3 classes; class 2 never occurs in the target but is predicted once.
    target = torch.tensor([[[0, 0, 1], [1, 1, 0]]])
    pred = torch.tensor([[[0, 1, 1], [1, 2, 0]]])
    cm = confusion_matrix(pred, target, 3)
    assert cm.dtype == torch.int64 and cm.shape == (3, 3)
    # rows = ground truth, columns = prediction
    assert cm.tolist() == [[2, 1, 0], [0, 2, 1], [0, 0, 0]]
    assert pixel_accuracy(cm) == pytest.approx(4 / 6)
    # per-class accuracy: 2/3, 2/3, class 2 absent from target -> left out
    assert mean_pixel_accuracy(cm) == pytest.approx(2 / 3)
    # IoU: class 0: 2/(3+2-2)=2/3; class 1: 2/(3+3-2)=1/2; class 2 predicted but absent: 0/1=0
    assert iou_per_class(cm).tolist() == pytest.approx([2 / 3, 1 / 2, 0.0])
    assert mean_iou(cm) == pytest.approx((2 / 3 + 1 / 2 + 0) / 3)
    assert frequency_weighted_iou(cm) == pytest.approx(0.5 * 2 / 3 + 0.5 * 1 / 2)


def test_absent_class_gets_nan_and_is_left_out_of_means():
    target = torch.tensor([[0, 0, 1, 1]])
    pred = torch.tensor([[0, 1, 1, 1]])
    cm = confusion_matrix(pred, target, 4)  # classes 2 and 3 appear nowhere
    iou = iou_per_class(cm)
    assert iou.dtype == torch.float64
    assert iou[0] == pytest.approx(1 / 2) and iou[1] == pytest.approx(2 / 3)
    assert math.isnan(iou[2]) and math.isnan(iou[3])
    assert mean_iou(cm) == pytest.approx((1 / 2 + 2 / 3) / 2)  # not divided by 4
    assert mean_pixel_accuracy(cm) == pytest.approx((1 / 2 + 1) / 2)


def test_empty_matrix_gives_nan():
    cm = torch.zeros(3, 3, dtype=torch.int64)
    for f in (pixel_accuracy, mean_pixel_accuracy, mean_iou, frequency_weighted_iou):
        assert math.isnan(f(cm))


def test_logits_equal_argmax_indices():
    logits, target = random_batch(0)
    assert torch.equal(confusion_matrix(logits, target, 5),
                       confusion_matrix(logits.argmax(1), target, 5))


# ---- equality with the numpy formulation of the handout -------------------------------------------
@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("ignore_index", [None, 255])
def test_equals_numpy_handout_formulation(seed, ignore_index):
    absent = (3,) if seed % 2 else ()
    logits, target = random_batch(seed, n_classes=6, ignore_index=ignore_index, absent=absent)
    pred = logits.argmax(1)
    cm = confusion_matrix(logits, target, 6, ignore_index=ignore_index)
    hist = np_hist(target.numpy(), pred.numpy(), 6, ignore_index)
    np.testing.assert_array_equal(cm.numpy(), hist)
    ref = np_scores(hist)
    assert pixel_accuracy(cm) == pytest.approx(ref["acc"], abs=1e-12)
    assert mean_pixel_accuracy(cm) == pytest.approx(ref["acc_cls"], abs=1e-12)
    np.testing.assert_allclose(iou_per_class(cm).numpy(), ref["iu"], atol=1e-12, equal_nan=True)
    assert mean_iou(cm) == pytest.approx(ref["mean_iu"], abs=1e-12)
    assert frequency_weighted_iou(cm) == pytest.approx(ref["fwavacc"], abs=1e-12)
    if absent:
        assert math.isnan(iou_per_class(cm)[3])


# ---- equality with torchmetrics -------------------------------------------------------------------
@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("ignore_index", [None, 255])
def test_equals_torchmetrics(seed, ignore_index):
    n = 7
    absent = (2, 5) if seed % 2 else ()
    logits, target = random_batch(seed + 100, n_classes=n, ignore_index=ignore_index, absent=absent)
    pred = logits.argmax(1)
    cm = confusion_matrix(pred, target, n, ignore_index=ignore_index)

    tm_cm = MulticlassConfusionMatrix(n, ignore_index=ignore_index)(pred, target)
    assert torch.equal(cm, tm_cm.long())  # same convention: rows = target, columns = prediction

    # Per class, torchmetrics returns `zero_division` (0) where IoU is 0/0, we return NaN:
    # the definitions agree only on classes present in the target or the prediction.
    tm_iou = MulticlassJaccardIndex(n, average=None, ignore_index=ignore_index)(pred, target)
    ours = iou_per_class(cm)
    defined = ~torch.isnan(ours)
    assert defined.sum() == n - len(absent)
    torch.testing.assert_close(ours[defined], tm_iou.double()[defined], atol=1e-6, rtol=0)
    # torchmetrics' macro average gives weight 0 to classes absent from both, like our nanmean.
    tm_miou = MulticlassJaccardIndex(n, average="macro", ignore_index=ignore_index)(pred, target)
    assert mean_iou(cm) == pytest.approx(float(tm_miou), abs=1e-6)


# ---- ignore_index --------------------------------------------------------------------------------
def test_ignore_index_pixels_are_not_counted():
    target = torch.tensor([[0, 255, 1, 255]])
    pred = torch.tensor([[0, 1, 1, 0]])
    cm = confusion_matrix(pred, target, 2, ignore_index=255)
    assert cm.tolist() == [[1, 0], [0, 1]]
    assert pixel_accuracy(cm) == 1.0
    with pytest.raises(ValueError, match="outside 0..1"):
        confusion_matrix(pred, target, 2)  # 255 without ignore_index is an error


def test_ignore_index_inside_class_range():
    target = torch.tensor([[0, 1, 2, 2]])
    pred = torch.tensor([[0, 1, 1, 2]])
    cm = confusion_matrix(pred, target, 3, ignore_index=2)
    assert cm.tolist() == [[1, 0, 0], [0, 1, 0], [0, 0, 0]]


# ---- streaming -----------------------------------------------------------------------------------
def test_streaming_equals_one_shot():
    batches = [random_batch(s, n_classes=5, ignore_index=255) for s in range(4)]
    metrics = SegmentationMetrics(5, ignore_index=255)
    for logits, target in batches:
        metrics.update(logits, target)
    got = metrics.compute()
    all_logits = torch.cat([b[0] for b in batches])
    all_target = torch.cat([b[1] for b in batches])
    cm = confusion_matrix(all_logits, all_target, 5, ignore_index=255)
    assert torch.equal(got["confusion_matrix"], cm)
    assert got["pixel_accuracy"] == pixel_accuracy(cm)
    assert got["mean_pixel_accuracy"] == mean_pixel_accuracy(cm)
    assert got["mean_iou"] == mean_iou(cm)
    assert got["frequency_weighted_iou"] == frequency_weighted_iou(cm)
    assert got["iou_per_class"] == iou_per_class(cm).tolist()
    assert isinstance(got["iou_per_class"], list) and len(got["iou_per_class"]) == 5

    metrics.reset()
    assert int(metrics.compute()["confusion_matrix"].sum()) == 0
    assert math.isnan(metrics.compute()["mean_iou"])
    metrics.update(*batches[0])
    assert torch.equal(metrics.compute()["confusion_matrix"],
                       confusion_matrix(*batches[0], 5, ignore_index=255))


def test_streaming_on_explicit_device_and_no_grad():
    logits, target = random_batch(7)
    logits.requires_grad_(True)
    metrics = SegmentationMetrics(5, device="cpu")
    metrics.update(logits, target)
    assert metrics.confusion_matrix.device.type == "cpu"
    assert int(metrics.confusion_matrix.sum()) == target.numel()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_equals_cpu():
    logits, target = random_batch(3, ignore_index=255)
    cm_gpu = confusion_matrix(logits.cuda(), target.cuda(), 5, ignore_index=255)
    assert cm_gpu.device.type == "cuda"
    assert torch.equal(cm_gpu.cpu(), confusion_matrix(logits, target, 5, ignore_index=255))


# ---- invalid input -------------------------------------------------------------------------------
def test_float_target_is_rejected():
    with pytest.raises(TypeError, match="integer class indices"):
        confusion_matrix(torch.zeros(1, 2, 2, dtype=torch.long), torch.zeros(1, 2, 2), 3)


def test_float_pred_that_is_not_logits_is_rejected():
    with pytest.raises(TypeError, match="logits"):
        confusion_matrix(torch.zeros(1, 2, 2), torch.zeros(1, 2, 2, dtype=torch.long), 3)


def test_logits_with_wrong_channel_count():
    with pytest.raises(ValueError, match="4 channels"):
        confusion_matrix(torch.zeros(1, 4, 2, 2), torch.zeros(1, 2, 2, dtype=torch.long), 3)


def test_shape_mismatch():
    with pytest.raises(ValueError, match="does not match"):
        confusion_matrix(torch.zeros(1, 2, 3, dtype=torch.long),
                         torch.zeros(1, 3, 2, dtype=torch.long), 3)


def test_out_of_range_values():
    t = torch.tensor([[0, 1, 3]])
    with pytest.raises(ValueError, match=r"target has values \[3\]"):
        confusion_matrix(torch.tensor([[0, 1, 2]]), t, 3)
    with pytest.raises(ValueError, match=r"pred has values \[-1\]"):
        confusion_matrix(torch.tensor([[0, -1, 2]]), torch.tensor([[0, 1, 2]]), 3)


def test_bad_n_classes_and_bad_matrix():
    with pytest.raises(ValueError, match="n_classes"):
        confusion_matrix(torch.zeros(2, dtype=torch.long), torch.zeros(2, dtype=torch.long), 0)
    with pytest.raises(ValueError, match="square"):
        mean_iou(torch.zeros(3, 4))
    with pytest.raises(ValueError, match="n_classes"):
        SegmentationMetrics(2.5)


@pytest.mark.parametrize("ignore_index", [None, 255])
def test_cpu_and_torch_paths_count_the_same(ignore_index):
    """CPU tensors are counted through numpy views, CUDA ones with torch ops: same numbers."""
    from assignment_lib.metrics import _confusion_matrix_cpu, _confusion_matrix_torch

    g = torch.Generator().manual_seed(3)
    target = torch.randint(0, 12, (2, 33, 47), generator=g)
    if ignore_index is not None:
        target[torch.rand(target.shape, generator=g) < 0.1] = ignore_index
    pred = torch.randint(0, 12, target.shape, generator=g).to(torch.uint8)
    a = _confusion_matrix_torch(pred, target, 12, ignore_index)
    b = _confusion_matrix_cpu(pred.reshape(-1).numpy(), target.reshape(-1).numpy(), 12, ignore_index)
    assert a.dtype == b.dtype == torch.int64 and torch.equal(a, b)
    assert int(a.sum()) == int((target != (ignore_index if ignore_index is not None else -1)).sum())
    bad = target.clone()
    bad[0, 0, 0] = 12
    for count in (_confusion_matrix_torch, _confusion_matrix_cpu):
        args = (pred, bad) if count is _confusion_matrix_torch else (
            pred.reshape(-1).numpy(), bad.reshape(-1).numpy())
        with pytest.raises(ValueError, match=r"\[12\] outside 0..11"):
            count(*args, 12, ignore_index)

"""Segmentation metrics: confusion matrix, pixel accuracy, mean accuracy, IoU, mIoU, fwIoU.

Source: Long, Shelhamer and Darrell, "Fully Convolutional Networks for Semantic Segmentation",
CVPR 2015, Sec. 5 ("Results", metrics). With ``n_ij`` the number of pixels of ground-truth class
``i`` predicted as class ``j``, ``t_i = sum_j n_ij`` the pixels of class ``i`` and ``n_cl`` the
number of classes:

- pixel accuracy:             ``sum_i n_ii / sum_i t_i``
- mean (per-class) accuracy:  ``(1 / n_cl) sum_i n_ii / t_i``
- mean IU (IoU):              ``(1 / n_cl) sum_i n_ii / (t_i + sum_j n_ji - n_ii)``
- frequency weighted IU:      ``(sum_k t_k)^-1 sum_i t_i n_ii / (t_i + sum_j n_ji - n_ii)``

The code follows the FCN authors' ``score.py`` (shelhamer/fcn.berkeleyvision.org): the matrix is a
``bincount`` of ``n_classes * target + pred`` and the means are ``nanmean``s, so a class whose
ratio is 0/0 is left out of the mean instead of counted as 0 (see :func:`iou_per_class`).

Convention: the confusion matrix has rows = ground truth (``target``) and columns = prediction.
Everything here works on torch tensors on any device; ``numpy`` arrays are accepted too.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = [
    "SegmentationMetrics",
    "confusion_matrix",
    "frequency_weighted_iou",
    "iou_per_class",
    "mean_iou",
    "mean_pixel_accuracy",
    "pixel_accuracy",
]


def _as_tensor(x, name: str) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x
    try:
        return torch.as_tensor(x)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise TypeError(f"{name} must be a torch.Tensor (or a numpy array), "
                        f"got {type(x).__name__}") from exc


def _is_integer(t: torch.Tensor) -> bool:
    return not (t.dtype.is_floating_point or t.dtype.is_complex or t.dtype == torch.bool)


def _check_range(values, n_classes: int, name: str, ignore_index) -> None:
    """``values``: a 1-D torch tensor or numpy array of class indices."""
    if values.size == 0 if isinstance(values, np.ndarray) else values.numel() == 0:
        return
    if isinstance(values, np.ndarray):
        lo, hi = int(values.min()), int(values.max())
    else:
        lo, hi = (int(v) for v in torch.aminmax(values))  # one pass
    if lo < 0 or hi >= n_classes:
        values = torch.as_tensor(values)
        bad = values[(values < 0) | (values >= n_classes)].unique()[:5].tolist()
        extra = "" if ignore_index is None else f" or ignore_index={ignore_index}"
        hint = (" (is ignore_index set? the CMP Facade kit uses 255 for unlabelled pixels)"
                if name == "target" else "")
        raise ValueError(f"{name} has values {bad} outside 0..{n_classes - 1}{extra}{hint}")


def confusion_matrix(pred, target, n_classes: int, ignore_index: int | None = None) -> torch.Tensor:
    """Count pixels per (ground-truth class, predicted class) pair.

    Args:
        pred: either integer class indices with the shape of ``target`` (e.g. ``(N, H, W)``),
            or float ``logits`` of shape ``(N, C, H, W)`` with ``C == n_classes``, which are
            turned into class indices by ``argmax`` over dim 1 (scores or probabilities work the
            same way, since argmax does not care).
        target: integer class indices ``(N, H, W)`` (any integer dtype; int64 in this kit), values
            in ``0 .. n_classes - 1`` or equal to ``ignore_index``.
        n_classes: number of classes (12 for CMP Facade).
        ignore_index: label value in ``target`` whose pixels are not counted (e.g. 255);
            ``None`` counts every pixel. Predictions at ignored pixels are not looked at.

    Returns:
        int64 tensor ``(n_classes, n_classes)`` on the device of the inputs;
        entry ``[i, j]`` = number of pixels of ground-truth class ``i`` predicted as class ``j``
        (rows = ground truth, columns = prediction). Computed with ``torch.bincount`` of
        ``n_classes * target + pred`` (on CPU tensors through zero-copy numpy views, which is faster there), as in the FCN authors' ``score.py`` (Long et al. 2015, Sec. 5).

    Raises:
        TypeError: ``target`` is not an integer tensor, or ``pred`` is float but not
            ``(N, C, H, W)`` logits matching ``target``.
        ValueError: shapes do not match, ``n_classes`` is not a positive int, the logits have
            the wrong number of channels, or a value lies outside ``0 .. n_classes - 1``
            (``ignore_index`` excepted in ``target``).
    """
    if isinstance(n_classes, bool) or not isinstance(n_classes, int) or n_classes < 1:
        raise ValueError(f"n_classes must be a positive int, got {n_classes!r}")
    pred = _as_tensor(pred, "pred")
    target = _as_tensor(target, "target")
    if not _is_integer(target):
        raise TypeError(f"target must hold integer class indices (int64), got dtype {target.dtype}; "
                        "convert label maps with .long(), never feed one-hot or float masks")
    if pred.device != target.device:
        raise ValueError(f"pred is on {pred.device} but target is on {target.device}; "
                         "move them to the same device")
    if not _is_integer(pred):
        if pred.dtype == torch.bool or pred.dtype.is_complex:
            raise TypeError(f"pred must be integer class indices or float logits, got {pred.dtype}")
        if pred.ndim != target.ndim + 1 or pred.shape[:1] + pred.shape[2:] != target.shape:
            raise TypeError(
                f"pred is float with shape {tuple(pred.shape)}; float pred must be logits "
                f"(N, C, H, W) matching target {tuple(target.shape)} (N, H, W). "
                "For class indices use an integer tensor, e.g. logits.argmax(1)")
        if pred.shape[1] != n_classes:
            raise ValueError(f"logits have {pred.shape[1]} channels (dim 1) but n_classes={n_classes}")
        pred = pred.argmax(dim=1)
    elif pred.shape != target.shape:
        raise ValueError(f"pred shape {tuple(pred.shape)} does not match target shape "
                         f"{tuple(target.shape)}")

    if pred.device.type == "cpu":
        return _confusion_matrix_cpu(pred.reshape(-1).numpy(), target.reshape(-1).numpy(),
                                     n_classes, ignore_index)
    return _confusion_matrix_torch(pred, target, n_classes, ignore_index)


def _confusion_matrix_torch(pred: torch.Tensor, target: torch.Tensor, n_classes: int,
                            ignore_index: int | None) -> torch.Tensor:
    """The counts with torch ops, on the tensors' device (used for CUDA tensors)."""
    n2 = n_classes * n_classes
    pred = pred.reshape(-1).long()
    target = target.reshape(-1).long()
    # No boolean indexing (it copies and is slow): ignored pixels are sent to an extra bin n**2.
    ignored = None if ignore_index is None else target == ignore_index
    if ignored is not None:
        target = torch.where(ignored, 0, target)
        pred = torch.where(ignored, 0, pred)
    _check_range(target, n_classes, "target", ignore_index)
    _check_range(pred, n_classes, "pred", None)
    index = torch.add(pred, target, alpha=n_classes)  # n_classes * target + pred
    if ignored is not None:
        index.masked_fill_(ignored, n2)
    counts = torch.bincount(index, minlength=n2 + 1)[:n2]
    return counts.reshape(n_classes, n_classes)


def _confusion_matrix_cpu(pred: np.ndarray, target: np.ndarray, n_classes: int,
                          ignore_index: int | None) -> torch.Tensor:
    """The same counts on CPU, on zero-copy numpy views of the tensors: the handout's
    ``bincount(n * gt[mask] + pred[mask])``, several times faster there than the torch ops."""
    if ignore_index is not None:
        keep = target != ignore_index
        pred, target = pred[keep], target[keep]
    _check_range(target, n_classes, "target", ignore_index)
    _check_range(pred, n_classes, "pred", None)
    index = n_classes * target.astype(np.int64, copy=False) + pred
    counts = np.bincount(index, minlength=n_classes * n_classes)
    return torch.from_numpy(counts.astype(np.int64, copy=False)).reshape(n_classes, n_classes)


def _as_cm(cm) -> torch.Tensor:
    cm = _as_tensor(cm, "cm")
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1]:
        raise ValueError(f"a confusion matrix must be square (n_classes, n_classes), "
                         f"got shape {tuple(cm.shape)}")
    cm = cm.to(torch.float64)
    if cm.numel() and bool((cm < 0).any()):
        raise ValueError("a confusion matrix holds pixel counts and cannot be negative")
    return cm


def _nan_if_empty(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    """Elementwise num / den with NaN where den == 0 (0/0 means 'not defined')."""
    safe = torch.where(den > 0, den, torch.ones_like(den))
    return torch.where(den > 0, num / safe, torch.full_like(num, float("nan")))


def pixel_accuracy(cm) -> float:
    """Fraction of counted pixels whose predicted class is right: ``sum_i n_ii / sum_i t_i``
    (Long et al. 2015, Sec. 5).

    Args:
        cm: confusion matrix ``(n_classes, n_classes)`` from :func:`confusion_matrix`.

    Returns:
        float in [0, 1]; NaN when the matrix is empty (no pixel counted).
    """
    cm = _as_cm(cm)
    return float(_nan_if_empty(cm.diagonal().sum(), cm.sum()))


def mean_pixel_accuracy(cm) -> float:
    """Mean per-class accuracy (recall): ``nanmean_i n_ii / t_i`` (Long et al. 2015, Sec. 5,
    "mean accuracy").

    A class absent from the ground truth (``t_i = 0``) has an undefined accuracy (0/0, NaN) and
    is left out of the mean, even if it was predicted: such false positives lower the IoU of the
    class but not this number.

    Returns:
        float in [0, 1]; NaN when no class occurs in the ground truth.
    """
    cm = _as_cm(cm)
    acc = _nan_if_empty(cm.diagonal(), cm.sum(1))
    return float(torch.nanmean(acc))


def iou_per_class(cm) -> torch.Tensor:
    """Intersection over union of each class: ``n_ii / (t_i + sum_j n_ji - n_ii)``
    (Long et al. 2015, Sec. 5, "IU").

    A class absent from both the prediction and the ground truth has IoU 0/0 = NaN ("not
    defined", left out of :func:`mean_iou`). A class absent from the ground truth but predicted
    somewhere gets IoU 0 (all its predictions are false positives).

    Returns:
        float64 tensor ``(n_classes,)`` with values in [0, 1] or NaN, on the device of ``cm``.
    """
    cm = _as_cm(cm)
    tp = cm.diagonal()
    return _nan_if_empty(tp, cm.sum(1) + cm.sum(0) - tp)


def mean_iou(cm) -> float:
    """Mean IoU over the classes whose IoU is defined (``nanmean`` of :func:`iou_per_class`),
    Long et al. 2015, Sec. 5 "mean IU". Classes absent from both prediction and ground truth
    are not counted.

    Returns:
        float in [0, 1]; NaN when the matrix is empty.
    """
    return float(torch.nanmean(iou_per_class(cm)))


def frequency_weighted_iou(cm) -> float:
    """IoU averaged with weights ``t_i / sum_k t_k`` (the share of ground-truth pixels of each
    class), Long et al. 2015, Sec. 5 "frequency weighted IU". Classes absent from the ground
    truth have weight 0.

    Returns:
        float in [0, 1]; NaN when the matrix is empty.
    """
    cm = _as_cm(cm)
    total = cm.sum()
    if total == 0:
        return float("nan")
    freq = cm.sum(1) / total
    iou = iou_per_class(cm)
    present = freq > 0
    return float((freq[present] * iou[present]).sum())


class SegmentationMetrics:
    """Streaming version of the metrics above: add batches with :meth:`update`, read with
    :meth:`compute`. Summing confusion matrices over batches gives exactly the matrix of the
    whole set, so the result equals the one-shot computation (Long et al. 2015, Sec. 5, count
    pixels over the whole test set, not per image).

    Args:
        n_classes: number of classes.
        ignore_index: label value in the target whose pixels are skipped (e.g. 255), or None.
        device: where the running matrix lives; ``None`` = the device of the first batch.

    Example::

        metrics = SegmentationMetrics(12, ignore_index=255)
        for images, target in loader:
            metrics.update(model(images), target)    # logits (N, C, H, W), target (N, H, W)
        print(metrics.compute()["mean_iou"])
    """

    def __init__(self, n_classes: int, ignore_index: int | None = None, device=None):
        if isinstance(n_classes, bool) or not isinstance(n_classes, int) or n_classes < 1:
            raise ValueError(f"n_classes must be a positive int, got {n_classes!r}")
        self.n_classes = n_classes
        self.ignore_index = ignore_index
        self.device = None if device is None else torch.device(device)
        self.reset()

    def reset(self) -> None:
        """Forget every batch seen so far."""
        self._cm: torch.Tensor | None = None
        if self.device is not None:
            self._cm = torch.zeros(self.n_classes, self.n_classes, dtype=torch.int64,
                                   device=self.device)

    @torch.no_grad()
    def update(self, logits_or_pred, target) -> None:
        """Add one batch: ``logits`` (N, C, H, W) float or class indices (N, H, W) int, and
        ``target`` (N, H, W) int. Same rules and errors as :func:`confusion_matrix`."""
        if isinstance(logits_or_pred, torch.Tensor):
            logits_or_pred = logits_or_pred.detach()
        cm = confusion_matrix(logits_or_pred, target, self.n_classes, self.ignore_index)
        if self._cm is None:
            self._cm = cm
        else:
            self._cm += cm.to(self._cm.device)

    @property
    def confusion_matrix(self) -> torch.Tensor:
        """The running int64 matrix ``(n_classes, n_classes)``, rows = ground truth."""
        if self._cm is None:
            return torch.zeros(self.n_classes, self.n_classes, dtype=torch.int64)
        return self._cm

    def compute(self) -> dict:
        """The metrics of everything added since the last :meth:`reset`.

        Returns:
            dict with floats ``pixel_accuracy``, ``mean_pixel_accuracy``, ``mean_iou``,
            ``frequency_weighted_iou`` (all in [0, 1], NaN if nothing was counted),
            ``iou_per_class`` (list of ``n_classes`` floats, NaN for classes absent from both
            prediction and ground truth) and ``confusion_matrix`` (int64 CPU tensor).
        """
        cm = self.confusion_matrix.cpu()
        return {
            "pixel_accuracy": pixel_accuracy(cm),
            "mean_pixel_accuracy": mean_pixel_accuracy(cm),
            "mean_iou": mean_iou(cm),
            "frequency_weighted_iou": frequency_weighted_iou(cm),
            "iou_per_class": iou_per_class(cm).tolist(),
            "confusion_matrix": cm.clone(),
        }

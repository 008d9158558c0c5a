"""The transfer_learning linear-probe test, trusted side: its data, its score, its calibration run.

A probe trains only the new head of a VGG-16 whose convolutions hold the ImageNet weights and stay
frozen (``replace_head`` then ``set_trainable(model, "feature_extractor")``) on a small
class-balanced set of facade parts (:mod:`assignment_lib.facade_parts`), then predicts held-out
parts. Calibration (:func:`run_probe`, the reference in-process) and grading (the hidden test
``test_probe.py``, the student's functions in the sandbox) both call
:func:`assignment_lib.transfer.probe_predictions`; only this side ever holds the eval labels and
scores (:func:`score_accuracy`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time

import numpy as np
import torch

from assignment_lib.data import find_data_root, hash_image_files, split_ids
from assignment_lib.facade_parts import N_PART_CLASSES, PartsConfig, balanced_subset, load_parts

INITS = ("imagenet", "random")


@dataclasses.dataclass(frozen=True)
class PartsSpec:
    """Which facade parts a probe trains and is scored on.

    Attributes:
        size: side of the square crops in px (:class:`assignment_lib.facade_parts.PartsConfig`).
        train_split, eval_split: image splits (``"train"``, ``"val"``, ``"test"``); no facade is in two.
        n_train_per_class: training crops per class (class-balanced, drawn with ``seed``).
        n_eval: evaluation crops, ``n_eval / 10`` per class (class-balanced: a constant predictor
            scores 0.1); must be a multiple of the 10 classes.
        seed: draws both subsets (:func:`assignment_lib.facade_parts.balanced_subset`).
        n_train_images, n_eval_images: use only the first facades of each split (``None``: all).
    """

    size: int = 32
    train_split: str = "train"
    eval_split: str = "test"
    n_train_per_class: int = 20
    n_eval: int = 300
    seed: int = 0
    n_train_images: int | None = None
    n_eval_images: int | None = None

    def __post_init__(self):
        if self.train_split == self.eval_split:
            raise ValueError(f"train_split and eval_split must differ, both are {self.train_split!r}")
        if self.n_train_per_class < 1 or self.n_eval < N_PART_CLASSES or self.n_eval % N_PART_CLASSES:
            raise ValueError(f"invalid PartsSpec {self}: need n_train_per_class >= 1 and n_eval a "
                             f"positive multiple of {N_PART_CLASSES}")
        PartsConfig(size=self.size)  # validates size

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> PartsSpec:
        """Raises ValueError on a key that is no field (a typo in a recipe must not pass silently)."""
        unknown = set(d) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"unknown PartsSpec keys {sorted(unknown)}; known: "
                             f"{[f.name for f in dataclasses.fields(cls)]}")
        return cls(**d)


def load_probe_data(spec: PartsSpec, root=None):
    """``((x_train, y_train), (x_eval, y_eval))``: float32 (N, 3, S, S) ImageNet-normalised crops
    and int64 (N,) labels, class-balanced as ``spec`` says, deterministic.

    Raises:
        assignment_lib.data.DataError: no data, or a missing file. ValueError: a class has too few crops.
    """
    cfg = PartsConfig(size=spec.size)
    train = load_parts(spec.train_split, root, cfg, n_images=spec.n_train_images, verbose=False).tensors()
    test = load_parts(spec.eval_split, root, cfg, n_images=spec.n_eval_images, verbose=False).tensors()
    return (balanced_subset(*train, spec.n_train_per_class, seed=spec.seed),
            balanced_subset(*test, spec.n_eval // N_PART_CLASSES, seed=spec.seed + 1))


def probe_checksum(spec: PartsSpec, root=None) -> str:
    """sha256 over ``spec``, the facade ids used and their photo and label bytes: the data the
    threshold was calibrated on.

    Raises:
        assignment_lib.data.DataError: no data found, or a listed file is missing.
    """
    root = find_data_root(root)
    digest = hashlib.sha256(json.dumps(spec.to_dict(), sort_keys=True).encode())
    for split, n in ((spec.train_split, spec.n_train_images), (spec.eval_split, spec.n_eval_images)):
        ids = split_ids(split, root)[:n]
        digest.update(f"{split}:{','.join(ids)}".encode())
        for image_id in ids:
            hash_image_files(digest, root, image_id)
    return digest.hexdigest()


def score_accuracy(predictions, labels, n_classes: int = N_PART_CLASSES) -> dict:
    """Accuracy of predicted classes against ``labels``.

    Args:
        predictions: integer tensor (N,) of classes in ``0..n_classes-1``.
        labels: int64 tensor (N,).

    Returns:
        ``{"accuracy": float, "per_class_accuracy": list of n_classes floats (nan for an absent class)}``.

    Raises:
        ValueError: predictions not an integer tensor (N,) of valid classes (what is wrong is named).
    """
    labels = torch.as_tensor(labels)
    if not isinstance(predictions, torch.Tensor):
        raise ValueError(  # noqa: TRY004 - one error type for every malformed answer (the test fails it)
            f"predictions must be a tensor of class indices, got {type(predictions).__name__}")
    if predictions.is_floating_point() or predictions.is_complex() or predictions.dtype == torch.bool:
        raise ValueError(f"predictions must be integer class indices, got dtype {predictions.dtype} "
                         "(logits or probabilities? take the argmax)")
    if tuple(predictions.shape) != (len(labels),):
        raise ValueError(f"{tuple(predictions.shape)} predictions for {len(labels)} labels: expected ({len(labels)},)")
    if len(labels) and (int(predictions.min()) < 0 or int(predictions.max()) >= n_classes):
        raise ValueError(f"predicted classes must lie in 0..{n_classes - 1}, got "
                         f"{int(predictions.min())}..{int(predictions.max())}")
    pred, lab = predictions.long().numpy(), labels.long().numpy()
    per_class = [float((pred[lab == c] == c).mean()) if (lab == c).any() else float("nan")
                 for c in range(n_classes)]
    return {"accuracy": float((pred == lab).mean()) if len(lab) else float("nan"),
            "per_class_accuracy": per_class}


def constant_accuracy(train_y, eval_y) -> float:
    """Accuracy on ``eval_y`` of always predicting the most frequent class of ``train_y`` (ties: the
    smallest class index)."""
    train_y, eval_y = np.asarray(train_y), np.asarray(eval_y)
    k = int(np.bincount(train_y).argmax())
    return float((eval_y == k).mean())


def run_probe(spec: PartsSpec, config, replace_head, set_trainable, seed: int, *, data,
              vgg16_state_dict=None, init: str = "imagenet", device="cpu") -> dict:
    """One calibration run: torchvision's VGG-16, the ImageNet convolutions loaded (``init="imagenet"``;
    ``"random"``: never loaded, the known-wrong random-init encoder), ``replace_head(model, 10)``,
    ``set_trainable(model, "feature_extractor")``, then :func:`assignment_lib.transfer.probe_predictions`
    with ``config.seed = seed``, scored on ``data``'s eval labels.

    Args:
        spec: the data's :class:`PartsSpec` (recorded only; ``data`` is what is used).
        config: :class:`assignment_lib.transfer.ClassifierConfig` (or its dict).
        data: ``load_probe_data(spec)``.
        vgg16_state_dict: the VGG-16 features state dict (needed for ``init="imagenet"``).

    Returns:
        ``{"seed", "init", "accuracy", "per_class_accuracy", "train_s"}`` (train_s: wall seconds of
        the model build, training and prediction).

    Raises:
        ValueError: unknown ``init``, or ``"imagenet"`` without ``vgg16_state_dict``.
    """
    import torchvision

    from assignment_lib.transfer import ClassifierConfig, probe_predictions, vgg16_imagenet

    if init not in INITS:
        raise ValueError(f"init must be one of {INITS}, got {init!r}")
    if init == "imagenet" and vgg16_state_dict is None:
        raise ValueError("init='imagenet' needs vgg16_state_dict")
    config = ClassifierConfig.from_dict(config) if isinstance(config, dict) else config
    config = dataclasses.replace(config, seed=seed)
    (x, y), (x_eval, y_eval) = data
    start = time.perf_counter()
    torch.manual_seed(seed)  # both builds draw torchvision's initialisation the same way
    model = (vgg16_imagenet(state_dict=vgg16_state_dict) if init == "imagenet"
             else torchvision.models.vgg16(weights=None))
    model = replace_head(model, N_PART_CLASSES)
    set_trainable(model, "feature_extractor")
    pred = probe_predictions(model, (x, y), x_eval, config, device=device)
    seconds = time.perf_counter() - start
    return {"seed": seed, "init": init, **score_accuracy(pred, y_eval), "train_s": seconds,
            "spec": spec.to_dict()}

"""The grading recipes: exactly how the autograder trains a submission's model before it checks mIoU.

A recipe is plain data (:meth:`Recipe.to_dict`), so the trusted grader can send it to the sandboxed
worker. Calibration (:func:`run_recipe`) and grading (the hidden test ``test_fcn8s_miou_*``) run the
SAME code on the same recipe: :func:`load_data` here, then
:func:`assignment_lib.recipe.train_and_predict` (in the sandbox when grading), then
:func:`score_predictions` here. ``autograder.calibrate`` trains the reference under the recipe over
several seeds to set each threshold (the FCN assignment's ``thresholds.json``, keyed by recipe name) and
records :func:`data_checksum` of the data it used; :func:`check_tier_ready` refuses to grade a tier
whose weights are missing or whose data differs from the calibration's.

Two tiers:

- ``cpu``: "does the model LEARN?" on a 2-core CPU runner in about a minute. FCN-32s/8s cost
  ~45 GFLOP per forward pass even on tiny inputs (``conv1_1`` pads by 100 px, so a 96 px crop is a
  296 px image inside the network) and fc6 alone has 103 M parameters, so the ImageNet encoder and
  fc6/fc7 are frozen and only the score layers (and the skip/upsampling layers of FCN-8s) train, at
  ``max_side=128`` (96 px crops, batch 2, 16 steps; the first 25 test images). The threshold separates "learns from ImageNet features
  through a correctly aligned decoder" from known-wrong models (random encoder, wrong crop offsets).
- ``gpu``: the real thing (from ImageNet VGG-16, nothing frozen, ``max_side=512``, bf16). Its
  thresholds are "not yet measured: needs a GPU" until ``python -m autograder calibrate --tier gpu``
  runs on one.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from assignment_lib.data import (
    CLASS_NAMES,
    IGNORE_INDEX,
    N_CLASSES,
    find_data_root,
    load_split,
    split_ids,
)
from assignment_lib.recipe import train_and_predict
from assignment_lib.train import TrainConfig

TIERS = ("cpu", "gpu")
MODELS = ("fcn32s", "fcn8s")
INITS = ("imagenet", "random")


@dataclass(frozen=True)
class DataSpec:
    """Which data a recipe trains and evaluates on.

    Attributes:
        train_split / eval_split: split names of :func:`assignment_lib.data.split_ids`.
        max_side: longer image side in pixels after shrinking (train and eval).
        binary_class: if set (a name from ``CLASS_NAMES``), targets become 1 for that class and 0
            for every other class (``IGNORE_INDEX`` stays), i.e. a 2-class task.
        eval_limit: evaluate on the first ``eval_limit`` images of ``eval_split`` only (``None`` = all).
    """

    train_split: str = "train"
    eval_split: str = "test"
    max_side: int = 512
    binary_class: str | None = None
    eval_limit: int | None = None

    @property
    def n_classes(self) -> int:
        return 2 if self.binary_class else N_CLASSES


@dataclass(frozen=True)
class Recipe:
    """One grading recipe. ``test`` names the hidden test that reads its threshold, or is ``None``
    where no hidden test does yet (the recipe is then calibrated for the record only)."""

    name: str
    tier: str
    model: str
    init: str
    config: TrainConfig
    data: DataSpec
    test: str | None
    description: str = ""
    seeds: tuple[int, ...] = field(default=(0, 1, 2))
    timeout_s: float = 600.0

    def __post_init__(self):
        if self.tier not in TIERS or self.model not in MODELS or self.init not in INITS:
            raise ValueError(f"recipe {self.name!r}: tier/model/init must be in {TIERS}/{MODELS}/{INITS}")
        if self.config.n_classes != self.data.n_classes:
            raise ValueError(f"recipe {self.name!r}: config.n_classes {self.config.n_classes} != "
                             f"data classes {self.data.n_classes}")

    def to_dict(self) -> dict:
        """Plain data (for JSON and for the sandbox)."""
        return {
            "name": self.name, "tier": self.tier, "model": self.model, "init": self.init,
            "config": self.config.to_dict(), "data": dict(self.data.__dict__), "test": self.test,
            "description": self.description, "seeds": list(self.seeds), "timeout_s": self.timeout_s,
        }

    @classmethod
    def from_dict(cls, d: dict) -> Recipe:
        d = dict(d)
        d["config"] = TrainConfig.from_dict(d["config"])
        d["data"] = DataSpec(**d["data"])
        d["seeds"] = tuple(d.get("seeds", (0, 1, 2)))
        return cls(**d)


_CPU_DATA = DataSpec(max_side=128, eval_limit=25)
_CPU_CONFIG = {"steps": 16, "batch_size": 2, "crop_size": 96, "max_side": 128, "scale": (1.0, 1.0), "hflip": True,
                   "lr": 1e-3, "optimizer": "adam", "weight_decay": 0.0, "freeze": "encoder+fc", "amp": False,
                   "channels_last": False, "eval_every": None}
_GPU_DATA = DataSpec(max_side=512)
_GPU_CONFIG = {"steps": 1500, "batch_size": 16, "crop_size": 320, "max_side": 512, "scale": (0.5, 2.0),
                   "lr": 1e-4, "optimizer": "adam", "weight_decay": 0.0, "freeze": [], "amp": True,
                   "channels_last": True, "lr_schedule": "poly", "eval_every": 500}

RECIPES: dict[str, Recipe] = {r.name: r for r in (
    Recipe("cpu_fcn32s", "cpu", "fcn32s", "imagenet", TrainConfig(**_CPU_CONFIG), _CPU_DATA,
           test=None,
           description="FCN-32s, ImageNet encoder and fc6/fc7 frozen, score layers trained for 16 "
                       "steps of 2 crops of 96 px (max_side 128); mIoU on the first 25 test images."),
    Recipe("cpu_fcn8s", "cpu", "fcn8s", "imagenet", TrainConfig(**_CPU_CONFIG), _CPU_DATA,
           test="test_fcn8s_miou_cpu",
           description="FCN-8s, same as cpu_fcn32s; the skip and upsampling layers train too."),
    Recipe("gpu_fcn32s", "gpu", "fcn32s", "imagenet", TrainConfig(**_GPU_CONFIG), _GPU_DATA,
           test=None,
           description="FCN-32s from ImageNet VGG-16, all layers trained, 1500 steps of 16 crops of "
                       "320 px (max_side 512), bf16; mIoU on the test split.", timeout_s=1800.0),
    Recipe("gpu_fcn8s", "gpu", "fcn8s", "imagenet", TrainConfig(**_GPU_CONFIG), _GPU_DATA,
           test="test_fcn8s_miou_gpu",
           description="FCN-8s, same as gpu_fcn32s.", timeout_s=1800.0),
    Recipe("gpu_iou_window", "gpu", "fcn8s", "imagenet",
           TrainConfig(**{**_GPU_CONFIG, "steps": 500, "loss": "soft_iou", "n_classes": 2,
                          "eval_every": 250}),
           DataSpec(max_side=512, binary_class="window"),
           test=None,
           description="FCN-8s(n_classes=2) from ImageNet VGG-16, window vs rest, trained with the "
                       "submission's soft_iou_loss; IoU of the test split (mean over the 2 classes).",
           timeout_s=1800.0),
)}


def recipes(tier: str | None = None) -> list[Recipe]:
    """The recipes of one tier (or all), in definition order."""
    if tier is not None and tier not in TIERS:
        raise ValueError(f"tier must be one of {TIERS}, got {tier!r}")
    return [r for r in RECIPES.values() if tier is None or r.tier == tier]


def _binarize(data, class_name: str):
    if class_name not in CLASS_NAMES:
        raise ValueError(f"binary_class {class_name!r} is not one of {CLASS_NAMES}")
    k = CLASS_NAMES.index(class_name)
    out = []
    for image, target in data:
        t = (np.asarray(target) == k).astype(np.int64)
        t[np.asarray(target) == IGNORE_INDEX] = IGNORE_INDEX
        out.append((image, t))
    return out


def load_data(spec: DataSpec, root=None):
    """``(train_data, eval_data)`` of a :class:`DataSpec`, via :func:`assignment_lib.data.load_split`."""
    train = load_split(spec.train_split, root=root, max_side=spec.max_side)
    test = load_split(spec.eval_split, root=root, max_side=spec.max_side)
    if spec.eval_limit is not None:
        test = test[: spec.eval_limit]
    if spec.binary_class:
        train, test = _binarize(train, spec.binary_class), _binarize(test, spec.binary_class)
    return train, test


def score_predictions(predictions, data, n_classes: int) -> dict:
    """Score class maps against the labels of ``data`` (pixels counted over the whole set).

    Args:
        predictions: one int (H, W) class map per item of ``data`` (arrays or tensors).
        data: list of ``(image, target int64 (H, W))``; ``IGNORE_INDEX`` pixels are not counted.

    Returns:
        ``mean_iou``, ``pixel_accuracy``, ``iou_per_class`` (plain floats).

    Raises:
        ValueError: a wrong number of predictions, or one whose size differs from its label (the
            message says what an FCN must return).
    """
    from assignment_lib.metrics import SegmentationMetrics

    if len(predictions) != len(data):
        raise ValueError(f"{len(predictions)} predictions for {len(data)} test images")
    metrics = SegmentationMetrics(n_classes, ignore_index=IGNORE_INDEX)
    for p, (_, t) in zip(predictions, data):
        p, t = torch.as_tensor(p), torch.as_tensor(np.asarray(t))
        if p.shape != t.shape:
            raise ValueError(f"a prediction is {tuple(p.shape)} for a label of {tuple(t.shape)}: "
                             "the FCN must return logits of its input's size")
        metrics.update(p.long()[None], t.long()[None])
    r = metrics.compute()
    return {"mean_iou": float(r["mean_iou"]), "pixel_accuracy": float(r["pixel_accuracy"]),
            "iou_per_class": [float(x) for x in r["iou_per_class"]]}


def run_recipe(recipe: Recipe, model_cls, seed: int, *, data=None, root=None, device=None,
               loss_fn=None, init: str | None = None, vgg16_state_dict=None,
               progress: bool = False) -> dict:
    """Build, train and evaluate ``model_cls`` under ``recipe`` with ``seed`` (calibration).

    The same :func:`assignment_lib.recipe.train_and_predict` and :func:`score_predictions` the
    grader uses.

    Args:
        data: ``(train, eval)`` from :func:`load_data` (loaded here if ``None``).
        loss_fn: the loss for ``config.loss == "soft_iou"`` (e.g. the submission's
            ``soft_iou_loss``); it is called as ``loss_fn(logits, target, ignore_index=255)``.
        init: override ``recipe.init`` (calibration uses it for the known-wrong "random init").

    Returns:
        plain data: ``mean_iou``, ``pixel_accuracy``, ``iou_per_class``, ``train_s``, ``eval_s``,
        ``history`` (dict of lists), ``seed``.
    """
    d = recipe.to_dict()
    if init is not None:
        d["init"] = init
    train, test = data if data is not None else load_data(recipe.data, root)
    out = train_and_predict(model_cls, d, train, [i for i, _ in test], seed=seed, device=device,
                            vgg16_state_dict=vgg16_state_dict, loss_fn=loss_fn, progress=progress)
    scores = score_predictions(out["predictions"], test, recipe.config.n_classes)
    return {"seed": int(seed), **scores, "train_s": out["train_s"], "eval_s": out["predict_s"],
            "history": out["history"]}


def grading_recipe(tier: str) -> Recipe:
    """The recipe the hidden mIoU test of ``tier`` grades with.

    Raises:
        ValueError: an unknown tier.
    """
    for r in RECIPES.values():
        if r.tier == tier and r.test:
            return r
    raise ValueError(f"tier must be one of {TIERS}, got {tier!r}")


@lru_cache(maxsize=8)
def _checksum(root: str, spec: DataSpec) -> str:
    h = hashlib.sha256()
    base = Path(root) / "base"
    for split in sorted({spec.train_split, spec.eval_split}):
        ids = split_ids(split, root)
        if split == spec.eval_split and spec.eval_limit is not None and split != spec.train_split:
            ids = ids[: spec.eval_limit]
        h.update(f"{split}:{len(ids)}\0".encode())
        for image_id in ids:
            for ext in (".jpg", ".png"):
                h.update(image_id.encode() + ext.encode() + b"\0" + (base / f"{image_id}{ext}").read_bytes())
    return h.hexdigest()


def data_checksum(spec: DataSpec, root=None) -> str:
    """sha256 over the split lists and the photo and label bytes a recipe's data uses.

    Raises:
        assignment_lib.data.DataError: no data found, or a listed file is missing.
    """
    return _checksum(str(find_data_root(root)), spec)


def check_tier_ready(settings, bundle) -> None:
    """Refuse an mIoU tier that cannot run as calibrated: no calibrated threshold, no VGG-16 weights,
    or data whose checksum differs from the one ``thresholds.json`` recorded at calibration.

    Args:
        settings: the run's :class:`autograder.settings.GradingSettings` (``miou``, ``data_root``).
        bundle: the :class:`autograder.bundle.Bundle` whose ``thresholds.json`` is used.

    Raises:
        autograder.results.InfrastructureError: why, and what to do about it.
    """
    from autograder.results import InfrastructureError

    if settings.miou == "none" or not Path(bundle.thresholds).is_file():
        return  # an assignment without thresholds.json grades no trained model: no tier to check
    recipe = grading_recipe(settings.miou)
    table = json.loads(Path(bundle.thresholds).read_text())
    record = table.get("recipes", {}).get(recipe.name, {})
    if table.get(settings.miou, {}).get("FCN8s") is None:
        raise InfrastructureError(
            f"--miou {settings.miou}: no calibrated threshold in {bundle.thresholds}; run "
            f"`python -m autograder calibrate --tier {settings.miou}` on the grading machine first")
    if recipe.init == "imagenet":
        from assignment_lib.weights import find_vgg16_weights

        try:
            find_vgg16_weights()
        except Exception as err:  # noqa: BLE001 - any reason means: cannot run as calibrated
            raise InfrastructureError(f"--miou {settings.miou} needs the ImageNet VGG-16 weights it was "
                                      f"calibrated with; set VGG16_WEIGHTS ({err})") from None
    want = record.get("data_sha256")
    try:
        got = data_checksum(recipe.data, settings.data_root)
    except Exception as err:  # noqa: BLE001
        raise InfrastructureError(f"--miou {settings.miou}: no usable CMP Facade data ({err}); set "
                                  "CMP_FACADE_ROOT or --data-root") from None
    if want is None:
        raise InfrastructureError(f"--miou {settings.miou}: {bundle.thresholds} records no data "
                                  "checksum for its calibration; recalibrate")
    if got != want:
        root = find_data_root(settings.data_root)
        raise InfrastructureError(
            f"--miou {settings.miou}: the data at {root} is not the data the threshold was calibrated "
            f"on (sha256 {got[:12]}... != {want[:12]}...); point CMP_FACADE_ROOT or --data-root at the "
            "full CMP Facade base set, or recalibrate on this data")

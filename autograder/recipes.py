"""The grading recipes: exactly how the autograder trains a submission's model before it checks mIoU.

A recipe is plain data (:meth:`Recipe.to_dict`), so the trusted grader can send it to the sandboxed
worker, which builds the student's class, initialises it (:func:`build_model`), trains it with
:func:`assignment_lib.train.fit` and evaluates it (:func:`run_recipe`). ``autograder.calibrate``
trains the reference solution under the SAME recipe over several seeds to set each threshold
(``autograder/thresholds.json``, keyed by recipe name).

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

import time
from dataclasses import dataclass, field

import numpy as np
import torch

from assignment_lib.data import CLASS_NAMES, IGNORE_INDEX, N_CLASSES, load_split
from assignment_lib.train import TrainConfig, evaluate, fit, seed_everything

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
            "description": self.description, "seeds": list(self.seeds),
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
                       "320 px (max_side 512), bf16; mIoU on the test split."),
    Recipe("gpu_fcn8s", "gpu", "fcn8s", "imagenet", TrainConfig(**_GPU_CONFIG), _GPU_DATA,
           test="test_fcn8s_miou_gpu",
           description="FCN-8s, same as gpu_fcn32s."),
    Recipe("gpu_iou_window", "gpu", "fcn8s", "imagenet",
           TrainConfig(**{**_GPU_CONFIG, "steps": 500, "loss": "soft_iou", "n_classes": 2,
                          "eval_every": 250}),
           DataSpec(max_side=512, binary_class="window"),
           test=None,
           description="FCN-8s(n_classes=2) from ImageNet VGG-16, window vs rest, trained with the "
                       "submission's soft_iou_loss; IoU of the test split (mean over the 2 classes)."),
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


def build_model(model_cls, recipe: Recipe, seed: int, vgg16_state_dict=None) -> torch.nn.Module:
    """Seed, instantiate ``model_cls(n_classes=...)`` and initialise it as the recipe says.

    ``init="imagenet"`` copies VGG-16 weights with :func:`assignment_lib.weights.copy_vgg16_weights`
    (fc6/fc7 as documented there); ``"random"`` keeps PyTorch's default initialisation.
    """
    seed_everything(seed)
    model = model_cls(n_classes=recipe.config.n_classes)
    if recipe.init == "imagenet":
        from assignment_lib.weights import copy_vgg16_weights

        copy_vgg16_weights(model, vgg16_state_dict)
    return model


def run_recipe(recipe: Recipe, model_cls, seed: int, *, data=None, root=None, device=None,
               loss_fn=None, init: str | None = None, vgg16_state_dict=None,
               progress: bool = False) -> dict:
    """Build, train and evaluate ``model_cls`` under ``recipe`` with ``seed``.

    Args:
        data: ``(train, eval)`` from :func:`load_data` (loaded here if ``None``).
        loss_fn: the loss for ``config.loss == "soft_iou"`` (e.g. the submission's
            ``soft_iou_loss``); it is called as ``loss_fn(logits, target, ignore_index=255)``.
        init: override ``recipe.init`` (calibration uses it for the known-wrong "random init").

    Returns:
        plain data: ``mean_iou``, ``pixel_accuracy``, ``iou_per_class``, ``train_s``, ``eval_s``,
        ``history`` (dict of lists), ``seed``, ``device``.
    """
    if init is not None and init != recipe.init:
        recipe = Recipe.from_dict({**recipe.to_dict(), "init": init})
    train, test = data if data is not None else load_data(recipe.data, root)
    cfg = TrainConfig.from_dict({**recipe.config.to_dict(), "seed": int(seed)})
    wrapped = None
    if cfg.loss == "soft_iou":
        if loss_fn is None:
            raise ValueError(f"recipe {recipe.name} trains with soft_iou: pass loss_fn")

        def wrapped(logits, target):
            return loss_fn(logits, target, ignore_index=IGNORE_INDEX)

    model = build_model(model_cls, recipe, seed, vgg16_state_dict)
    t0 = time.perf_counter()
    history = fit(model, train, cfg, loss_fn=wrapped, device=device, progress=progress)
    t1 = time.perf_counter()
    result = evaluate(model, test, n_classes=cfg.n_classes, device=device, amp=cfg.amp)
    t2 = time.perf_counter()
    dev = next(model.parameters()).device
    return {
        "seed": int(seed), "mean_iou": float(result["mean_iou"]),
        "pixel_accuracy": float(result["pixel_accuracy"]),
        "iou_per_class": [float(x) for x in result["iou_per_class"]],
        "train_s": round(t1 - t0, 2), "eval_s": round(t2 - t1, 2),
        "history": {k: list(v) for k, v in history.items()}, "device": str(dev),
    }


def recipe(tier: str) -> dict:
    """The FCN-8s recipe of ``tier`` in the plain-dict form the hidden test
    ``autograder/hidden_tests/test_miou.py`` sends to the sandbox.

    Keys: ``name``, ``config`` (a :meth:`TrainConfig.to_dict`), ``max_side``, ``n_train`` (``None``
    = all), ``test_split``, ``n_test``, ``pretrained`` (ImageNet VGG-16 init), ``timeout_s``.
    """
    r = RECIPES[f"{tier}_fcn8s"] if tier in TIERS else None
    if r is None:
        raise ValueError(f"tier must be one of {TIERS}, got {tier!r}")
    return {
        "name": r.name, "config": r.config.to_dict(), "max_side": r.data.max_side, "n_train": None,
        "test_split": r.data.eval_split, "n_test": r.data.eval_limit,
        "pretrained": r.init == "imagenet", "timeout_s": 600 if tier == "cpu" else 1800,
    }

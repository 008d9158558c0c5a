"""The grading recipes: exactly how the autograder trains a submission's model before it checks mIoU.

The recipes are DATA in each assignment's package: ``autograder/assignments/<name>/recipes.toml``
(:func:`load_recipes`), part of the grader bundle, so its digest and every result's fingerprint
follow them. A recipe is plain data (:meth:`Recipe.to_dict`), so the trusted grader can send it to
the sandboxed worker. Calibration (:func:`run_recipe`) and grading (the hidden test
``test_fcn8s_miou_*``) run the SAME code on the same recipe: :func:`load_data` here, then
:func:`assignment_lib.recipe.train_and_predict` (in the sandbox when grading), then
:func:`score_predictions` here. ``autograder.calibrate`` trains the reference under the recipe over
several seeds to set each threshold (the assignment's ``thresholds.json``, keyed by recipe name)
and records the recipe and :func:`data_checksum` of the data it used; :func:`check_tier_ready`
refuses to grade a tier whose recipe changed since, or whose weights are missing or data differs.

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
import tomllib
from dataclasses import MISSING, asdict, dataclass, field, fields
from functools import lru_cache
from pathlib import Path
from typing import Any

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
#: The recipe fields that decide a trained model's score (a threshold holds only for the same ones).
_TRAINING_KEYS = ("trainer", "tier", "model", "init", "config", "data")
INITS = ("imagenet", "random")
#: What each trainer trains. ``segmentation``: an FCN on CMP Facade images through
#: :func:`assignment_lib.recipe.train_and_predict` (``config``: ``TrainConfig``, ``data``:
#: :class:`DataSpec`, scored by mIoU). ``classifier``: a linear probe, a new head on the frozen
#: ImageNet VGG-16 (``config``: ``assignment_lib.transfer.ClassifierConfig``, ``data``:
#: :class:`autograder.probe.PartsSpec`, scored by accuracy; :mod:`autograder.probe`).
TRAINERS = {"segmentation": ("fcn32s", "fcn8s"), "classifier": ("vgg16",)}


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


def _classes(trainer: str) -> tuple[type, type]:
    """``(config class, data class)`` of a trainer's recipes."""
    if trainer == "segmentation":
        return TrainConfig, DataSpec
    if trainer == "classifier":
        from assignment_lib.transfer import ClassifierConfig
        from autograder.probe import PartsSpec

        return ClassifierConfig, PartsSpec
    raise ValueError(f"trainer must be one of {sorted(TRAINERS)}, got {trainer!r}")


@dataclass(frozen=True)
class Recipe:
    """One grading recipe, as an assignment's ``recipes.toml`` states it (:func:`load_recipes`).

    Attributes:
        name: the recipe's key in ``recipes.toml`` and in ``thresholds.json``'s ``recipes``.
        tier: where it runs, one of :data:`TIERS`.
        model: what trains, one of the trainer's models (:data:`TRAINERS`).
        init: ``"imagenet"`` (VGG-16 weights copied in) or ``"random"``.
        config: the training run (:class:`assignment_lib.train.TrainConfig` for ``segmentation``,
            :class:`assignment_lib.transfer.ClassifierConfig` for ``classifier``).
        data: what it trains and evaluates on (:class:`DataSpec`, or
            :class:`autograder.probe.PartsSpec` for ``classifier``).
        test: the hidden test that reads its threshold, or ``None`` where no hidden test does (the
            recipe is then calibrated for the record only).
        description: one sentence for people (reports, ``thresholds.json``).
        seeds: the seeds calibration trains the reference with.
        timeout_s: wall-clock seconds the sandbox may take to train and predict (grading).
        trainer: a key of :data:`TRAINERS` (``segmentation`` where a file written before there were
            two leaves it out).

    Raises:
        ValueError: a field outside its allowed values, or ``config.n_classes`` differing from the
            data's classes. TypeError: a config or data object of another trainer.
    """

    name: str
    tier: str
    model: str
    init: str
    config: Any
    data: Any
    test: str | None = None
    description: str = ""
    seeds: tuple[int, ...] = field(default=(0, 1, 2))
    timeout_s: float = 600.0
    trainer: str = "segmentation"

    def __post_init__(self):
        if self.trainer not in TRAINERS:
            raise ValueError(f"recipe {self.name!r}: trainer must be one of {sorted(TRAINERS)}, got "
                             f"{self.trainer!r}")
        models = TRAINERS[self.trainer]
        if self.tier not in TIERS or self.model not in models or self.init not in INITS:
            raise ValueError(f"recipe {self.name!r}: tier/model/init must be in {TIERS}/{models}/{INITS}")
        config_cls, data_cls = _classes(self.trainer)
        if not isinstance(self.config, config_cls) or not isinstance(self.data, data_cls):
            raise TypeError(f"recipe {self.name!r}: a {self.trainer} recipe needs a "
                             f"{config_cls.__name__} and a {data_cls.__name__}")
        if self.trainer == "segmentation" and self.config.n_classes != self.data.n_classes:
            raise ValueError(f"recipe {self.name!r}: config.n_classes {self.config.n_classes} != "
                             f"data classes {self.data.n_classes}")
        if not self.timeout_s > 0:
            raise ValueError(f"recipe {self.name!r}: timeout_s must be positive, got {self.timeout_s!r}")

    def to_dict(self) -> dict:
        """Plain data (for JSON and for the sandbox)."""
        return {
            "name": self.name, "tier": self.tier, "model": self.model, "init": self.init,
            "config": self.config.to_dict(), "data": asdict(self.data), "test": self.test,
            "description": self.description, "seeds": list(self.seeds), "timeout_s": self.timeout_s,
            "trainer": self.trainer,
        }

    @classmethod
    def from_dict(cls, d: dict) -> Recipe:
        """The inverse of :meth:`to_dict`; missing fields take their defaults.

        Raises:
            ValueError: an unknown or missing field (named), or a bad value.
        """
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown recipe fields {unknown}; known: {sorted(known)}")
        d = dict(d)
        config_cls, data_cls = _classes(d.get("trainer", "segmentation"))
        for key, cls_ in (("config", config_cls), ("data", data_cls)):
            given = d.get(key, {})
            bad = sorted(set(given) - {f.name for f in fields(cls_)})
            if bad:
                raise ValueError(f"unknown {key} fields {bad}; known: {[f.name for f in fields(cls_)]}")
            d[key] = cls_(**given)
        d["seeds"] = tuple(int(s) for s in d.get("seeds", (0, 1, 2)))
        missing = sorted(f.name for f in fields(cls) if f.name not in d and f.default is MISSING
                         and f.default_factory is MISSING)
        if missing:
            raise ValueError(f"recipe fields {missing} are missing")
        return cls(**d)

    def training_view(self) -> dict:
        """What decides a trained model's score (JSON-normalised): tier, model, init, config, data.
        A threshold calibrated under one view holds only for recipes with the same view."""
        d = self.to_dict()
        return json.loads(json.dumps({k: d[k] for k in _TRAINING_KEYS}))


class RecipeError(ValueError):
    """A ``recipes.toml`` that cannot be read: the message names the file, the recipe and the field."""


def load_recipes(path) -> dict[str, Recipe]:
    """The recipes of one assignment, in file order: ``{name: Recipe}``.

    ``path`` is a ``recipes.toml``: ``[base.<name>]`` tables hold fields several recipes share (with
    ``config`` and ``data`` sub-tables); each ``[recipe.<name>]`` names its ``base`` and states
    what differs (its ``config``/``data`` sub-tables are merged field by field over the base's).
    A missing file means an assignment that trains no model: ``{}``.

    Raises:
        RecipeError: unreadable TOML, an unknown base or field, a bad value (file and recipe named).
    """
    path = Path(path)
    if not path.is_file():
        return {}
    try:
        doc = tomllib.loads(path.read_text())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as err:
        raise RecipeError(f"{path}: {err}") from None
    extra = sorted(set(doc) - {"base", "recipe"})
    if extra:
        raise RecipeError(f"{path}: unknown top-level tables {extra}; only [base.*] and [recipe.*]")
    bases, out = doc.get("base", {}), {}
    for name, entry in doc.get("recipe", {}).items():
        try:
            entry = dict(entry)
            base_name = entry.pop("base", None)
            if base_name is not None and base_name not in bases:
                raise ValueError(f"base {base_name!r} is not defined (defined: {sorted(bases)})")
            base = bases.get(base_name, {})
            merged = {**base, **entry, "name": name}
            for key in ("config", "data"):
                merged[key] = {**base.get(key, {}), **entry.get(key, {})}
            out[name] = Recipe.from_dict(merged)
        except (TypeError, ValueError) as err:
            raise RecipeError(f"{path}: recipe {name!r}: {err}") from None
    return out


def bundle_recipes(bundle) -> dict[str, Recipe]:
    """The recipes of a :class:`autograder.bundle.Bundle` (``{}`` where it has none)."""
    return load_recipes(bundle.recipes)


def of_tier(recipes: dict[str, Recipe], tier: str | None = None) -> list[Recipe]:
    """The recipes of one tier (or all), in file order.

    Raises:
        ValueError: an unknown tier.
    """
    if tier is not None and tier not in TIERS:
        raise ValueError(f"tier must be one of {TIERS}, got {tier!r}")
    return [r for r in recipes.values() if tier is None or r.tier == tier]


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


def grading_recipe(recipes: dict[str, Recipe], tier: str) -> Recipe:
    """The recipe the hidden trained-model test of ``tier`` grades with (the first with a ``test``).

    Raises:
        ValueError: an unknown tier, or no graded recipe at that tier.
    """
    for r in of_tier(recipes, tier):
        if r.test:
            return r
    raise ValueError(f"no recipe of tier {tier!r} names a hidden test (recipes: {sorted(recipes)})")


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


def threshold_credit(score: float, threshold: float, baseline: float | None) -> float:
    """Partial credit of a trained-model test, in [0, 1]: 0 at the calibrated constant predictor's
    score (``baseline``, "always the most frequent class"), 1 at the threshold, linear between.

    Scaling from 0 would hand a model that learned nothing most of the points, since a constant
    predictor already scores a fraction of the threshold. A missing baseline, or one at or above
    the threshold, scales from 0.
    """
    floor = float(baseline) if baseline is not None and float(baseline) < threshold else 0.0
    return max(0.0, min(1.0, (score - floor) / (threshold - floor)))


def _differences(a, b, prefix=""):
    if isinstance(a, dict) and isinstance(b, dict):
        return [d for k in sorted(set(a) | set(b)) for d in _differences(a.get(k), b.get(k), f"{prefix}{k}.")]
    return [] if a == b else [f"{prefix.rstrip('.')} {a!r} -> {b!r}"]


def graded_recipes(settings, bundle) -> list[Recipe]:
    """The recipes whose hidden tests run at the run's tier, each checked against what calibration
    recorded. Needs neither the data nor the weights (a Dask client checks this before sending jobs).

    Args:
        settings: the run's :class:`autograder.settings.GradingSettings` (``miou``,
            ``submission_budget``).
        bundle: the :class:`autograder.bundle.Bundle` (its ``recipes.toml`` and ``thresholds.json``).

    Returns:
        ``[]`` without a tier, or for an assignment that trains no model at this tier.

    Raises:
        autograder.results.InfrastructureError: an unreadable ``recipes.toml``; a recipe with no
            calibrated threshold, calibrated under a different recipe, or whose training timeout
            does not fit in the submission budget. The message says what to do.
    """
    return [recipe for recipe, _ in _graded_records(settings, bundle)]


def _graded_records(settings, bundle) -> list[tuple[Recipe, dict]]:
    """:func:`graded_recipes`, each with its calibration record from ``thresholds.json``."""
    from autograder.results import InfrastructureError

    if settings.miou == "none":
        return []
    try:
        graded = [r for r in of_tier(bundle_recipes(bundle), settings.miou) if r.test]
    except RecipeError as err:
        raise InfrastructureError(str(err)) from None
    if not graded:
        return []
    table = json.loads(Path(bundle.thresholds).read_text()) if Path(bundle.thresholds).is_file() else {}
    out = []
    calibrate = f"`python -m autograder calibrate --assignment {bundle.spec().name} --tier {settings.miou}`"
    for recipe in graded:
        if recipe.timeout_s > settings.submission_budget:
            raise InfrastructureError(
                f"--miou {settings.miou}: recipe {recipe.name} may train for {recipe.timeout_s:g} s, more "
                f"than the submission budget of {settings.submission_budget:g} s; raise "
                "--submission-timeout or lower the recipe's timeout_s")
        record = table.get("recipes", {}).get(recipe.name, {})
        if record.get("status") != "measured" or record.get("threshold") is None:
            raise InfrastructureError(
                f"--miou {settings.miou}: no calibrated threshold for recipe {recipe.name} in "
                f"{bundle.thresholds}; run {calibrate} on the grading machine first")
        try:  # (read through Recipe so that fields added since take their defaults)
            calibrated = Recipe.from_dict(record.get("recipe", {})).training_view()
        except (TypeError, ValueError) as err:
            calibrated = {"recorded recipe": f"unreadable ({err})"}
        changed = _differences(calibrated, recipe.training_view())
        if changed:
            raise InfrastructureError(
                f"--miou {settings.miou}: recipe {recipe.name} in {bundle.recipes} differs from the one "
                f"its threshold was calibrated with ({'; '.join(changed[:5])}); run {calibrate} again")
        out.append((recipe, record))
    return out


def recipe_data_checksum(recipe: Recipe, root=None) -> str:
    """sha256 of the data ``recipe`` trains and is scored on (:func:`data_checksum`, or
    :func:`autograder.probe.probe_checksum` for a ``classifier`` recipe).

    Raises:
        assignment_lib.data.DataError: no data found, or a listed file is missing.
    """
    if recipe.trainer == "classifier":
        from autograder.probe import probe_checksum

        return probe_checksum(recipe.data, root)
    return data_checksum(recipe.data, root)


def check_tier_ready(settings, bundle) -> None:
    """Refuse a trained-model tier that cannot run as calibrated: :func:`graded_recipes`' checks,
    then no VGG-16 weights, or data whose checksum differs from the one ``thresholds.json`` recorded
    at calibration.

    Args:
        settings: the run's :class:`autograder.settings.GradingSettings` (``miou``, ``data_root``).
        bundle: the :class:`autograder.bundle.Bundle` whose recipes and thresholds are used.

    Raises:
        autograder.results.InfrastructureError: why, and what to do about it.
    """
    from autograder.results import InfrastructureError

    for recipe, record in _graded_records(settings, bundle):
        want = record.get("data_sha256")
        if recipe.init == "imagenet":
            from assignment_lib.weights import find_vgg16_weights

            try:
                find_vgg16_weights()
            except Exception as err:  # noqa: BLE001 - any reason means: cannot run as calibrated
                raise InfrastructureError(f"--miou {settings.miou} needs the ImageNet VGG-16 weights it "
                                          f"was calibrated with; set VGG16_WEIGHTS ({err})") from None
        try:
            got = recipe_data_checksum(recipe, settings.data_root)
        except Exception as err:  # noqa: BLE001
            raise InfrastructureError(f"--miou {settings.miou}: no usable CMP Facade data ({err}); set "
                                      "CMP_FACADE_ROOT or --data-root") from None
        if want is None:
            raise InfrastructureError(f"--miou {settings.miou}: {bundle.thresholds} records no data "
                                      f"checksum for the calibration of {recipe.name}; recalibrate")
        if got != want:
            root = find_data_root(settings.data_root)
            raise InfrastructureError(
                f"--miou {settings.miou}: the data at {root} is not the data the threshold was "
                f"calibrated on (recipe {recipe.name}: sha256 {got[:12]}... != {want[:12]}...); point "
                "CMP_FACADE_ROOT or --data-root at the full CMP Facade base set, or recalibrate on "
                "this data")

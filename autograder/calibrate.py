"""Set the trained-model thresholds by training the REFERENCE under the grading recipes.

``python -m autograder calibrate [--assignment fcn_segmentation] [--tier cpu|gpu] [--seeds 0 1 2] [--wrong-seeds 0] [--out PATH]``

For every recipe of the tier in the assignment's ``recipes.toml`` (:func:`autograder.recipes.load_recipes`)
the reference (from :mod:`autograder.reference`, i.e. the source notebooks' solutions) is trained
and evaluated once per seed under exactly that recipe. The score is the trainer's: mIoU for a
``segmentation`` recipe (FCN), accuracy for a ``classifier`` one (the linear probe of
``transfer_learning``). The threshold is (:func:`choose_threshold`)::

    threshold = min( min(score over seeds) - margin,  mean - k * std )      (std: sample std, ddof=1)

with ``margin = 0.01`` and ``k = 3`` by default: a correct submission fails only if it does worse
than every reference seed by more than the margin AND lies more than k standard deviations below
the reference mean. Known-wrong models are then trained under the same recipe and MUST score below
the threshold (:func:`check_calibration`): FCN-8s whose crop offsets are all 0 (skips and output
misaligned), and the reference with a random encoder where the recipe asks for ImageNet (for the
probe: VGG-16 convolutions that never got the ImageNet weights). The threshold must also lie above
the score of the trivial "always the most frequent class" predictor. Calibration exits with status
1 if any of this does not hold; nothing is written then.

The assignment's ``thresholds.json`` (or ``--out``) keeps, per recipe: every seed's score, mean,
std, min, the threshold, the rule, the known-wrong results, the recipe itself (grading refuses a
recipe that differs from it), the data checksum, the device, torch version, date and wall time; the
hidden tests read the threshold there. The ``cpu``/``gpu`` top-level entries (``{"FCN8s":
threshold, ...}``, :func:`summary_key`) summarise them for people.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from autograder.assignment import Assignment, assignment_names, get_assignment
from autograder.recipes import (
    TIERS,
    Recipe,
    data_checksum,
    load_data,
    load_recipes,
    of_tier,
    run_recipe,
)

#: The assignment calibrated when ``--assignment`` is not given.
ASSIGNMENT = "fcn_segmentation"
SHARED_VGG16 = Path(__file__).resolve().parents[2] / "shared" / "weights" / "vgg16_imagenet1k_v1_features.pth"
NOT_MEASURED = "not yet measured: needs a GPU"
#: model name used by the hidden tests' ``{tier: {name: threshold}}`` entries.
TEST_KEYS = {"fcn32s": "FCN32s", "fcn8s": "FCN8s"}


def choose_threshold(mious, margin: float = 0.01, k: float = 3.0) -> dict:
    """The threshold for a list of reference mIoUs (one per seed) and the rule used.

    Returns:
        ``{"threshold", "mean", "std", "min", "max", "rule"}``; ``std`` is the sample standard
        deviation (0 for a single seed).

    Raises:
        ValueError: no values, or a value outside [0, 1] / NaN (names it).
    """
    vals = [float(v) for v in mious]
    if not vals:
        raise ValueError("choose_threshold needs at least one reference mIoU")
    bad = [v for v in vals if not 0.0 <= v <= 1.0]  # also catches NaN
    if bad:
        raise ValueError(f"reference mIoUs must lie in [0, 1], got {bad}")
    mean = statistics.fmean(vals)
    std = statistics.stdev(vals) if len(vals) > 1 else 0.0
    by_min = min(vals) - margin
    by_std = mean - k * std
    thr = max(0.0, min(by_min, by_std))
    which = "min - margin" if by_min <= by_std else "mean - k*std"
    return {
        "threshold": round(thr, 4), "mean": mean, "std": std, "min": min(vals), "max": max(vals),
        "rule": f"min(min over seeds - {margin}, mean - {k}*std) -> {which}",
    }


def check_calibration(reference, threshold: float, wrong: dict, baseline: float | None = None) -> list[str]:
    """Problems that make a calibration unusable (empty list = fine).

    Args:
        reference: reference mIoUs, one per seed; each must reach ``threshold``.
        threshold: the chosen threshold.
        wrong: ``{name: [mIoU per seed]}`` of known-wrong models; every value must be BELOW it.
        baseline: mIoU of the trivial constant predictor; the threshold must exceed it.
    """
    problems = []
    for i, v in enumerate(reference):
        if not v >= threshold:
            problems.append(f"reference run {i} scored {v:.4f} < threshold {threshold:.4f}")
    for name, vals in wrong.items():
        for i, v in enumerate(vals):
            if v >= threshold:
                problems.append(f"known-wrong model {name!r} (run {i}) scored {v:.4f} >= threshold "
                                f"{threshold:.4f}: the test would pass it")
    if baseline is not None and not threshold > baseline:
        problems.append(f"threshold {threshold:.4f} does not exceed the constant-predictor mIoU "
                        f"{baseline:.4f}: the test would not show that the model learned")
    return problems


def constant_baseline(train, test, n_classes: int) -> float:
    """mIoU on ``test`` of predicting the most frequent class of ``train`` everywhere."""
    from assignment_lib.data import IGNORE_INDEX
    from assignment_lib.metrics import SegmentationMetrics

    counts = np.zeros(n_classes, dtype=np.int64)
    for _, t in train:
        t = np.asarray(t)
        counts += np.bincount(t[t != IGNORE_INDEX].ravel(), minlength=n_classes)[:n_classes]
    k = int(counts.argmax())
    m = SegmentationMetrics(n_classes, ignore_index=IGNORE_INDEX)
    for _, t in test:
        t = torch.as_tensor(np.asarray(t))
        m.update(torch.full_like(t, k)[None], t[None])
    return float(m.compute()["mean_iou"])


def wrong_offsets_fcn8s(reference_fcn8s):
    """A known-wrong FCN-8s: the reference layers, but every crop offset is 0 (instead of 5, 9, 31),
    the classic bug of forgetting that ``conv1_1``'s 100 px padding shifts every score map."""

    class WrongOffsetsFCN8s(reference_fcn8s):
        def forward(self, x):
            h = x
            for i, n in enumerate((2, 2, 3, 3, 3)):
                for j in range(1, n + 1):
                    h = getattr(self, f"relu{i + 1}_{j}")(getattr(self, f"conv{i + 1}_{j}")(h))
                h = getattr(self, f"pool{i + 1}")(h)
                if i == 2:
                    pool3 = h
                if i == 3:
                    pool4 = h
            h = self.drop6(self.relu6(self.fc6(h)))
            h = self.drop7(self.relu7(self.fc7(h)))
            h = self.score_fr(h)
            up2 = self.upscore2(h)
            sp4 = self.score_pool4(pool4)[:, :, : up2.size(2), : up2.size(3)]
            up4 = self.upscore_pool4(up2 + sp4)
            sp3 = self.score_pool3(pool3)[:, :, : up4.size(2), : up4.size(3)]
            h = self.upscore8(up4 + sp3)
            return h[:, :, : x.size(2), : x.size(3)].contiguous()

    return WrongOffsetsFCN8s


def known_wrong(recipe: Recipe, ref) -> dict:
    """``{name: (model class, init override)}`` of the known-wrong models for ``recipe``."""
    out = {}
    if recipe.model == "fcn8s":
        out["fcn8s_wrong_crop_offsets"] = (wrong_offsets_fcn8s(ref.FCN8s), None)
    if recipe.init == "imagenet":
        cls = ref.FCN8s if recipe.model == "fcn8s" else ref.FCN32s
        out[f"{recipe.model}_random_init"] = (cls, "random")
    return out


def _env(device) -> dict:
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else (platform.processor() or platform.machine())
    return {"device": f"{dev.type}: {name}", "torch": torch.__version__,
            "threads": torch.get_num_threads(), "python": platform.python_version(),
            "date": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")}


@dataclass
class _Runs:
    """What calibrating one recipe needs from its trainer: the score's name, the data, its
    checksum, the constant predictor's score, one training run per (seed, variant), the variants."""

    metric: str
    data: object
    data_sha256: str
    baseline: float
    run: Callable[[int, object], dict]  # (seed, variant or None for the reference) -> scores
    wrong: dict  # {known-wrong name: variant}
    extra: tuple[str, ...] = ()  # further per-run figures kept in the file


def _segmentation_runs(recipe: Recipe, ref, root, device, vgg16_state_dict) -> _Runs:
    cls = ref.FCN8s if recipe.model == "fcn8s" else ref.FCN32s
    loss_fn = ref.soft_iou_loss if recipe.config.loss == "soft_iou" else None
    data = load_data(recipe.data, root)

    def run(seed, variant):
        model_cls, init = (cls, None) if variant is None else variant
        return run_recipe(recipe, model_cls, seed, data=data, device=device, loss_fn=loss_fn,
                          init=init, vgg16_state_dict=vgg16_state_dict)

    return _Runs("mean_iou", data, data_checksum(recipe.data, root),
                 constant_baseline(*data, recipe.config.n_classes), run, known_wrong(recipe, ref),
                 extra=("pixel_accuracy",))


def _classifier_runs(recipe: Recipe, ref, root, device, vgg16_state_dict) -> _Runs:
    from autograder import probe

    data = probe.load_probe_data(recipe.data, root)

    def run(seed, init):
        return probe.run_probe(recipe.data, recipe.config, ref.replace_head, ref.set_trainable, seed,
                               data=data, vgg16_state_dict=vgg16_state_dict, init=init or recipe.init,
                               device=device or "cpu")

    # the known-wrong model: the probe on a VGG-16 whose convolutions never got the ImageNet
    # weights (what a set_trainable that re-initialises in every mode, or a forgotten load, gives)
    wrong = {"vgg16_random_init": "random"} if recipe.init == "imagenet" else {}
    return _Runs("accuracy", data, probe.probe_checksum(recipe.data, root),
                 probe.constant_accuracy(data[0][1], data[1][1]), run, wrong)


def calibrate_recipe(recipe: Recipe, seeds, *, assignment: Assignment | None = None, wrong_seeds=None,
                     root=None, device=None, margin=0.01, k=3.0, vgg16_state_dict=None,
                     log=print) -> tuple[dict, list[str]]:
    """Train the reference of ``assignment`` (default :data:`ASSIGNMENT`) and the known-wrong models
    under ``recipe``; return (the ``thresholds.json`` entry, the problems found).

    The score is the trainer's: mIoU (``mean_iou``) for ``segmentation``, accuracy for
    ``classifier`` (:data:`autograder.recipes.TRAINERS`); the entry names it in each run and in
    ``constant_predictor_<score>``.
    """
    from autograder.reference import load_reference

    ref = load_reference(assignment or get_assignment(ASSIGNMENT))
    t0 = time.perf_counter()
    make = _classifier_runs if recipe.trainer == "classifier" else _segmentation_runs
    job = make(recipe, ref, root, device, vgg16_state_dict)
    m = job.metric
    runs = []
    for s in seeds:
        r = job.run(s, None)
        log(f"  {recipe.name} reference seed {s}: {m} {r[m]:.4f} (train {r['train_s']:.0f} s"
            + (f", eval {r['eval_s']:.0f} s)" if "eval_s" in r else ")"))
        runs.append(r)
    stats = choose_threshold([r[m] for r in runs], margin=margin, k=k)
    wrong = {}
    for name, variant in job.wrong.items():
        wrong[name] = []
        for s in (wrong_seeds if wrong_seeds is not None else seeds):
            r = job.run(s, variant)
            log(f"  {recipe.name} known-wrong {name} seed {s}: {m} {r[m]:.4f}")
            wrong[name].append({"seed": s, m: r[m], **{x: r[x] for x in job.extra}})
    problems = check_calibration([r[m] for r in runs], stats["threshold"],
                                 {n: [w[m] for w in v] for n, v in wrong.items()}, job.baseline)
    keep = ("seed", m, *job.extra, "train_s", "eval_s")
    entry = {
        **stats, "seeds": list(seeds), f"constant_predictor_{m}": job.baseline,
        "reference": [{k_: r[k_] for k_ in keep if k_ in r} for r in runs],
        "known_wrong": wrong, "recipe": recipe.to_dict(), "data_sha256": job.data_sha256,
        **_env(device), "wall_s": round(time.perf_counter() - t0, 1),
        "mean_train_plus_eval_s": round(float(np.mean([r["train_s"] + r.get("eval_s", 0.0)
                                                       for r in runs])), 1),
    }
    return entry, problems


def summary_key(recipe: Recipe) -> str:
    """The recipe's key in the file's ``cpu``/``gpu`` summary (``FCN8s``, ``IoU_window``, ``probe_accuracy``)."""
    if recipe.trainer == "classifier":
        return "probe_accuracy"
    return "IoU_window" if recipe.config.n_classes == 2 else TEST_KEYS[recipe.model]


def empty_thresholds(recipes: dict[str, Recipe]) -> dict:
    """The file's skeleton for ``recipes`` (:func:`autograder.recipes.load_recipes`): none measured."""
    doc = {"_about": "Thresholds of the trained-model tests, set by `python -m autograder calibrate`; see autograder/calibrate.py "
                     "for the rule. Hidden tests read recipes[name].threshold; THRESHOLDS[tier][model "
                     "name] summarises them.",
           "cpu": {}, "gpu": {}, "recipes": {}}
    for r in recipes.values():
        doc["recipes"][r.name] = {"status": NOT_MEASURED if r.tier == "gpu" else "not yet measured",
                                  "recipe": r.to_dict()}
        doc[r.tier][summary_key(r)] = None
    doc["gpu"]["status"] = NOT_MEASURED
    return doc


def load_thresholds(path, recipes: dict[str, Recipe]) -> dict:
    """The thresholds file at ``path``, or :func:`empty_thresholds` of ``recipes`` where there is none."""
    path = Path(path)
    return json.loads(path.read_text()) if path.is_file() else empty_thresholds(recipes)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m autograder calibrate", description=__doc__.split("\n\n")[0])
    trained = [n for n in assignment_names() if get_assignment(n).recipes.is_file()]
    p.add_argument("--assignment", default=ASSIGNMENT, choices=trained,
                   help="the assignment whose trained-model thresholds are calibrated (those with a "
                        f"recipes.toml: {', '.join(trained)})")
    p.add_argument("--tier", choices=TIERS, default="cpu")
    p.add_argument("--seeds", type=int, nargs="+", default=None,
                   help="reference seeds (default: each recipe's `seeds` in recipes.toml)")
    p.add_argument("--wrong-seeds", type=int, nargs="+", default=None,
                   help="seeds for the known-wrong models (default: --seeds)")
    p.add_argument("--recipes", nargs="+", default=None, help="recipe names (default: all of the tier)")
    p.add_argument("--out", type=Path, default=None,
                   help="thresholds file (default: the assignment's thresholds.json)")
    p.add_argument("--data-root", default=None, help="CMP Facade folder (default: find_data_root)")
    p.add_argument("--device", default=None)
    p.add_argument("--vgg16", default=None,
                   help="VGG-16 state dict (default: $VGG16_WEIGHTS, else ../shared/weights/"
                        "vgg16_imagenet1k_v1_features.pth when present)")
    p.add_argument("--margin", type=float, default=0.01)
    p.add_argument("-k", type=float, default=3.0)
    args = p.parse_args(argv)

    if args.tier == "gpu" and not torch.cuda.is_available() and (args.device or "cuda").startswith("cuda"):
        print("calibrate --tier gpu needs a CUDA device (none found); the GPU thresholds stay "
              f"{NOT_MEASURED!r}", file=sys.stderr)
        return 2
    from assignment_lib.weights import load_vgg16_state_dict

    vgg_path = args.vgg16 or os.environ.get("VGG16_WEIGHTS") or (
        SHARED_VGG16 if SHARED_VGG16.is_file() else None)
    vgg = load_vgg16_state_dict(vgg_path)
    assignment = get_assignment(args.assignment)
    book = load_recipes(assignment.recipes)
    unknown = sorted(set(args.recipes or ()) - set(book))
    if unknown:
        print(f"no recipe {unknown} in {assignment.recipes} (it has {sorted(book)})", file=sys.stderr)
        return 2
    todo = of_tier(book, args.tier) if args.recipes is None else [book[n] for n in args.recipes]
    out = args.out or assignment.thresholds
    doc = load_thresholds(out, book)
    all_problems = []
    for recipe in todo:
        seeds = args.seeds or list(recipe.seeds)
        print(f"calibrating {recipe.name} over seeds {seeds} ...", flush=True)
        entry, problems = calibrate_recipe(recipe, seeds, assignment=assignment,
                                           wrong_seeds=args.wrong_seeds,
                                           root=args.data_root, device=args.device,
                                           margin=args.margin, k=args.k, vgg16_state_dict=vgg)
        entry["status"] = "measured" if not problems else "FAILED: " + "; ".join(problems)
        print(f"  -> threshold {entry['threshold']:.4f} ({entry['rule']}); "
              f"{'OK' if not problems else 'PROBLEMS: ' + '; '.join(problems)}", flush=True)
        all_problems += [f"{recipe.name}: {x}" for x in problems]
        doc["recipes"][recipe.name] = entry
        doc[recipe.tier][summary_key(recipe)] = entry["threshold"]
    if all_problems:
        print("calibration FAILED, thresholds not written:\n  " + "\n  ".join(all_problems), file=sys.stderr)
        return 1
    if args.tier == "gpu" and all(doc["gpu"].get(k) is not None for k in doc["gpu"] if k != "status"):
        doc["gpu"].pop("status", None)
    from autograder.results import atomic_write_text

    atomic_write_text(out, json.dumps(doc, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

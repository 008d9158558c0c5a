"""Train and predict under a grading recipe: the ONE implementation calibration and grading share.

A recipe arrives as plain data (a dict with ``init``, ``config`` (a
:meth:`assignment_lib.train.TrainConfig.to_dict`) and ``data`` with ``max_side``). The instructors'
calibration calls :func:`train_and_predict` on the reference solution; grading calls it inside the
sandbox on a submission's class, with training pairs and test IMAGES only (the mIoU is computed by
the trusted grader against labels the sandbox never saw). The instructor-side recipe classes,
which write these dicts, ship with the grader, not with the student bundle.
"""

from __future__ import annotations

import time

from assignment_lib.data import IGNORE_INDEX
from assignment_lib.train import TrainConfig, fit, predict, seed_everything


def train_and_predict(model_cls, recipe: dict, train, test_images, *, seed: int | None = None,
                      device=None, vgg16_state_dict=None, loss_fn=None, progress: bool = False) -> dict:
    """Build ``model_cls(n_classes=...)``, initialise, train and predict as ``recipe`` says.

    Args:
        model_cls: the FCN class (called as ``model_cls(n_classes=config.n_classes)``).
        recipe: ``Recipe.to_dict()`` (keys used: ``init``, ``config``, ``data.max_side``).
        train: list of ``(image uint8 (H, W, 3), target int64 (H, W))``.
        test_images: list of uint8 (H, W, 3) photos.
        seed: overrides ``config.seed`` (calibration runs several seeds).
        vgg16_state_dict: ImageNet VGG-16 weights for ``init == "imagenet"`` (``None``: found by
            :func:`assignment_lib.weights.load_vgg16_state_dict`).
        loss_fn: the loss for ``config.loss == "soft_iou"``, called as
            ``loss_fn(logits, target, ignore_index=255)``.

    Returns:
        ``{"predictions": [int64 (H, W) arrays], "history": {name: list}, "train_s", "predict_s"}``.

    Raises:
        ValueError: ``soft_iou`` recipe without ``loss_fn``.
    """
    cfg = TrainConfig.from_dict({**recipe["config"], **({} if seed is None else {"seed": int(seed)})})
    wrapped = None
    if cfg.loss == "soft_iou":
        if loss_fn is None:
            raise ValueError(f"recipe {recipe.get('name')} trains with soft_iou: pass loss_fn")

        def wrapped(logits, target):
            return loss_fn(logits, target, ignore_index=IGNORE_INDEX)

    seed_everything(cfg.seed)
    model = model_cls(n_classes=cfg.n_classes)
    if recipe["init"] == "imagenet":
        from assignment_lib.weights import copy_vgg16_weights

        copy_vgg16_weights(model, vgg16_state_dict)
    t0 = time.perf_counter()
    history = fit(model, train, cfg, loss_fn=wrapped, device=device, progress=progress)
    t1 = time.perf_counter()
    preds = predict(model, test_images, device=device, max_side=recipe["data"]["max_side"], amp=cfg.amp)
    return {"predictions": preds, "history": {k: list(v) for k, v in history.items()},
            "train_s": round(t1 - t0, 2), "predict_s": round(time.perf_counter() - t1, 2)}

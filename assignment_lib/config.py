"""Paths, the hardware budget, and the one table of training sizes per budget.

The budget (:data:`BUDGET`) says how big the notebooks' training runs are:

- ``"gpu"``: the full recipe; chosen when CUDA is available;
- ``"cpu"``: sized so that the whole FCN notebook finishes in under an hour on a 2-core laptop
  CPU with its conclusions intact (the VGG-16 convolutions stay frozen, fc6/fc7 and the layers
  after them learn, on small crops; the first 25 test images; measured figures: README, "Time per
  notebook"); chosen when there is no GPU;
- ``"smoke"``: every training run tiny, to check the plumbing end to end in minutes (CI); the
  numbers are then meaningless. Chosen by ``ASSIGNMENT_SMOKE=1``.

``ASSIGNMENT_BUDGET=gpu|cpu|smoke`` (set before starting Jupyter) overrides the choice.
"""

from __future__ import annotations

import os
from pathlib import Path

#: The folder that holds ``assignment_lib/`` (the repository, or the unpacked student bundle).
REPO_ROOT = Path(__file__).resolve().parent.parent

#: The budgets, in the order of their run length.
BUDGETS = ("gpu", "cpu", "smoke")

#: Environment variable that names the budget explicitly.
ENV_BUDGET = "ASSIGNMENT_BUDGET"

#: Training sizes per notebook and budget. ``max_side``: longer image side in pixels after
#: shrinking; ``n_train`` / ``n_val`` / ``n_test``: images used per split (``None`` = all);
#: ``train``: :class:`assignment_lib.train.TrainConfig` fields. The FCN notebook trains each model
#: in 3 stages of ``steps // 3``; ``finetune`` is the upsampling notebook's binary fine-tuning.
SIZES = {
    "fcn_segmentation": {
        "gpu": {"max_side": 320, "n_train": None, "n_val": None, "n_test": None,
                "train": {"steps": 1500, "batch_size": 8, "crop_size": 256, "optimizer": "sgd",
                          "lr": 1e-4, "weight_decay": 5e-4, "freeze": [], "eval_every": 100}},
        "cpu": {"max_side": 192, "n_train": None, "n_val": 6, "n_test": 25,
                "train": {"steps": 120, "batch_size": 4, "crop_size": 128, "optimizer": "adam",
                          "lr": 3e-4, "weight_decay": 0.0, "freeze": "encoder", "eval_every": 40,
                          "amp": False}},
        "smoke": {"max_side": 48, "n_train": 4, "n_val": 1, "n_test": 1,
                  "train": {"steps": 3, "batch_size": 1, "crop_size": 32, "optimizer": "sgd",
                            "lr": 1e-4, "weight_decay": 5e-4, "freeze": "encoder+fc",
                            "eval_every": 1}},
    },
    "upsampling_and_iou": {
        "gpu": {"max_side": 128, "n_train": None, "n_val": None,
                "train": {"steps": 1500, "batch_size": 16, "crop_size": 96, "eval_every": 250},
                "finetune": {"steps": 400, "batch_size": 16, "crop_size": 96}},
        "cpu": {"max_side": 128, "n_train": None, "n_val": None,
                "train": {"steps": 1500, "batch_size": 16, "crop_size": 96, "eval_every": 250},
                "finetune": {"steps": 400, "batch_size": 16, "crop_size": 96}},
        "smoke": {"max_side": 32, "n_train": 4, "n_val": 2,
                  "train": {"steps": 2, "batch_size": 2, "crop_size": 32, "eval_every": 1},
                  "finetune": {"steps": 2, "batch_size": 2, "crop_size": 32}},
    },
    # transfer_and_features: ``parts``: assignment_lib.facade_parts.PartsConfig fields;
    # ``n_train_images`` / ``n_test_images``: facades cut into parts (None = the whole split);
    # ``n_train`` / ``n_test``: parts used (a seeded random subset; None = all); ``train``:
    # assignment_lib.transfer.ClassifierConfig fields, the same for the three modes.
    "transfer_and_features": {
        "gpu": {"parts": {"size": 96}, "n_train_images": None, "n_test_images": None,
                "n_train": None, "n_test": None,
                "train": {"epochs": 8, "batch_size": 64, "lr": 1e-4}},
        "cpu": {"parts": {"size": 64}, "n_train_images": None, "n_test_images": None,
                "n_train": 1200, "n_test": 400,
                "train": {"epochs": 3, "batch_size": 32, "lr": 1e-4}},
        "smoke": {"parts": {"size": 32}, "n_train_images": 4, "n_test_images": 2,
                  "n_train": 32, "n_test": 24,
                  "train": {"epochs": 2, "batch_size": 16, "lr": 1e-4}},
    },
    # byol_and_aspp: max_side/n_train/n_test/train size the two segmentation heads on VGG-16
    # (stride 16; batches of >= 2: ASPP's pooled branch has BatchNorm on 1x1 maps); "byol"
    # pre-trains ResNet-18 (crops resized to "image_size" px, also for the classifiers) on the
    # unlabelled pool ("pool": random train crops); "supervised" pre-trains it on labelled train
    # parts ("n_train": a seeded subset, None = all); "classifier" is each downstream run of the
    # table ("n_per_class": labelled train crops per class, None = all; "n_test": test crops, None
    # = all); the last two hold assignment_lib.transfer.ClassifierConfig fields besides.
    "byol_and_aspp": {
        "gpu": {"max_side": 320, "n_train": None, "n_test": None,
                "train": {"steps": 600, "batch_size": 8, "crop_size": 256, "optimizer": "adam",
                          "lr": 1e-4, "weight_decay": 0.0, "eval_every": 200},
                "byol": {"pool": 20000, "steps": 2000, "batch_size": 256, "image_size": 64},
                "supervised": {"n_train": None, "epochs": 10, "batch_size": 128, "lr": 1e-3},
                "classifier": {"n_per_class": 100, "n_test": None, "epochs": 30, "batch_size": 64,
                               "lr": 1e-3}},
        "cpu": {"max_side": 192, "n_train": None, "n_test": 25,
                "train": {"steps": 120, "batch_size": 4, "crop_size": 128, "optimizer": "adam",
                          "lr": 3e-4, "weight_decay": 0.0, "freeze": ["backbone"],
                          "eval_every": 40, "amp": False},
                "byol": {"pool": 2000, "steps": 300, "batch_size": 64, "image_size": 32},
                "supervised": {"n_train": 2000, "epochs": 3, "batch_size": 64, "lr": 1e-3},
                "classifier": {"n_per_class": 30, "n_test": 600, "epochs": 15, "batch_size": 64,
                               "lr": 1e-3}},
        "smoke": {"max_side": 48, "n_train": 4, "n_test": 1,
                  "train": {"steps": 1, "batch_size": 2, "crop_size": 32, "optimizer": "adam",
                            "lr": 1e-4, "weight_decay": 0.0, "freeze": ["backbone"],
                            "eval_every": 1},
                  "byol": {"pool": 8, "steps": 1, "batch_size": 8, "image_size": 32},
                  "supervised": {"n_train": 8, "epochs": 1, "batch_size": 8, "lr": 1e-3},
                  "classifier": {"n_per_class": 1, "n_test": 10, "epochs": 1, "batch_size": 16,
                                 "lr": 1e-3}},
    },
}


class BudgetError(ValueError):
    """An unknown budget name (in ``$ASSIGNMENT_BUDGET`` or passed to :func:`sizes`)."""


def _check_budget(name: str, where: str) -> str:
    if name not in BUDGETS:
        raise BudgetError(f"{where} is {name!r}; use one of {BUDGETS} (gpu: full runs on a GPU, "
                          "cpu: about an hour on a laptop CPU, smoke: tiny runs that only check "
                          "that everything works)")
    return name


def detect_budget(environ=None) -> str:
    """The budget for this process: ``$ASSIGNMENT_BUDGET`` if set, else ``"smoke"`` when
    ``ASSIGNMENT_SMOKE=1``, else ``"gpu"`` when CUDA is available, else ``"cpu"``.

    Raises:
        BudgetError: ``$ASSIGNMENT_BUDGET`` names no budget.
    """
    env = os.environ if environ is None else environ
    explicit = env.get(ENV_BUDGET, "").strip().lower()
    if explicit:
        return _check_budget(explicit, f"${ENV_BUDGET}")
    if env.get("ASSIGNMENT_SMOKE", "") == "1":
        return "smoke"
    import torch

    return "gpu" if torch.cuda.is_available() else "cpu"


#: The budget of this process (see :func:`detect_budget`).
BUDGET = detect_budget()

#: True in the ``smoke`` budget (``ASSIGNMENT_SMOKE=1`` or ``ASSIGNMENT_BUDGET=smoke``).
SMOKE = BUDGET == "smoke"


def sizes(notebook: str, budget: str | None = None) -> dict:
    """The training sizes of ``notebook`` (a key of :data:`SIZES`, e.g. ``"fcn_segmentation"``)
    under ``budget`` (default :data:`BUDGET`): a copy of the :data:`SIZES` entry.

    Raises:
        BudgetError: unknown budget. ``KeyError``: unknown notebook (names the known ones).
    """
    budget = _check_budget(budget or BUDGET, "the budget")
    if notebook not in SIZES:
        raise KeyError(f"no sizes for notebook {notebook!r}; known: {sorted(SIZES)}")
    entry = SIZES[notebook][budget]
    return {k: (dict(v) if isinstance(v, dict) else v) for k, v in entry.items()}


def smoke(normal, tiny):
    """Return ``tiny`` in smoke mode and ``normal`` otherwise (e.g. ``epochs = smoke(25, 1)``)."""
    return tiny if SMOKE else normal

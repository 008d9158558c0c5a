"""The hardware budget: how it is chosen, the one table of sizes, and what each notebook gets."""

from __future__ import annotations

import pytest

from assignment_lib import config
from assignment_lib.train import TrainConfig


def test_budget_detection_order(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert config.detect_budget({}) == "cpu"
    assert config.detect_budget({"ASSIGNMENT_SMOKE": "1"}) == "smoke"
    assert config.detect_budget({"ASSIGNMENT_BUDGET": "GPU ", "ASSIGNMENT_SMOKE": "1"}) == "gpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert config.detect_budget({}) == "gpu"
    assert config.detect_budget({"ASSIGNMENT_BUDGET": "cpu"}) == "cpu"
    with pytest.raises(config.BudgetError, match=r"\$ASSIGNMENT_BUDGET is 'laptop'; use one of"):
        config.detect_budget({"ASSIGNMENT_BUDGET": "laptop"})


#: The segmentation notebooks (their rows hold TrainConfig fields; the classifier notebooks' rows
#: are checked by their own tests, e.g. tests/test_transfer.py).
SEGMENTATION = sorted(n for n in config.SIZES if "max_side" in config.SIZES[n]["gpu"])


@pytest.mark.parametrize("notebook", SEGMENTATION)
@pytest.mark.parametrize("budget", config.BUDGETS)
def test_every_budget_has_valid_sizes(notebook, budget):
    """Each entry builds a valid TrainConfig, and budgets shrink from gpu to smoke."""
    entry = config.sizes(notebook, budget)
    train = TrainConfig(**entry["train"], max_side=entry["max_side"])
    assert train.steps >= 1
    if "finetune" in entry:
        TrainConfig(**entry["finetune"], max_side=entry["max_side"])
    steps = [config.SIZES[notebook][b]["train"]["steps"] for b in config.BUDGETS]
    assert steps == sorted(steps, reverse=True) and steps[-1] < steps[0]


def test_sizes_is_a_copy_and_rejects_unknown_names():
    entry = config.sizes("fcn_segmentation", "cpu")
    entry["train"]["steps"] = 1
    assert config.SIZES["fcn_segmentation"]["cpu"]["train"]["steps"] != 1
    with pytest.raises(config.BudgetError):
        config.sizes("fcn_segmentation", "tpu")
    with pytest.raises(KeyError, match="known"):
        config.sizes("nope", "cpu")


def test_smoke_follows_the_budget():
    assert config.SMOKE == (config.BUDGET == "smoke")
    assert config.smoke(10, 1) == (1 if config.SMOKE else 10)

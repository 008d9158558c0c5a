"""The mIoU tier's plumbing: the sandboxed worker trains the submission's FCN-8s under a recipe sent
as plain data and returns class maps for test images it received without labels.

A short recipe (2 steps, 2 images at 64 px) keeps this fast; the calibrated recipe itself is checked
against ``autograder/thresholds.json`` in ``test_miou_credit.py`` and by ``python -m autograder
calibrate``.
"""

import dataclasses

import pytest
import torch

from assignment_lib.data import N_CLASSES, load_split
from assignment_lib.train import TrainConfig
from autograder import recipes
from autograder import reference as reference_mod
from autograder.sandbox import Sandbox


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory):
    cells = [{"grade_id": g, "source": reference_mod.cell_source(g)} for g in ("fcn_imports", "fcn8s")]
    sb = Sandbox(cells, tmp_path_factory.mktemp("miou") / "scratch", slot=9, request_timeout=300,
                 threads=2)
    sb.start()
    yield sb
    sb.close()


def test_grading_recipe_is_plain_data_the_trainer_accepts():
    r = recipes.recipe("cpu")
    config = TrainConfig.from_dict(r["config"])
    assert TrainConfig.from_dict(config.to_dict()) == config
    assert r["pretrained"] and r["test_split"] == "test" and r["n_test"] > 0


def test_worker_trains_and_predicts_unlabelled_test_images(sandbox, sample_root):
    config = dataclasses.replace(TrainConfig.from_dict(recipes.recipe("cpu")["config"]),
                                 steps=2, batch_size=1, crop_size=48, max_side=64)
    train = load_split("train", root=sample_root, max_side=64)[:2]
    test = load_split("test", root=sample_root, max_side=64)[:2]
    resp = sandbox.request(
        "train_predict", name="FCN8s", n_classes=N_CLASSES, config=config.to_dict(), device="cpu",
        max_side=64, vgg16=None,
        train=[(torch.tensor(i), torch.tensor(t)) for i, t in train],
        test_images=[torch.tensor(i) for i, _ in test])
    preds = resp["predictions"]
    assert len(preds) == len(test)
    for p, (image, _) in zip(preds, test):
        assert type(p) is torch.Tensor and tuple(p.shape) == image.shape[:2]
        assert not p.is_floating_point() and 0 <= int(p.min()) and int(p.max()) < N_CLASSES

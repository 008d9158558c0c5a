"""The mIoU tier's plumbing: the sandboxed worker trains the submission's FCN-8s under a recipe sent
as plain data and returns class maps for test images it received without labels.

A short recipe (2 steps, 2 images at 64 px) keeps this fast; the calibrated recipe itself is checked
against the FCN assignment's ``thresholds.json`` in ``test_miou_credit.py`` and by ``python -m autograder
calibrate``.
"""

import dataclasses

import pytest
import torch

from assignment_lib.data import N_CLASSES, load_split
from assignment_lib.train import TrainConfig
from autograder import recipes
from autograder import reference as reference_mod
from autograder.assignment import get_assignment
from autograder.sandbox import Sandbox


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory):
    cells = [{"grade_id": g, "source": reference_mod.cell_source(g, get_assignment("fcn_segmentation"))} for g in ("fcn_imports", "fcn8s")]
    sb = Sandbox(cells, tmp_path_factory.mktemp("miou") / "scratch", slot=9, request_timeout=300,
                 threads=2)
    sb.start()
    yield sb
    sb.close()


def test_grading_recipe_is_plain_data_the_trainer_accepts():
    r = recipes.grading_recipe(recipes.load_recipes(get_assignment("fcn_segmentation").recipes), "cpu")
    assert recipes.Recipe.from_dict(r.to_dict()) == r
    assert TrainConfig.from_dict(r.to_dict()["config"]) == r.config
    assert r.init == "imagenet" and r.data.eval_split == "test" and r.data.eval_limit > 0


def test_worker_trains_and_predicts_unlabelled_test_images(sandbox, sample_root):
    """The sandbox receives ``Recipe.to_dict()`` (here shortened) and runs the shared trainer."""
    r = recipes.grading_recipe(recipes.load_recipes(get_assignment("fcn_segmentation").recipes), "cpu")
    short = dataclasses.replace(r, init="random", data=dataclasses.replace(r.data, max_side=64),
                                config=dataclasses.replace(r.config, steps=2, batch_size=1,
                                                           crop_size=48, max_side=64))
    train = load_split("train", root=sample_root, max_side=64)[:2]
    test = load_split("test", root=sample_root, max_side=64)[:2]
    resp = sandbox.request(
        "train_predict", name="FCN8s", recipe=short.to_dict(), device="cpu", vgg16=None,
        train=[(torch.tensor(i), torch.tensor(t)) for i, t in train],
        test_images=[torch.tensor(i) for i, _ in test])
    preds = resp["predictions"]
    assert len(preds) == len(test)
    for p, (image, _) in zip(preds, test):
        assert type(p) is torch.Tensor and tuple(p.shape) == image.shape[:2]
        assert not p.is_floating_point() and 0 <= int(p.min()) and int(p.max()) < N_CLASSES


# ------------------------------------------------------------------ refusing what cannot run as calibrated

def _settings(**kw):
    from autograder.settings import GradingSettings

    return GradingSettings(miou="cpu", **kw)


def test_tier_refuses_data_other_than_the_calibrations(sample_root):
    from autograder.bundle import Bundle
    from autograder.results import InfrastructureError

    with pytest.raises(InfrastructureError, match="not the data the threshold was calibrated on"):
        recipes.check_tier_ready(_settings(data_root=str(sample_root)), Bundle.for_assignment("fcn_segmentation"))


def test_tier_refuses_without_weights(full_data_root, monkeypatch, tmp_path):
    from autograder.bundle import Bundle
    from autograder.results import InfrastructureError

    monkeypatch.setenv("VGG16_WEIGHTS", str(tmp_path / "absent.pth"))
    with pytest.raises(InfrastructureError, match="VGG16_WEIGHTS"):
        recipes.check_tier_ready(_settings(data_root=str(full_data_root)), Bundle.for_assignment("fcn_segmentation"))


def test_tier_runs_on_the_calibration_data_and_weights(full_data_root, vgg16_features_path, monkeypatch):
    from autograder.bundle import Bundle

    monkeypatch.setenv("VGG16_WEIGHTS", str(vgg16_features_path))
    recipes.check_tier_ready(_settings(data_root=str(full_data_root)), Bundle.for_assignment("fcn_segmentation"))  # no raise


def test_grade_refuses_the_tier_with_a_message_and_a_nonzero_exit(tmp_path, sample_root, repo_root):
    import shutil
    import subprocess
    import sys

    student = tmp_path / "subs" / "alice"
    student.mkdir(parents=True)
    for nb in (repo_root / "notebooks" / "fcn_segmentation").glob("*.ipynb"):
        shutil.copy(nb, student / nb.name)
    proc = subprocess.run([sys.executable, "-m", "autograder", "grade", str(tmp_path / "subs"), "--out",
                           str(tmp_path / "out"), "--miou", "cpu", "--data-root", str(sample_root),
                           "--no-progress", "--no-pdf"], cwd=repo_root, capture_output=True, text=True,
                          timeout=300, check=False)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "nothing graded" in proc.stderr and "calibrated on" in proc.stderr
    assert not (tmp_path / "out" / "alice" / "results.json").exists()

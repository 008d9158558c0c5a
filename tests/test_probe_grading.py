"""The linear-probe hidden test through the real grading path (grade_job: the sandbox runs the
submission's cells and the probe, the trusted side scores), under the committed recipe and threshold.

The reference reaches the threshold and earns full credit; a set_trainable that re-initialises the
layers in every mode (so feature_extractor throws the ImageNet convolutions away) fails with a
teaching message and no credit. Only hidden_tests/test_probe.py is run (a copy of the folder with
that file alone) to keep this under a minute on 2 cores; the probe itself runs its calibrated recipe.
"""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
from pathlib import Path

import pytest

from autograder.assignment import get_assignment
from tests.test_transfer_grader import (
    _submission,  # notebook 1 with edits, as a student hands it in
)

TL = get_assignment("transfer_learning")
#: The calibrated threshold (the reference scores 0.38-0.43 over 8 seeds; random-init encoder and
#: constant 0.10-0.14).
THRESHOLD = json.loads(TL.thresholds.read_text())["recipes"]["cpu_probe"]["threshold"]
RESET_EVERY_MODE = (
    """    if mode == "scratch":
        for module in model.modules():
            if module is not model and hasattr(module, "reset_parameters"):
                module.reset_parameters()""",
    """    for module in model.modules():
        if module is not model and hasattr(module, "reset_parameters"):
            module.reset_parameters()""")


@pytest.fixture(scope="module")
def probe_bundle(tmp_path_factory, full_data_root, vgg16_features_path):
    """The transfer_learning bundle with only test_probe.py (its recipes and thresholds as committed)."""
    from autograder.bundle import Bundle

    root = tmp_path_factory.mktemp("probe_bundle")
    tests = root / "hidden_tests"
    tests.mkdir()
    for name in ("__init__.py", "test_probe.py"):
        shutil.copy(Path(TL.hidden_tests) / name, tests / name)
    return dataclasses.replace(Bundle.of(TL), hidden_tests=str(tests))


def _grade(tmp_path_factory, bundle, data_root, name, edits):
    """Grade through grade_job, whose pre-check (check_tier_ready) runs on the real recipe and data."""
    from autograder.job import GradeJob, grade_job
    from autograder.settings import GradingSettings

    root = tmp_path_factory.mktemp(name)
    settings = GradingSettings(scratch_root=str(root / "grading"), threads=1, miou="cpu",
                               data_root=str(data_root))
    result = grade_job(GradeJob(name, _submission(root / "sub", edits), settings, bundle=bundle))
    return {t.name: t for t in result.tests}["test_probe_accuracy_cpu"]


def test_probe_grades_the_reference_and_fails_a_reset_in_every_mode(tmp_path_factory, probe_bundle,
                                                                    full_data_root):
    ref = _grade(tmp_path_factory, probe_bundle, full_data_root, "reference", {})
    assert ref.status == "passed" and ref.score == ref.max_score == 2, (ref.status, ref.output[:500])
    accuracy = float(re.search(r"probe accuracy ([0-9.]+)", ref.output).group(1))
    assert accuracy >= THRESHOLD

    bad = _grade(tmp_path_factory, probe_bundle, full_data_root, "reset_every_mode",
                 {"transfer_head": RESET_EVERY_MODE})
    assert bad.status == "failed" and bad.score == 0, (bad.status, bad.score, bad.output[:500])
    assert "keeps the pretrained convolution weights" in bad.output and f"needs {THRESHOLD:.3f}" in bad.output


def test_the_sandbox_predicts_what_calibration_computes(tmp_path, full_data_root, vgg16_features_path):
    """The hidden test's sandbox sequence on the reference cells gives the same predictions as
    :func:`autograder.probe.run_probe` in-process with the same seed (here a tiny recipe): the
    threshold calibrated in-process is what grading measures."""
    import torch

    from assignment_lib.transfer import ClassifierConfig
    from assignment_lib.weights import load_vgg16_state_dict
    from autograder import reference as reference_mod
    from autograder.assignments.transfer_learning.hidden_tests import test_probe as hidden
    from autograder.hidden_plugin import SandboxHandle
    from autograder.probe import PartsSpec, load_probe_data, run_probe, score_accuracy
    from autograder.recipes import load_recipes
    from autograder.sandbox import Sandbox

    recipe = dataclasses.replace(
        load_recipes(TL.recipes)["cpu_probe"], config=ClassifierConfig(epochs=3, batch_size=10, lr=1e-3, seed=0),
        data=PartsSpec(size=32, n_train_per_class=4, n_eval=40, n_train_images=60, n_eval_images=30))
    (x, y), (x_eval, y_eval) = load_probe_data(recipe.data, full_data_root)
    vgg = load_vgg16_state_dict(vgg16_features_path)
    features = [(k.removeprefix("features."), v) for k, v in vgg.items() if k.startswith("features.")]
    cells = [{"grade_id": g, "source": reference_mod.cell_source(g, TL)} for g in ("tl_imports", "transfer_head")]
    sb = Sandbox(cells, tmp_path / "scratch", slot=11, request_timeout=120, threads=1)
    sb.start()
    try:
        preds = hidden._predict(SandboxHandle(sb, {}, None), recipe, (x, y), x_eval, features)
    finally:
        sb.close()
    ref = reference_mod.load_reference(TL)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        want = run_probe(recipe.data, recipe.config, ref.replace_head, ref.set_trainable, 0,
                         data=((x, y), (x_eval, y_eval)), vgg16_state_dict=vgg)
    finally:
        torch.set_num_threads(threads)
    assert preds.dtype == torch.int64 and preds.shape == y_eval.shape
    got = score_accuracy(preds, y_eval)
    assert len(set(preds.tolist())) > 2, preds  # the head learned something: a meaningful comparison
    assert got["accuracy"] == want["accuracy"] and got["per_class_accuracy"] == want["per_class_accuracy"]

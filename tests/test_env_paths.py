"""The tests find the data and weights where the kit does: CMP_FACADE_ROOT and VGG16_WEIGHTS win.

A fresh clone without ``../shared`` but with the two variables set must run the data and weight
tests, not skip them (issue 13.6).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

CONFTEST = Path(__file__).with_name("conftest.py")


def _load_conftest():
    spec = importlib.util.spec_from_file_location("_conftest_probe", CONFTEST)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_environment_variables_win_over_shared(tmp_path, monkeypatch):
    root = tmp_path / "elsewhere" / "cmp_facade"
    (root / "base").mkdir(parents=True)
    weights = tmp_path / "vgg.pth"
    weights.write_bytes(b"x")
    monkeypatch.setenv("CMP_FACADE_ROOT", str(root))
    monkeypatch.setenv("VGG16_WEIGHTS", str(weights))
    c = _load_conftest()
    assert c.FULL_DATA == root and c.has_full_data()
    assert c.VGG16_FEATURES == weights


def test_without_variables_the_shared_copy_is_used(monkeypatch):
    monkeypatch.delenv("CMP_FACADE_ROOT", raising=False)
    monkeypatch.delenv("VGG16_WEIGHTS", raising=False)
    c = _load_conftest()
    assert c.FULL_DATA == c.SHARED / "datasets" / "cmp_facade"
    assert c.VGG16_FEATURES == c.SHARED / "weights" / "vgg16_imagenet1k_v1_features.pth"

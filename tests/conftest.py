"""Fixtures shared by the project's tests.

The real CMP Facade base set and the offline VGG-16 weights are found as the kit finds them:
``CMP_FACADE_ROOT`` and ``VGG16_WEIGHTS`` when set (they win), else ``../shared`` (the course
machines and CI). Tests that need them are skipped where neither is present; the others fall back
to the bundled sample.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
SAMPLE_DATA = REPO / "datasets" / "sample"
#: ``$CMP_FACADE_ROOT`` when set, else the course machines' copy in ``../shared``.
FULL_DATA = Path(os.environ.get("CMP_FACADE_ROOT") or SHARED / "datasets" / "cmp_facade")
#: ``$VGG16_WEIGHTS`` when set, else the course machines' copy in ``../shared``.
VGG16_FEATURES = Path(os.environ.get("VGG16_WEIGHTS") or SHARED / "weights" / "vgg16_imagenet1k_v1_features.pth")

torch.set_num_threads(max(1, min(2, torch.get_num_threads())))


def has_full_data() -> bool:
    return (FULL_DATA / "base").is_dir()


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture(scope="session")
def full_data_root() -> Path:
    """The full 378-image base set; the test is skipped where it is absent."""
    if not has_full_data():
        pytest.skip(f"the full CMP Facade base set is not in {FULL_DATA} (set CMP_FACADE_ROOT to the "
                    "folder that holds base/)")
    return FULL_DATA


@pytest.fixture(scope="session")
def sample_root() -> Path:
    return SAMPLE_DATA


@pytest.fixture(scope="session")
def data_root() -> Path:
    """The full base set when present, the bundled sample otherwise."""
    return FULL_DATA if has_full_data() else SAMPLE_DATA


@pytest.fixture(scope="session")
def vgg16_features_path() -> Path:
    """The offline features-only VGG-16 state dict; skipped where it is absent."""
    if not VGG16_FEATURES.is_file():
        pytest.skip(f"no offline VGG-16 weights at {VGG16_FEATURES} (set VGG16_WEIGHTS to a state dict)")
    return VGG16_FEATURES

"""Fixtures shared by the project's tests.

The real CMP Facade base set and the offline VGG-16 weights live in ``../shared`` on the course
machines and in CI. Tests use them when present and fall back to the bundled sample otherwise.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
FULL_DATA = SHARED / "datasets" / "cmp_facade"
SAMPLE_DATA = REPO / "datasets" / "sample"
VGG16_FEATURES = SHARED / "weights" / "vgg16_imagenet1k_v1_features.pth"

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
        pytest.skip("the full CMP Facade base set is not in ../shared/datasets/cmp_facade")
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
        pytest.skip("no offline VGG-16 weights in ../shared/weights")
    return VGG16_FEATURES

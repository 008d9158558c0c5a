"""Tests of assignment_lib.transforms: image and mask stay aligned, labels are never interpolated.

The synthetic pairs encode the label in the image: red = 20 * (label + 1) on 16x16 blocks, so the
label can be read back from the transformed image and compared with the transformed mask. Green is
a left-to-right ramp, which tells whether a horizontal flip happened.
"""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from torchvision import tv_tensors

from assignment_lib.data import IGNORE_INDEX
from assignment_lib.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    RandomScale,
    denormalize,
    eval_transforms,
    train_transforms,
)


def coded_pair(h=96, w=128, block=16, seed=0):
    rng = np.random.default_rng(seed)
    blocks = rng.integers(0, 12, size=(h // block, w // block))
    mask = np.kron(blocks, np.ones((block, block), dtype=np.int64))
    image = np.zeros((3, h, w), dtype=np.uint8)
    image[0] = 20 * (mask + 1)
    image[1] = np.linspace(10, 250, w).round().astype(np.uint8)[None, :]
    image[2] = 128
    return tv_tensors.Image(torch.from_numpy(image)), tv_tensors.Mask(torch.from_numpy(mask))


def decode(image: torch.Tensor) -> tuple[np.ndarray, np.ndarray, bool]:
    """(label read from the red channel (-1 where padded), red channel, flipped?) of an output image."""
    rgb = denormalize(image).astype(int)
    red = rgb[..., 0]
    label = np.rint(red / 20).astype(int) - 1
    green = rgb[..., 1]
    cols = green.mean(axis=0)
    flipped = cols[0] > cols[-1]
    return label, red, bool(flipped)


def interior(m: np.ndarray, r: int = 2) -> np.ndarray:
    """True where every pixel within ``r`` px has the same mask value and is not padding."""
    pad = np.pad(m, r, constant_values=-1)  # pixels near the crop border are not interior
    same = np.ones_like(m, dtype=bool)
    h, w = m.shape
    for dy in range(2 * r + 1):
        for dx in range(2 * r + 1):
            same &= pad[dy:dy + h, dx:dx + w] == m
    return same & (m != IGNORE_INDEX)


def test_flip_keeps_alignment_and_happens():
    image, mask = coded_pair()
    t = train_transforms((96, 128), scale=(1.0, 1.0))
    flips = set()
    torch.manual_seed(0)
    for _ in range(12):
        out_image, out_mask = t(image, mask)
        label, _, flipped = decode(out_image)
        flips.add(flipped)
        expect = mask.numpy()[:, ::-1] if flipped else mask.numpy()
        np.testing.assert_array_equal(out_mask.numpy(), expect)
        np.testing.assert_array_equal(label, out_mask.numpy())
    assert flips == {True, False}, "the horizontal flip must be random (p=0.5)"


@pytest.mark.parametrize("seed", range(6))
def test_scale_and_crop_keep_alignment(seed):
    image, mask = coded_pair(seed=seed)
    torch.manual_seed(seed)
    random.seed(seed)
    out_image, out_mask = train_transforms(64, scale=(0.5, 2.0))(image, mask)
    assert type(out_image) is tv_tensors.Image and type(out_mask) is tv_tensors.Mask
    assert out_image.dtype == torch.float32 and out_image.shape == (3, 64, 64)
    assert out_mask.dtype == torch.int64 and out_mask.shape == (64, 64)
    m = out_mask.numpy()
    assert set(np.unique(m)) <= set(range(12)) | {IGNORE_INDEX}, "mask values must never be interpolated"
    label, red, _ = decode(out_image)
    valid = m != IGNORE_INDEX
    assert (red[~valid] == 0).all(), "padding must coincide in image and mask"
    # the bilinear image and the nearest mask may differ only next to block edges
    inner = interior(m)
    assert inner.sum() > 500
    np.testing.assert_array_equal(label[inner], m[inner])
    # the same check catches a mask that is off by 3 px
    assert (label[inner] != np.roll(m, 3, axis=1)[inner]).any()


def test_padding_uses_ignore_index():
    image, mask = coded_pair(h=48, w=64)
    torch.manual_seed(0)
    out_image, out_mask = train_transforms(100, scale=(1.0, 1.0))(image, mask)
    m = out_mask.numpy()
    assert (m == IGNORE_INDEX).sum() == 100 * 100 - 48 * 64
    label, red, _ = decode(out_image)
    valid = m != IGNORE_INDEX
    np.testing.assert_array_equal(label[valid], m[valid])
    assert (red[~valid] == 0).all()


def test_eval_transforms_normalise_only():
    image, mask = coded_pair()
    out_image, out_mask = eval_transforms()(image, mask)
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    torch.testing.assert_close(out_image, (image.float() / 255 - mean) / std)
    assert out_mask.dtype == torch.int64
    torch.testing.assert_close(out_mask.as_subclass(torch.Tensor), mask.as_subclass(torch.Tensor))


def test_denormalize_roundtrip_and_shape_check():
    image, mask = coded_pair()
    out_image, _ = eval_transforms()(image, mask)
    back = denormalize(out_image)
    assert back.dtype == np.uint8 and back.shape == (96, 128, 3)
    np.testing.assert_array_equal(back, image.permute(1, 2, 0).numpy())
    with pytest.raises(ValueError, match=r"\(3, H, W\)"):
        denormalize(out_image[None])


def test_random_scale_rejects_bad_range():
    with pytest.raises(ValueError, match="scale"):
        RandomScale((2.0, 0.5))

"""Joint image + label transforms for segmentation, built on ``torchvision.transforms.v2``.

Every transform is called as ``transform(image, mask)`` with ``image`` a ``tv_tensors.Image``
(uint8 (3, H, W)) and ``mask`` a ``tv_tensors.Mask`` (int64 (H, W), class indices). torchvision
applies the same geometric parameters to both and resizes masks with NEAREST only, so labels are
never blended; padding fills the mask with ``IGNORE_INDEX`` (255) and the image with 0. The output
image is float32, ImageNet-normalised; the mask stays int64.

Normalisation constants: the ImageNet statistics used by torchvision's VGG-16 weights
(https://pytorch.org/vision/stable/models.html).
"""

from __future__ import annotations

import random

import numpy as np
import torch
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from assignment_lib.data import IGNORE_INDEX, IMAGENET_MEAN, IMAGENET_STD


class RandomScale(v2.Transform):
    """Resize image and mask by one factor drawn uniformly from ``scale`` (e.g. (0.5, 2.0)).

    The image is resized bilinearly (antialiased), the mask with NEAREST (torchvision does this for
    ``tv_tensors.Mask``).
    """

    def __init__(self, scale: tuple[float, float]):
        super().__init__()
        lo, hi = scale
        if not 0 < lo <= hi:
            raise ValueError(f"scale must be (low, high) with 0 < low <= high, got {scale}")
        self.scale = (float(lo), float(hi))

    def make_params(self, flat_inputs):
        h, w = v2.query_size(flat_inputs)
        s = random.uniform(*self.scale)
        return {"size": [max(1, round(h * s)), max(1, round(w * s))]}

    def transform(self, inpt, params):
        return self._call_kernel(F.resize, inpt, size=params["size"], antialias=True)


def _to_float_and_normalize() -> list[v2.Transform]:
    return [
        v2.ToDtype({tv_tensors.Image: torch.float32, tv_tensors.Mask: torch.int64, "others": None}, scale=True),
        v2.Normalize(mean=IMAGENET_MEAN, std=IMAGENET_STD),
    ]


def train_transforms(crop_size: int | tuple[int, int], scale: tuple[float, float] = (0.5, 2.0)) -> v2.Compose:
    """Training augmentation: random scale, pad-if-needed, random crop, horizontal flip, normalise.

    Args:
        crop_size: output size in px, ``int`` (square) or ``(H, W)``.
        scale: range of the random resize factor (1.0 = native size).

    Returns:
        A ``v2.Compose`` taking ``(tv_tensors.Image uint8 (3, H, W), tv_tensors.Mask int64 (H, W))``
        and returning ``(Image float32 (3, h, w) normalised, Mask int64 (h, w))`` with
        ``(h, w) = crop_size``; padded mask pixels are ``IGNORE_INDEX``.
    """
    return v2.Compose([
        RandomScale(scale),
        v2.RandomCrop(crop_size, pad_if_needed=True, fill={tv_tensors.Image: 0, tv_tensors.Mask: IGNORE_INDEX}),
        v2.RandomHorizontalFlip(p=0.5),
        *_to_float_and_normalize(),
    ])


def eval_transforms() -> v2.Compose:
    """Evaluation transform: no geometry change; image to float32 in [0, 1] then ImageNet-normalised.

    Same call convention as :func:`train_transforms`; the mask passes through as int64.
    """
    return v2.Compose(_to_float_and_normalize())


def denormalize(image: torch.Tensor) -> np.ndarray:
    """Undo the ImageNet normalisation for plotting.

    Args:
        image: float tensor (3, H, W), normalised with ``IMAGENET_MEAN``/``IMAGENET_STD``.

    Returns:
        uint8 numpy array (H, W, 3), values clipped to 0..255.

    Raises:
        ValueError: ``image`` is not shaped (3, H, W).
    """
    image = torch.as_tensor(image).detach().cpu().float()
    if image.ndim != 3 or image.shape[0] != 3:
        raise ValueError(f"denormalize expects a (3, H, W) image, got shape {tuple(image.shape)}")
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    rgb = (image * std + mean).clamp(0, 1).mul(255).round().to(torch.uint8)
    return rgb.permute(1, 2, 0).numpy()

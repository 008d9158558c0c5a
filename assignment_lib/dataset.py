"""CMP Facade as a torch ``Dataset``: the decoded pairs of :mod:`assignment_lib.data` through the
joint transforms of :mod:`assignment_lib.transforms`.

Kept apart from both so that ``data`` stays a leaf module (no import of ``transforms``) and
``transforms`` imports only ``data``'s constants.
"""

from __future__ import annotations

import numpy as np
import torch
from torchvision import tv_tensors

from assignment_lib.data import find_data_root, load_split_u8, read_pair, resize_pair, split_ids
from assignment_lib.transforms import eval_transforms


class CMPFacade(torch.utils.data.Dataset):
    """CMP Facade split as a torch ``Dataset`` of ``(image, target)``.

    Args:
        split: ``"train"``, ``"val"`` or ``"test"`` (see :func:`assignment_lib.data.split_ids`).
        root: data folder (see :func:`assignment_lib.data.find_data_root`).
        transform: a joint transform called as ``transform(tv_tensors.Image, tv_tensors.Mask)``,
            e.g. ``assignment_lib.transforms.train_transforms(320)``; default
            ``assignment_lib.transforms.eval_transforms()``.
        max_side: shrink each pair so its longer side is at most this many px
            (see :func:`assignment_lib.data.load_split`).
        cache: True (default) decodes every file once (:func:`assignment_lib.data.load_split`);
            False decodes on every access (slow; for benchmarks).

    Items: ``image`` float32 (3, H, W), ImageNet-normalised (:data:`assignment_lib.data.IMAGENET_MEAN`, ``IMAGENET_STD``);
    ``target`` int64 (H, W) with class indices 0..11 and ``IGNORE_INDEX`` (255) where a transform
    padded.
    """

    def __init__(self, split="train", root=None, transform=None, max_side=None, cache=True):
        self.split = split
        self.root = find_data_root(root)
        self.ids = split_ids(split, self.root)
        self.max_side = max_side
        self.transform = transform if transform is not None else eval_transforms()
        self._pairs = load_split_u8(split, self.root, max_side) if cache else None

    def __len__(self) -> int:
        return len(self.ids)

    def _pair(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        if self._pairs is not None:
            return self._pairs[index]
        image, target = read_pair(self.root, self.ids[index])
        return resize_pair(image, target.astype(np.uint8), self.max_side)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image, target = self._pair(index)
        image_t = tv_tensors.Image(torch.from_numpy(np.array(image)).permute(2, 0, 1))
        mask_t = tv_tensors.Mask(torch.from_numpy(np.array(target)).to(torch.int64))
        image_t, mask_t = self.transform(image_t, mask_t)
        return image_t.as_subclass(torch.Tensor), mask_t.as_subclass(torch.Tensor).to(torch.int64)

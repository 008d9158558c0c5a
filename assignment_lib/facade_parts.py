"""Facade parts: a small image-classification data set cut from the CMP Facade label maps.

Construction (:func:`extract_parts`, deterministic, no randomness):

1. For each image of a split (:func:`assignment_lib.data.split_ids`, full resolution) and each of
   the ten part classes :data:`PART_CLASSES`, label the connected components of
   ``target == class`` with :func:`scipy.ndimage.label` (4-connectivity).
2. Keep the components of at least ``min_area`` pixels (at full resolution); of those, keep the
   ``cap_per_image`` largest of each class in each image (ties: raster order), so that the many
   windows of one facade do not swamp the rarer classes.
3. Take the component's bounding box, widen each side by ``margin`` times the box's longer side,
   make the box square around its centre (the shorter side grows), cut it out of the photo (parts
   of the square outside the photo are black) and resize it to ``size`` x ``size`` (bilinear, PIL).
   A long thin part (a cornice or molding across the whole facade) thus becomes a wide view of the
   facade around it: the class is then harder to tell, as in the label maps themselves.
4. The label is the index of the class in :data:`PART_CLASSES` (0..9; NOT the 12-class index of
   :data:`assignment_lib.data.CLASS_NAMES`).

Splits are the image splits, so no facade appears in two splits. Results are cached in memory
and on disk under :func:`assignment_lib.data.cache_dir` (``parts/``), keyed by the sha256 of the
split's photo and label bytes and the :class:`PartsConfig`; the disk write is atomic.

:func:`unlabelled_pool` gives random square crops of the TRAIN photos, without labels, for
self-supervised pre-training (BYOL).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import zipfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from scipy import ndimage

from assignment_lib.data import (
    CLASS_NAMES,
    IMAGENET_MEAN,
    IMAGENET_STD,
    cache_dir,
    find_data_root,
    hash_image_files,
    read_pair,
    save_npz_atomic,
    split_ids,
)

#: The part classes, in label order: label ``i`` of a part is ``PART_CLASSES[i]``.
PART_CLASSES = ("window", "door", "balcony", "shop", "sill", "blind", "cornice", "pillar", "deco",
                "molding")
N_PART_CLASSES = len(PART_CLASSES)
_CACHE_VERSION = "facade-parts-v1"
_MEMORY: dict[str, dict] = {}


@dataclasses.dataclass(frozen=True)
class PartsConfig:
    """How parts are cut (see the module docstring).

    Attributes:
        size: side of the square crops in px.
        min_area: smallest component kept, in pixels of the full-resolution label map.
        margin: context added on each side, as a fraction of the bounding box's longer side.
        cap_per_image: at most this many components of one class from one image (the largest).
    """

    size: int = 96
    min_area: int = 400
    margin: float = 0.15
    cap_per_image: int = 8

    def __post_init__(self):
        if self.size < 8 or self.min_area < 1 or self.margin < 0 or self.cap_per_image < 1:
            raise ValueError(f"invalid PartsConfig {self}: need size >= 8, min_area >= 1, "
                             "margin >= 0, cap_per_image >= 1")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> PartsConfig:
        return cls(**d)


@dataclasses.dataclass
class FacadeParts:
    """The parts of one split.

    Attributes:
        images: uint8 (N, S, S, 3) RGB crops, S = ``config.size``.
        labels: int64 (N,) in 0..9, indices into :data:`PART_CLASSES`.
        image_ids: (N,) the facade each crop comes from (``"cmp_bNNNN"``).
        boxes: int64 (N, 4) the square box cut, ``(top, left, bottom, right)`` in full-resolution
            pixels, bottom/right exclusive; it may reach outside the photo (black there).
        split: ``"train"``, ``"val"`` or ``"test"``.
        config: the :class:`PartsConfig` used.
    """

    images: np.ndarray
    labels: np.ndarray
    image_ids: tuple[str, ...]
    boxes: np.ndarray
    split: str
    config: PartsConfig

    def __len__(self) -> int:
        return len(self.labels)

    def class_counts(self) -> dict[str, int]:
        """Number of crops per class name, in :data:`PART_CLASSES` order."""
        counts = np.bincount(self.labels, minlength=N_PART_CLASSES)
        return {name: int(c) for name, c in zip(PART_CLASSES, counts)}

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(x, y)``: x float32 (N, 3, S, S) ImageNet-normalised (:func:`to_tensor`), y int64 (N,)."""
        return to_tensor(self.images), torch.from_numpy(np.array(self.labels, dtype=np.int64))


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 (N, S, S, 3) RGB in 0..255 -> float32 (N, 3, S, S), scaled to [0, 1] then normalised
    with :data:`assignment_lib.data.IMAGENET_MEAN` / ``IMAGENET_STD`` (what VGG-16 expects).

    Raises:
        ValueError: not an (N, H, W, 3) uint8 array.
    """
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
        raise ValueError(f"expected uint8 images (N, H, W, 3), got {images.dtype} {images.shape}")
    x = torch.from_numpy(np.array(images)).permute(0, 3, 1, 2).float() / 255.0  # a writable copy
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (x - mean) / std


def _square_crop(image: np.ndarray, box, size: int) -> np.ndarray:
    """Cut ``box`` = (top, left, bottom, right) out of ``image`` (zeros outside) and resize it to
    ``size`` x ``size``: uint8 (size, size, 3)."""
    top, left, bottom, right = box
    h, w = image.shape[:2]
    out = np.zeros((bottom - top, right - left, 3), dtype=np.uint8)
    t, lft, b, r = max(top, 0), max(left, 0), min(bottom, h), min(right, w)
    out[t - top:b - top, lft - left:r - left] = image[t:b, lft:r]
    return np.asarray(Image.fromarray(out).resize((size, size), Image.Resampling.BILINEAR))


def extract_parts(image: np.ndarray, target: np.ndarray, config: PartsConfig | None = None):
    """The parts of one facade (construction: module docstring, steps 1-4).

    Args:
        image: uint8 (H, W, 3) RGB photo.
        target: int (H, W) class indices 0..11 of :data:`assignment_lib.data.CLASS_NAMES`.
        config: default ``PartsConfig()``.

    Returns:
        ``(crops, labels, boxes)``: uint8 (n, S, S, 3), int64 (n,) in 0..9, int64 (n, 4); n may be 0.
        Order: classes in :data:`PART_CLASSES` order, within a class by decreasing area.

    Raises:
        ValueError: image and target sizes differ.
    """
    config = config or PartsConfig()
    if image.shape[:2] != target.shape:
        raise ValueError(f"image {image.shape} and target {target.shape} differ in size")
    crops, labels, boxes = [], [], []
    for label, name in enumerate(PART_CLASSES):
        components, n = ndimage.label(target == CLASS_NAMES.index(name))
        if n == 0:
            continue
        areas = np.bincount(components.ravel(), minlength=n + 1)[1:]
        slices = ndimage.find_objects(components)
        keep = [i for i in np.argsort(-areas, kind="stable") if areas[i] >= config.min_area]
        for i in keep[: config.cap_per_image]:
            rows, cols = slices[i]
            side = max(rows.stop - rows.start, cols.stop - cols.start)
            side = round(side * (1 + 2 * config.margin))
            cy, cx = (rows.start + rows.stop) // 2, (cols.start + cols.stop) // 2
            box = (cy - side // 2, cx - side // 2, cy - side // 2 + side, cx - side // 2 + side)
            crops.append(_square_crop(image, box, config.size))
            labels.append(label)
            boxes.append(box)
    s = config.size
    return (np.stack(crops) if crops else np.zeros((0, s, s, 3), np.uint8),
            np.asarray(labels, dtype=np.int64), np.asarray(boxes, dtype=np.int64).reshape(-1, 4))


def _files_digest(root: Path, ids, extra: str) -> str:
    digest = hashlib.sha256(f"{_CACHE_VERSION}:{extra}".encode())
    for image_id in ids:
        hash_image_files(digest, root, image_id)
    return digest.hexdigest()


def _load_npz(path: Path) -> dict | None:
    try:
        with np.load(path, allow_pickle=False) as npz:
            return {k: npz[k] for k in npz.files}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):  # damaged: a miss
        return None


def _cached(key: str, build) -> dict:
    hit = _MEMORY.get(key)
    if hit is None:
        path = cache_dir() / "parts" / f"{key}.npz"
        hit = _load_npz(path)
        if hit is None:
            hit = build()
            save_npz_atomic(path, **hit)
        _MEMORY[key] = hit
    return hit


def format_counts(parts: FacadeParts) -> str:
    """One line: the split, its number of crops and facades, and the crops per class."""
    counts = ", ".join(f"{k} {v}" for k, v in parts.class_counts().items())
    return (f"{parts.split}: {len(parts)} parts from {len(set(parts.image_ids))} facades "
            f"({counts})")


def load_parts(split: str, root: str | os.PathLike | None = None,
               config: PartsConfig | None = None, n_images: int | None = None,
               verbose: bool = True) -> FacadeParts:
    """The parts of every facade of ``split``, cut as the module docstring says.

    Args:
        split: ``"train"``, ``"val"`` or ``"test"`` (the image splits of
            :func:`assignment_lib.data.split_ids`).
        root: data folder (see :func:`assignment_lib.data.find_data_root`).
        config: default ``PartsConfig()``.
        n_images: use only the first ``n_images`` facades of the split (id order); ``None``: all.
        verbose: print the class counts (:func:`format_counts`).

    Returns:
        :class:`FacadeParts`, crops in image-id order. The arrays are read-only (shared cache).

    Raises:
        DataError: see :func:`assignment_lib.data.split_ids` and :func:`assignment_lib.data.read_pair`.
    """
    config = config or PartsConfig()
    root = find_data_root(root)
    ids = split_ids(split, root)[:n_images]

    def build() -> dict:
        out = {"images": [], "labels": [], "boxes": [], "image_ids": []}
        for image_id in ids:
            image, target = read_pair(root, image_id)
            crops, labels, boxes = extract_parts(image, target, config)
            out["images"].append(crops)
            out["labels"].append(labels)
            out["boxes"].append(boxes)
            out["image_ids"].append(np.full(len(labels), image_id))
        s = config.size
        return {"images": np.concatenate(out["images"]) if ids else np.zeros((0, s, s, 3), np.uint8),
                "labels": np.concatenate(out["labels"]) if ids else np.zeros(0, np.int64),
                "boxes": np.concatenate(out["boxes"]) if ids else np.zeros((0, 4), np.int64),
                "image_ids": (np.concatenate(out["image_ids"]) if ids else np.zeros(0, "<U9")
                              ).astype(str)}

    key = _files_digest(root, ids, json.dumps(config.to_dict(), sort_keys=True) + split)
    hit = _cached(key, build)
    for arr in hit.values():
        arr.setflags(write=False)
    parts = FacadeParts(images=hit["images"], labels=hit["labels"],
                        image_ids=tuple(str(i) for i in hit["image_ids"]), boxes=hit["boxes"],
                        split=split, config=config)
    if verbose:
        print(format_counts(parts))
    return parts


def balanced_subset(x: torch.Tensor, y: torch.Tensor, n_per_class: int, seed: int = 0,
                    n_classes: int = N_PART_CLASSES) -> tuple[torch.Tensor, torch.Tensor]:
    """A deterministic class-balanced subset of ``(x, y)``: ``n_per_class`` items of each class
    ``0..n_classes-1``, drawn without replacement with ``numpy.random.default_rng(seed)``.

    Args:
        x: (N, ...) tensor (images), indexed along its first dimension.
        y: int64 (N,) labels.

    Returns:
        ``(x_sub, y_sub)``, ``n_classes * n_per_class`` items, classes in order 0, 1, ..., and the
        items of a class in the order of their indices in ``x`` (so the same seed always gives the
        same tensors).

    Raises:
        ValueError: ``n_per_class < 1``, ``x`` and ``y`` of different lengths, or a class with fewer
            than ``n_per_class`` items (named, with its count).
    """
    y_np = np.asarray(y)
    if n_per_class < 1:
        raise ValueError(f"n_per_class must be >= 1, got {n_per_class}")
    if len(x) != len(y_np):
        raise ValueError(f"x has {len(x)} items but y has {len(y_np)}")
    rng = np.random.default_rng(seed)
    picks = []
    for c in range(n_classes):
        idx = np.flatnonzero(y_np == c)
        if len(idx) < n_per_class:
            name = PART_CLASSES[c] if n_classes == N_PART_CLASSES else str(c)
            raise ValueError(f"class {c} ({name}) has {len(idx)} items, fewer than n_per_class={n_per_class}")
        picks.append(np.sort(rng.choice(idx, size=n_per_class, replace=False)))
    index = torch.from_numpy(np.concatenate(picks))
    return x[index], torch.as_tensor(y_np)[index].to(torch.int64)


def unlabelled_pool(n: int, root: str | os.PathLike | None = None, size: int = 96, seed: int = 0,
                    scale: tuple[float, float] = (0.15, 0.5)) -> np.ndarray:
    """``n`` random square crops of the TRAIN photos, without labels (for self-supervision).

    Each crop: a train facade drawn uniformly, a side drawn uniformly in ``scale`` times the photo's
    shorter side, a position drawn uniformly inside the photo; resized to ``size`` x ``size``
    (bilinear). Deterministic for a given ``seed`` (``numpy.random.default_rng``); cached like
    :func:`load_parts`. Val and test facades are never used.

    Returns:
        uint8 (n, size, size, 3) RGB, read-only; :func:`to_tensor` turns it into model inputs.

    Raises:
        ValueError: ``n < 1`` or ``scale`` not within (0, 1]. DataError: see :func:`load_parts`.
    """
    if n < 1 or not 0 < scale[0] <= scale[1] <= 1:
        raise ValueError(f"need n >= 1 and 0 < scale[0] <= scale[1] <= 1, got n={n}, scale={scale}")
    root = find_data_root(root)
    ids = split_ids("train", root)

    def build() -> dict:
        rng = np.random.default_rng(seed)
        which = rng.integers(len(ids), size=n)
        fractions = rng.uniform(scale[0], scale[1], size=n)
        corners = rng.uniform(0, 1, size=(n, 2))
        crops = np.zeros((n, size, size, 3), np.uint8)
        for index in np.unique(which):
            image, _ = read_pair(root, ids[index])
            h, w = image.shape[:2]
            for k in np.flatnonzero(which == index):
                side = max(1, int(fractions[k] * min(h, w)))
                top, left = int(corners[k, 0] * (h - side)), int(corners[k, 1] * (w - side))
                crops[k] = _square_crop(image, (top, left, top + side, left + side), size)
        return {"images": crops}

    key = _files_digest(root, ids, f"pool:n={n},size={size},seed={seed},scale={tuple(scale)}")
    images = _cached(key, build)["images"]
    images.setflags(write=False)
    return images

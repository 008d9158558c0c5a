"""Read the CMP Facade Database (base set) as images and class-index maps.

Source: R. Tyleček and R. Šára, "Spatial Pattern Templates for Recognition of Objects with Regular
Structure", Proc. GCPR 2013. Dataset page: https://cmp.felk.cvut.cz/~tylecr1/facade/ (licence:
Creative Commons Attribution-ShareAlike). This module reads the ORIGINAL layout of
``CMP_facade_DB_base.zip``::

    <root>/base/cmp_bNNNN.jpg     photo, RGB JPEG
    <root>/base/cmp_bNNNN.png     label map, 8-bit palette PNG whose pixel VALUES 1..12 are classes
    <root>/label_names.txt        "<value> <class name> <z-order>" for the values 1..12
    <root>/splits/{train,val,test}.txt   optional; else the repository's ``datasets/splits/`` lists

Class indices used everywhere in the kit are ``label value - 1``, i.e. 0..11, in the order of
``CLASS_NAMES``; ``IGNORE_INDEX = 255`` marks pixels that carry no label (e.g. crop padding).
Labels are read with ``np.array(Image.open(png))``, which gives the palette indices; never convert a
label PNG to RGB.

Where the data is found (first match wins), see :func:`find_data_root`: an explicit ``root``
argument; the environment variable ``CMP_FACADE_ROOT``; ``<repo>/datasets/cmp_facade/``; the
bundled 24-image sample ``<repo>/datasets/sample/``.

Decoded arrays are cached (:func:`load_split`) in memory and on disk under ``FCN_KIT_CACHE``
(default ``~/.cache/fcn_kit``), keyed by the sha256 of the files' bytes, so JPEGs are decoded once.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from assignment_lib.config import REPO_ROOT

#: Number of classes of the CMP Facade base set.
N_CLASSES = 12

#: Class names; index ``i`` is label value ``i + 1`` in the PNGs (from the dataset's label_names.txt).
CLASS_NAMES = (
    "background", "facade", "window", "door", "cornice", "sill",
    "balcony", "blind", "deco", "molding", "pillar", "shop",
)

#: The dataset's own colours, uint8 array (12, 3) of RGB; row ``i`` is class index ``i``. These are
#: the palette entries 1..12 of every label PNG of the base set (entry 0 is unused).
PALETTE = np.array(
    [
        (0, 0, 170), (0, 0, 255), (0, 85, 255), (0, 170, 255), (0, 255, 255), (85, 255, 170),
        (170, 255, 85), (255, 255, 0), (255, 170, 0), (255, 85, 0), (255, 0, 0), (170, 0, 0),
    ],
    dtype=np.uint8,
)
PALETTE.setflags(write=False)

#: Target value for pixels without a label (padding); losses and metrics must ignore it.
IGNORE_INDEX = 255

#: Per-channel RGB mean and standard deviation of ImageNet, for images scaled to [0, 1]: the
#: normalisation torchvision's VGG-16 weights expect (used by ``transforms`` and ``train``).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

SPLITS = ("train", "val", "test")
ENV_ROOT = "CMP_FACADE_ROOT"
ENV_CACHE = "FCN_KIT_CACHE"
DEFAULT_FULL_ROOT = REPO_ROOT / "datasets" / "cmp_facade"
SAMPLE_ROOT = REPO_ROOT / "datasets" / "sample"
REPO_SPLITS = REPO_ROOT / "datasets" / "splits"
_CACHE_VERSION = b"fcn_kit-decoded-v1"

_WHERE_TO_PUT = (
    "Put the CMP Facade base set (folders base/ and label_names.txt from CMP_facade_DB_base.zip) in "
    f"{DEFAULT_FULL_ROOT}, or set {ENV_ROOT}=/path/to/it, or run `python -m assignment_lib.download` "
    "to fetch it from https://cmp.felk.cvut.cz/~tylecr1/facade/."
)


class DataError(ValueError):
    """Bad or missing dataset files. The message names the offending file or folder."""


# --------------------------------------------------------------------------------------- locating


def _has_base(root: Path) -> bool:
    return (root / "base").is_dir()


def find_data_root(root: str | os.PathLike | None = None) -> Path:
    """Return the folder that holds ``base/`` (and ``label_names.txt``) of the CMP Facade set.

    Search order: ``root`` if given; ``$CMP_FACADE_ROOT`` if set; ``<repo>/datasets/cmp_facade/``;
    the bundled sample ``<repo>/datasets/sample/``. A ``root`` or ``$CMP_FACADE_ROOT`` that is given
    but lacks ``base/`` is an error (it is never silently replaced by the sample).

    Raises:
        DataError: the given folder has no ``base/`` sub-folder, or no data is found at all; the
            message says where to put the data.
    """
    for given, what in ((root, "the root argument"), (os.environ.get(ENV_ROOT) or None, f"${ENV_ROOT}")):
        if given is not None:
            path = Path(given).expanduser()
            if not _has_base(path):
                raise DataError(f"{what} points to {path}, which has no base/ folder. {_WHERE_TO_PUT}")
            return path
    for path in (DEFAULT_FULL_ROOT, SAMPLE_ROOT):
        if _has_base(path):
            return path
    raise DataError(f"no CMP Facade data found. {_WHERE_TO_PUT}")


def split_ids(split: str, root: str | os.PathLike | None = None) -> list[str]:
    """Return the sorted image ids (``"cmp_bNNNN"``) of ``split`` in ``"train"``, ``"val"``, ``"test"``.

    The id list is ``<root>/splits/<split>.txt`` when the data root has one (the bundled sample
    does: it lists exactly its 24 ids), else the repository's ``datasets/splits/<split>.txt``
    (300/28/50 ids of the 378-image base set; seed and method in ``datasets/README.md``).

    Raises:
        DataError: unknown split name, unreadable list, or a listed id whose ``.jpg`` is missing
            under ``<root>/base/`` (the message names the missing file and the list).
    """
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r}; use one of {SPLITS}")
    root = find_data_root(root)
    list_file = root / "splits" / f"{split}.txt"
    if not list_file.is_file():
        list_file = REPO_SPLITS / f"{split}.txt"
    try:
        ids = [line.strip() for line in list_file.read_text().splitlines() if line.strip()]
    except OSError as err:
        raise DataError(f"cannot read the split list {list_file}: {err}") from err
    for image_id in ids:
        jpg = root / "base" / f"{image_id}.jpg"
        if not jpg.is_file():
            raise DataError(
                f"{jpg} is missing but the split list {list_file} names {image_id!r}: the data under "
                f"{root} is incomplete. {_WHERE_TO_PUT}"
            )
    return sorted(ids)


# ---------------------------------------------------------------------------------------- reading


def _open_image(path: Path, what: str) -> Image.Image:
    if not path.is_file():
        raise DataError(f"missing {what} file {path}")
    try:
        img = Image.open(path)
        img.load()
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as err:
        raise DataError(f"cannot decode {what} file {path} (corrupt or not an image): {err}") from err
    return img


def read_pair(root: str | os.PathLike, image_id: str) -> tuple[np.ndarray, np.ndarray]:
    """Decode one photo and its label map.

    Args:
        root: folder holding ``base/`` (see :func:`find_data_root`).
        image_id: e.g. ``"cmp_b0001"``.

    Returns:
        ``(image, target)``: image uint8 (H, W, 3) RGB; target int64 (H, W) with class indices
        0..11 (PNG value - 1, see ``CLASS_NAMES``).

    Raises:
        DataError, naming the file: ``base/`` missing (with where to put the data), photo or label
        missing, undecodable file, label size differs from the photo, label values outside 1..12.
    """
    root = Path(root)
    base = root / "base"
    if not base.is_dir():
        raise DataError(f"folder {base} does not exist. {_WHERE_TO_PUT}")
    jpg, png = base / f"{image_id}.jpg", base / f"{image_id}.png"
    image = np.asarray(_open_image(jpg, "photo").convert("RGB"), dtype=np.uint8)
    if not png.is_file():
        raise DataError(f"missing label file {png} for the photo {jpg}")
    label_img = _open_image(png, "label")
    if label_img.mode not in ("P", "L"):
        raise DataError(
            f"label file {png} has PIL mode {label_img.mode!r}; expected a palette ('P') PNG whose "
            "pixel values 1..12 are class ids (do not save labels as RGB)"
        )
    label = np.array(label_img)
    if label.shape != image.shape[:2]:
        raise DataError(
            f"label file {png} is {label.shape[1]}x{label.shape[0]} (WxH) but its photo {jpg} is "
            f"{image.shape[1]}x{image.shape[0]}"
        )
    lo, hi = int(label.min()), int(label.max())
    if lo < 1 or hi > N_CLASSES:
        bad = sorted(set(np.unique(label).tolist()) - set(range(1, N_CLASSES + 1)))
        raise DataError(f"label file {png} has values {bad} outside 1..{N_CLASSES} (label_names.txt)")
    return image, label.astype(np.int64) - 1


def read_label_names(root: str | os.PathLike | None = None) -> tuple[str, ...]:
    """Return the 12 class names from ``<root>/label_names.txt`` ordered by label value 1..12.

    Raises:
        DataError: the file is missing or malformed (names the file).
    """
    path = find_data_root(root) / "label_names.txt"
    try:
        rows = [line.split() for line in path.read_text().splitlines() if line.strip()]
        names = {int(r[0]): r[1] for r in rows}
        return tuple(names[v] for v in range(1, N_CLASSES + 1))
    except (OSError, ValueError, IndexError, KeyError) as err:
        raise DataError(f"cannot read class names from {path}: {err!r}") from err


def resize_pair(image: np.ndarray, target: np.ndarray, max_side: int) -> tuple[np.ndarray, np.ndarray]:
    """Shrink a pair so that its longer side is at most ``max_side`` pixels (never enlarges).

    The photo is resized bilinearly with antialiasing (PIL), the target with NEAREST, so class
    indices are never blended. Dtypes are kept.
    """
    h, w = target.shape
    if max_side is None or max(h, w) <= max_side:
        return image, target
    scale = max_side / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))  # PIL wants (W, H)
    image = np.asarray(Image.fromarray(image).resize(size, Image.Resampling.BILINEAR, reducing_gap=None))
    small = Image.fromarray(target.astype(np.uint8)).resize(size, Image.Resampling.NEAREST)
    return image, np.asarray(small).astype(target.dtype)


# ---------------------------------------------------------------------------------------- caching

_MEMORY_CACHE: dict[str, tuple[np.ndarray, np.ndarray]] = {}


def cache_dir() -> Path:
    """The on-disk cache folder: ``$FCN_KIT_CACHE`` or ``~/.cache/fcn_kit``."""
    return Path(os.environ.get(ENV_CACHE) or Path.home() / ".cache" / "fcn_kit").expanduser()


def clear_memory_cache() -> None:
    """Forget the in-memory decoded arrays (the disk cache is kept)."""
    _MEMORY_CACHE.clear()


def hash_image_files(digest, root: Path, image_id: str) -> None:
    """Feed the bytes of ``image_id``'s photo (``.jpg``) and label map (``.png``) under
    ``<root>/base`` into ``digest`` (a ``hashlib`` object): what the disk caches are keyed by.

    Raises:
        DataError: a file cannot be read (named).
    """
    for suffix in (".jpg", ".png"):
        path = root / "base" / f"{image_id}{suffix}"
        try:
            digest.update(path.read_bytes())
        except OSError as err:
            raise DataError(f"cannot read {path}: {err}") from err


def _cache_key(root: Path, image_id: str, max_side: int | None) -> str:
    digest = hashlib.sha256(_CACHE_VERSION)
    hash_image_files(digest, root, image_id)
    digest.update(f"max_side={max_side}".encode())
    return digest.hexdigest()


def _load_disk(path: Path) -> tuple[np.ndarray, np.ndarray] | None:
    try:
        with np.load(path) as npz:
            image, target = npz["image"], npz["target"]
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):  # damaged entry: a miss, rewritten
        return None
    ok = (
        image.dtype == np.uint8 and target.dtype == np.uint8 and image.ndim == 3
        and image.shape[2] == 3 and image.shape[:2] == target.shape and int(target.max()) < N_CLASSES
    )
    return (image, target) if ok else None


def _save_disk(path: Path, image: np.ndarray, target: np.ndarray) -> None:
    save_npz_atomic(path, image=image, target=target)


def save_npz_atomic(path: Path, **arrays: np.ndarray) -> None:
    """Write ``arrays`` to the cache file ``path`` (``np.savez``) atomically: readers see the old
    file or the complete new one. A read-only or full cache folder is ignored (it only costs speed)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".npz")
        try:
            with os.fdopen(fd, "wb") as f:
                np.savez(f, **arrays)
            os.replace(tmp, path)  # atomic: readers see the old file or the complete new one
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    except OSError:
        pass  # a read-only or full cache folder only costs speed


def _load_pair_u8(root: Path, image_id: str, max_side: int | None) -> tuple[np.ndarray, np.ndarray]:
    """One pair as (image uint8 (H,W,3), target uint8 (H,W) 0..11), via the memory and disk caches."""
    key = _cache_key(root, image_id, max_side)
    hit = _MEMORY_CACHE.get(key)
    if hit is None:
        disk = cache_dir() / key[:2] / f"{key}.npz"
        hit = _load_disk(disk)
        if hit is None:
            image, target = read_pair(root, image_id)
            image, target = resize_pair(image, target.astype(np.uint8), max_side)
            hit = (np.ascontiguousarray(image), np.ascontiguousarray(target))
            _save_disk(disk, *hit)
        for arr in hit:
            arr.setflags(write=False)
        _MEMORY_CACHE[key] = hit
    return hit


def load_split_u8(split: str, root, max_side: int | None) -> list[tuple[np.ndarray, np.ndarray]]:
    """:func:`load_split` with the targets kept as uint8 (the cached form; 8x smaller than int64)."""
    root = find_data_root(root)
    return [_load_pair_u8(root, image_id, max_side) for image_id in split_ids(split, root)]


def load_split(
    split: str, root: str | os.PathLike | None = None, max_side: int | None = None
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Decode every pair of ``split`` once and return ``[(image, target), ...]`` in id order.

    Returns:
        image uint8 (H, W, 3); target int64 (H, W) in 0..11. With ``max_side`` each pair is shrunk
        so that its longer side is at most ``max_side`` px (antialiased photo, NEAREST target).

    Decoded arrays are cached in memory and in ``$FCN_KIT_CACHE`` (default ``~/.cache/fcn_kit``) as
    ``.npz`` files named by the sha256 of the photo and label bytes plus ``max_side``; a changed file
    gets a new key. Disk writes are atomic (temp file + rename). The returned images are read-only
    views of the cache; copy before editing them in place.

    Raises:
        DataError: see :func:`split_ids` and :func:`read_pair`.
    """
    return [(image, target.astype(np.int64)) for image, target in load_split_u8(split, root, max_side)]


# ---------------------------------------------------------------------------------------- dataset

"""assignment_lib.facade_parts: the parts data set of the transfer-learning assignment."""

from __future__ import annotations

import numpy as np
import pytest

from assignment_lib import data
from assignment_lib import facade_parts as fp


@pytest.fixture
def fresh_cache(tmp_path, monkeypatch):
    """An empty disk cache and an empty memory cache for this test."""
    monkeypatch.setenv(data.ENV_CACHE, str(tmp_path / "cache"))
    monkeypatch.setattr(fp, "_MEMORY", {})
    return tmp_path / "cache"


def _toy():
    """A 60x80 facade: three windows (areas 100, 64, 36), one door (area 20) and one sill."""
    target = np.full((60, 80), data.CLASS_NAMES.index("facade"), np.int64)
    window, door = data.CLASS_NAMES.index("window"), data.CLASS_NAMES.index("door")
    target[5:15, 5:15] = window
    target[5:13, 30:38] = window
    target[30:36, 5:11] = window
    target[40:60, 60:61] = door
    target[16:18, 5:15] = data.CLASS_NAMES.index("sill")
    image = np.random.default_rng(0).integers(0, 256, (60, 80, 3), dtype=np.uint8)
    return image, target


def test_extract_parts_min_area_cap_order_and_boxes():
    image, target = _toy()
    cfg = fp.PartsConfig(size=16, min_area=30, margin=0.0, cap_per_image=2)
    crops, labels, boxes = fp.extract_parts(image, target, cfg)
    # windows: the two largest of three (cap 2); door (20 px) and sill (20 px) are under min_area
    assert labels.tolist() == [fp.PART_CLASSES.index("window")] * 2
    assert crops.shape == (2, 16, 16, 3) and crops.dtype == np.uint8
    assert boxes.tolist() == [[5, 5, 15, 15], [5, 30, 13, 38]]  # largest first, square, no margin
    # the crop is the box resized: a 10x10 box resized to 16 is the photo patch upsampled
    from PIL import Image
    want = np.asarray(Image.fromarray(np.ascontiguousarray(image[5:15, 5:15])).resize(
        (16, 16), Image.Resampling.BILINEAR))
    np.testing.assert_array_equal(crops[0], want)


def test_extract_parts_margin_square_and_outside_is_black():
    image, target = _toy()
    cfg = fp.PartsConfig(size=20, min_area=10, margin=0.5, cap_per_image=5)
    _, labels, boxes = fp.extract_parts(image, target, cfg)
    door = fp.PART_CLASSES.index("door")
    (k,) = np.flatnonzero(labels == door)
    top, left, bottom, right = boxes[k]
    assert bottom - top == right - left == 40  # longer side 20, plus 2 * 0.5 * 20
    assert bottom > 60  # reaches below the photo: that part of the crop is black
    crops, _, _ = fp.extract_parts(image, target, cfg)
    assert crops[k][-2:].max() == 0
    with pytest.raises(ValueError, match="differ in size"):
        fp.extract_parts(image[:10], target, cfg)
    with pytest.raises(ValueError):
        fp.PartsConfig(cap_per_image=0)


def test_sample_splits_cap_determinism_and_dtypes(sample_root, fresh_cache, capsys):
    cfg = fp.PartsConfig(size=32)
    parts = {s: fp.load_parts(s, root=sample_root, config=cfg) for s in data.SPLITS}
    printed = capsys.readouterr().out
    assert "train:" in printed and "window" in printed
    for split, p in parts.items():
        ids = set(data.split_ids(split, sample_root))
        assert set(p.image_ids) <= ids and len(p.image_ids) == len(p)
        assert p.images.shape == (len(p), 32, 32, 3) and p.images.dtype == np.uint8
        assert p.labels.dtype == np.int64 and p.labels.min() >= 0 and p.labels.max() < 10
        assert sum(p.class_counts().values()) == len(p)
        pairs = list(zip(p.image_ids, p.labels.tolist()))
        assert max(pairs.count(x) for x in set(pairs)) <= cfg.cap_per_image
    assert not set(parts["train"].image_ids) & set(parts["val"].image_ids)
    assert not set(parts["train"].image_ids) & set(parts["test"].image_ids)
    assert not set(parts["val"].image_ids) & set(parts["test"].image_ids)
    assert len(set(parts["train"].labels.tolist())) >= 8  # most classes occur in 16 facades
    x, y = parts["val"].tensors()
    assert x.shape == (len(parts["val"]), 3, 32, 32) and x.dtype.is_floating_point and y.dtype.is_signed
    assert list(fresh_cache.rglob("*.npz"))  # cached on disk
    # a second build from scratch (memory and disk caches cleared) gives the same arrays
    fp._MEMORY.clear()
    for f in fresh_cache.rglob("*.npz"):
        f.unlink()
    again = fp.load_parts("train", root=sample_root, config=cfg, verbose=False)
    np.testing.assert_array_equal(again.images, parts["train"].images)
    np.testing.assert_array_equal(again.boxes, parts["train"].boxes)
    assert again.image_ids == parts["train"].image_ids


def test_unlabelled_pool_is_deterministic_from_train_only(sample_root, fresh_cache, monkeypatch):
    a = fp.unlabelled_pool(12, root=sample_root, size=24, seed=3)
    assert a.shape == (12, 24, 24, 3) and a.dtype == np.uint8 and a.std() > 0
    fp._MEMORY.clear()
    for f in fresh_cache.rglob("*.npz"):
        f.unlink()
    used = []
    real = fp.read_pair
    monkeypatch.setattr(fp, "read_pair", lambda root, i: used.append(i) or real(root, i))
    b = fp.unlabelled_pool(12, root=sample_root, size=24, seed=3)
    np.testing.assert_array_equal(a, b)
    assert used and set(used) <= set(data.split_ids("train", sample_root))
    assert not np.array_equal(fp.unlabelled_pool(12, root=sample_root, size=24, seed=4), a)
    with pytest.raises(ValueError):
        fp.unlabelled_pool(0, root=sample_root)


def test_to_tensor_normalises():
    x = fp.to_tensor(np.full((1, 2, 2, 3), 255, np.uint8))
    assert x.shape == (1, 3, 2, 2)
    assert abs(float(x[0, 0, 0, 0]) - (1 - data.IMAGENET_MEAN[0]) / data.IMAGENET_STD[0]) < 1e-6
    with pytest.raises(ValueError, match="uint8"):
        fp.to_tensor(np.zeros((2, 2, 3), np.uint8))


def test_full_data_val_test_parts(full_data_root, fresh_cache):
    """On the 378-image base set: val and test parts come from their own facades, every class
    occurs, and the per-image cap holds (train is the same code on 300 more facades)."""
    cfg = fp.PartsConfig()
    seen = {}
    for split in ("val", "test"):
        p = fp.load_parts(split, root=full_data_root, config=cfg, verbose=False)
        seen[split] = set(p.image_ids)
        assert seen[split] <= set(data.split_ids(split, full_data_root))
        assert all(v > 0 for v in p.class_counts().values()), p.class_counts()
        _, per = np.unique(np.char.add(np.asarray(p.image_ids), p.labels.astype(str)),
                           return_counts=True)
        assert per.max() <= cfg.cap_per_image
    assert not seen["val"] & seen["test"]
    assert not set(data.split_ids("train", full_data_root)) & (seen["val"] | seen["test"])

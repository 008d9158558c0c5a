"""Tests of assignment_lib.data: the real base set, the committed splits, the sample, errors, the cache."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from assignment_lib import data, dataset
from assignment_lib.data import DataError

SIZES = {"train": 300, "val": 28, "test": 50}


def repo_list(repo_root: Path, split: str) -> list[str]:
    return (repo_root / "datasets" / "splits" / f"{split}.txt").read_text().split()


@pytest.fixture
def cache_tmp(tmp_path, monkeypatch):
    """A fresh disk cache and an empty memory cache."""
    monkeypatch.setenv("FCN_KIT_CACHE", str(tmp_path / "cache"))
    data.clear_memory_cache()
    yield tmp_path / "cache"
    data.clear_memory_cache()


@pytest.fixture
def count_decodes(monkeypatch):
    calls = []
    real = data.read_pair

    def counting(root, image_id):
        calls.append(image_id)
        return real(root, image_id)

    monkeypatch.setattr(data, "read_pair", counting)
    return calls


# ------------------------------------------------------------------------------------- full set


def test_full_set_pairs_labels_and_classes(full_data_root):
    ids = sorted(p.stem for p in (full_data_root / "base").glob("*.jpg"))
    assert len(ids) == 378
    assert data.read_label_names(full_data_root) == data.CLASS_NAMES
    assert data.N_CLASSES == len(data.CLASS_NAMES) == 12
    seen = np.zeros(data.N_CLASSES, dtype=bool)
    for image_id in ids:
        image, target = data.read_pair(full_data_root, image_id)
        assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3, image_id
        assert target.dtype == np.int64 and target.shape == image.shape[:2], image_id
        assert 0 <= target.min() and target.max() <= 11, image_id
        seen[np.unique(target)] = True
    assert seen.all(), "every one of the 12 classes occurs somewhere in the base set"


def test_palette_is_the_datasets_own(full_data_root):
    for png in sorted((full_data_root / "base").glob("*.png"))[::20]:
        pal = np.array(Image.open(png).getpalette()[3:39], dtype=np.uint8).reshape(12, 3)
        np.testing.assert_array_equal(pal, data.PALETTE, err_msg=str(png))
    assert data.PALETTE.shape == (12, 3) and data.PALETTE.dtype == np.uint8


def test_splits_of_the_full_set(full_data_root, repo_root):
    all_ids = {p.stem for p in (full_data_root / "base").glob("*.jpg")}
    got = {s: data.split_ids(s, full_data_root) for s in SIZES}
    for split, n in SIZES.items():
        assert len(got[split]) == n
        assert got[split] == sorted(repo_list(repo_root, split)), "full set uses the committed lists"
    assert not set(got["train"]) & set(got["val"])
    assert not set(got["train"]) & set(got["test"])
    assert not set(got["val"]) & set(got["test"])
    assert set().union(*got.values()) == all_ids


def test_committed_split_lists(repo_root):
    lists = {s: repo_list(repo_root, s) for s in SIZES}
    assert {s: len(v) for s, v in lists.items()} == SIZES
    union = set().union(*lists.values())
    assert union == {f"cmp_b{i:04d}" for i in range(1, 379)}


# --------------------------------------------------------------------------------------- sample


def test_sample_is_small_and_consistent(sample_root, repo_root):
    total = sum(p.stat().st_size for p in sample_root.rglob("*") if p.is_file())
    assert total < 3 * 1024 * 1024
    assert (sample_root / "LICENSE").is_file() and "Tylecek13" in (sample_root / "README.md").read_text()
    assert data.read_label_names(sample_root) == data.CLASS_NAMES
    counts = {"train": 16, "val": 4, "test": 4}
    all_ids = []
    for split, n in counts.items():
        ids = data.split_ids(split, sample_root)
        assert len(ids) == n
        assert set(ids) <= set(repo_list(repo_root, split)), f"sample {split} ids must be in the full {split} list"
        all_ids += ids
    assert sorted(all_ids) == sorted(p.stem for p in (sample_root / "base").glob("*.jpg"))
    for image_id in all_ids:
        image, target = data.read_pair(sample_root, image_id)
        assert max(image.shape[:2]) <= 256 and target.shape == image.shape[:2]
        pal = np.array(Image.open(sample_root / "base" / f"{image_id}.png").getpalette()[3:39]).reshape(12, 3)
        np.testing.assert_array_equal(pal, data.PALETTE)


def test_sample_labels_are_nearest_shrunk_originals(sample_root, full_data_root):
    for image_id in data.split_ids("val", sample_root):
        _, small = data.read_pair(sample_root, image_id)
        _, full = data.read_pair(full_data_root, image_id)
        h, w = small.shape
        expect = np.array(Image.fromarray(full.astype(np.uint8)).resize((w, h), Image.Resampling.NEAREST))
        np.testing.assert_array_equal(small, expect)


# ---------------------------------------------------------------------------------- data root


def test_find_data_root_order(tmp_path, monkeypatch, sample_root):
    a, b, c = (tmp_path / n for n in "abc")
    for folder in (a, b, c):
        (folder / "base").mkdir(parents=True)
    monkeypatch.setattr(data, "DEFAULT_FULL_ROOT", c)
    monkeypatch.setenv("CMP_FACADE_ROOT", str(b))
    assert data.find_data_root(a) == a
    assert data.find_data_root() == b
    monkeypatch.delenv("CMP_FACADE_ROOT")
    assert data.find_data_root() == c
    monkeypatch.setattr(data, "DEFAULT_FULL_ROOT", tmp_path / "absent")
    assert data.find_data_root() == sample_root


def test_find_data_root_rejects_folder_without_base(tmp_path, monkeypatch):
    with pytest.raises(DataError, match="no base/ folder") as err:
        data.find_data_root(tmp_path)
    assert str(tmp_path) in str(err.value) and "assignment_lib.download" in str(err.value)
    monkeypatch.setenv("CMP_FACADE_ROOT", str(tmp_path / "nowhere"))
    with pytest.raises(DataError, match="CMP_FACADE_ROOT"):
        data.find_data_root()


def test_split_id_missing_in_full_layout_is_an_error(tmp_path, sample_root):
    root = tmp_path / "partial"
    shutil.copytree(sample_root / "base", root / "base")  # no splits/: the repo's lists apply
    with pytest.raises(DataError, match=r"cmp_b\d{4}\.jpg is missing") as err:
        data.split_ids("val", root)
    assert "splits" in str(err.value)
    with pytest.raises(DataError, match="unknown split"):
        data.split_ids("training", sample_root)


# ------------------------------------------------------------------------------------ bad input


@pytest.fixture
def bad_root(tmp_path, sample_root):
    """A copy of one sample pair as cmp_b9999 that tests then break."""
    root = tmp_path / "bad"
    (root / "base").mkdir(parents=True)
    image_id = data.split_ids("val", sample_root)[0]
    for suffix in (".jpg", ".png"):
        shutil.copyfile(sample_root / "base" / f"{image_id}{suffix}", root / "base" / f"cmp_b9999{suffix}")
    return root


def _edit_label(png: Path, edit) -> None:
    img = Image.open(png)
    arr = edit(np.array(img))
    out = Image.fromarray(arr.astype(np.uint8), mode="P")
    out.putpalette(img.getpalette())
    out.save(png)


def test_good_copy_reads(bad_root):
    image, target = data.read_pair(bad_root, "cmp_b9999")
    assert image.shape[:2] == target.shape


def test_missing_base_folder(tmp_path):
    with pytest.raises(DataError, match="assignment_lib.download") as err:
        data.read_pair(tmp_path, "cmp_b0001")
    assert str(tmp_path / "base") in str(err.value)


def test_missing_photo(bad_root):
    with pytest.raises(DataError, match="cmp_b0001.jpg"):
        data.read_pair(bad_root, "cmp_b0001")


def test_missing_label(bad_root):
    (bad_root / "base" / "cmp_b9999.png").unlink()
    with pytest.raises(DataError, match=r"missing label file .*cmp_b9999\.png"):
        data.read_pair(bad_root, "cmp_b9999")


def test_label_size_differs(bad_root):
    _edit_label(bad_root / "base" / "cmp_b9999.png", lambda a: a[:-3, :])
    with pytest.raises(DataError, match=r"cmp_b9999\.png is .* but its photo"):
        data.read_pair(bad_root, "cmp_b9999")


@pytest.mark.parametrize("value", [0, 13])
def test_label_value_out_of_range(bad_root, value):
    def put(a):
        a[0, 0] = value
        return a

    _edit_label(bad_root / "base" / "cmp_b9999.png", put)
    with pytest.raises(DataError, match=rf"cmp_b9999\.png has values \[{value}\] outside 1\.\.12"):
        data.read_pair(bad_root, "cmp_b9999")


def test_rgb_label_rejected(bad_root):
    png = bad_root / "base" / "cmp_b9999.png"
    Image.open(png).convert("RGB").save(png)
    with pytest.raises(DataError, match=r"cmp_b9999\.png has PIL mode 'RGB'"):
        data.read_pair(bad_root, "cmp_b9999")


@pytest.mark.parametrize("suffix", [".jpg", ".png"])
def test_corrupt_file(bad_root, suffix):
    path = bad_root / "base" / f"cmp_b9999{suffix}"
    path.write_bytes(path.read_bytes()[:200])  # truncated
    with pytest.raises(DataError, match=rf"cannot decode .*cmp_b9999\{suffix}"):
        data.read_pair(bad_root, "cmp_b9999")


def test_not_an_image(bad_root):
    (bad_root / "base" / "cmp_b9999.jpg").write_text("hello")
    with pytest.raises(DataError, match=r"cmp_b9999\.jpg"):
        data.read_pair(bad_root, "cmp_b9999")


# ---------------------------------------------------------------------------------------- cache


def test_load_split_matches_read_pair(sample_root, cache_tmp):
    pairs = data.load_split("val", sample_root)
    ids = data.split_ids("val", sample_root)
    assert len(pairs) == len(ids)
    for (image, target), image_id in zip(pairs, ids):
        ref_image, ref_target = data.read_pair(sample_root, image_id)
        np.testing.assert_array_equal(image, ref_image)
        np.testing.assert_array_equal(target, ref_target)
        assert image.dtype == np.uint8 and target.dtype == np.int64


def test_cache_hit_does_not_decode_again(sample_root, cache_tmp, count_decodes):
    first = data.load_split("val", sample_root)
    assert len(count_decodes) == 4
    second = data.load_split("val", sample_root)  # memory hit
    assert len(count_decodes) == 4
    data.clear_memory_cache()
    third = data.load_split("val", sample_root)  # disk hit
    assert len(count_decodes) == 4
    for a, b, c in zip(first, second, third):
        for x, y, z in zip(a, b, c):
            np.testing.assert_array_equal(x, y)
            np.testing.assert_array_equal(x, z)
    files = list(cache_tmp.rglob("*"))
    assert len([f for f in files if f.suffix == ".npz"]) == 4
    assert not [f for f in files if f.name.startswith(".tmp-")], "temp files must be renamed away"


def test_cache_key_follows_file_bytes_and_max_side(tmp_path, sample_root, cache_tmp, count_decodes):
    root = tmp_path / "copy"
    shutil.copytree(sample_root, root)
    data.load_split("val", root)
    assert len(count_decodes) == 4
    small = data.load_split("val", root, max_side=100)
    assert len(count_decodes) == 8, "a different max_side is a different cache entry"
    for image, target in small:
        assert max(image.shape[:2]) <= 100 and image.shape[:2] == target.shape
        assert set(np.unique(target)) <= set(range(12))
    changed = data.split_ids("val", root)[1]
    _edit_label(root / "base" / f"{changed}.png", lambda a: np.where(a == 2, 3, a))
    data.clear_memory_cache()
    data.load_split("val", root)
    assert count_decodes[8:] == [changed], "only the changed pair is decoded again"


def test_damaged_cache_entry_is_rewritten(sample_root, cache_tmp, count_decodes):
    ref = data.load_split("test", sample_root)
    victim = min(cache_tmp.rglob("*.npz"))
    victim.write_bytes(b"garbage")
    data.clear_memory_cache()
    again = data.load_split("test", sample_root)
    assert len(count_decodes) == 5
    for (a, b), (c, d) in zip(ref, again):
        np.testing.assert_array_equal(a, c)
        np.testing.assert_array_equal(b, d)


# -------------------------------------------------------------------------------------- dataset


def test_cmpfacade_items(sample_root, cache_tmp):
    from assignment_lib.transforms import denormalize, train_transforms

    ds = dataset.CMPFacade("val", root=sample_root)
    pairs = data.load_split("val", sample_root)
    assert len(ds) == 4
    image, target = ds[2]
    assert type(image) is torch.Tensor and type(target) is torch.Tensor
    assert image.dtype == torch.float32 and image.shape[0] == 3 and target.dtype == torch.int64
    np.testing.assert_array_equal(target.numpy(), pairs[2][1])
    assert np.abs(denormalize(image).astype(int) - pairs[2][0]).max() <= 1
    assert abs(float(image.mean())) < 2.5, "the image must be normalised, not 0..255"

    ds = dataset.CMPFacade("train", root=sample_root, transform=train_transforms(96), max_side=128)
    image, target = ds[0]
    assert image.shape == (3, 96, 96) and target.shape == (96, 96) and target.dtype == torch.int64
    uncached = dataset.CMPFacade("val", root=sample_root, cache=False)
    torch.testing.assert_close(uncached[1][0], dataset.CMPFacade("val", root=sample_root)[1][0])

"""scripts/pack_gpu_bundle.py: the data and weights a GPU machine gets, small enough to carry."""

import importlib.util
import json

import torch

from assignment_lib import data as D
from assignment_lib.weights import load_vgg16_state_dict


def _pack():
    spec = importlib.util.spec_from_file_location("pack_gpu_bundle", D.REPO_ROOT / "scripts" / "pack_gpu_bundle.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bundle_is_readable_data_and_half_precision_weights(tmp_path, sample_root, vgg16_features_path):
    out = tmp_path / "bundle"
    assert _pack().main(["--no-wheels", "--data", str(sample_root), "--weights", str(vgg16_features_path),
                         "--out", str(out), "--max-side", "64"]) == 0
    root = out / "cmp_facade"
    for split in ("train", "val", "test"):
        assert D.split_ids(split, root) == D.split_ids(split, sample_root)
    image, target = D.read_pair(root, D.split_ids("test", root)[0])
    assert max(image.shape[:2]) == 64 and image.shape[:2] == target.shape
    assert not list((root / "base").glob("*.xml"))  # annotations are not needed for training
    # the part counts come from the full-resolution data, not from the shrunk copy
    from assignment_lib.facade_parts import load_parts

    counts = json.loads((out / "parts_counts.json").read_text())
    for split in ("train", "test"):
        labels = load_parts(split, sample_root, verbose=False).labels
        assert counts[split] == [int((labels == c).sum()) for c in range(10)]
    assert sum(counts["train"]) > len(load_parts("train", root, verbose=False).labels)  # what 64 px would give

    half = load_vgg16_state_dict(out / "vgg16_features_fp16.pth")
    full = torch.load(vgg16_features_path, map_location="cpu", weights_only=True)
    assert half.keys() == full.keys() and all(v.dtype == torch.float16 for v in half.values())
    assert torch.allclose(half["features.0.weight"].float(), full["features.0.weight"], atol=1e-3)

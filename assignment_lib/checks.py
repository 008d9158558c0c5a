"""Self-checks to run after each exercise of the assignment.

Each ``check_*`` function takes your class or function, tests it on small inputs (on the CPU, in a
few seconds), prints one ``✓ ...`` line per passed check and raises ``AssertionError`` with a
message that says what is wrong and what to look at on the first failed one. Passing these checks
does not guarantee full marks: more tests are run after you hand in.

Sources: Long, Shelhamer and Darrell, "Fully Convolutional Networks for Semantic Segmentation",
CVPR 2015 (FCN-32s, FCN-8s; layer names as in the authors' Caffe models and
wkentaro/pytorch-fcn); PyTorch ``nn.ConvTranspose2d`` documentation (output size formula);
Rahman and Wang, "Optimizing Intersection-Over-Union in Deep Neural Networks for Image
Segmentation", ISVC 2016 (soft IoU loss).
"""

from __future__ import annotations

import hashlib
import numbers
from collections.abc import Iterable, Mapping

import torch
from torch import nn

from .layers import bilinear_kernel

# The answers the notebook asks you to work out (crop offsets, the VGG-16 layer table, parameter
# counts) are stored only as salted SHA-256 digests (:func:`_digest`): the checks stay exact, and
# reading this file does not give the numbers. tests/test_checks.py derives every digest from the
# reference solution, so they cannot drift from it.
_SALT = "fcn-kit-checks-v1"

#: key -> digest of the expected value (see :func:`_digest`).
_EXPECTED = {
    "conv1_1.shape": "dfb4234688ac64c8d3df06e3",
    "conv1_1.padding": "ae6aabb07af67939749e6273",
    "conv1_2.shape": "187fbb01172ecabf67e7e78d",
    "conv1_2.padding": "4eeb896ee4355ba86603bd56",
    "conv2_1.shape": "e2a75587154f4fdf26d4c817",
    "conv2_1.padding": "eac6d9c502d7a3ebc009c1f8",
    "conv2_2.shape": "7e7ee3a49c0214dbe5dc184f",
    "conv2_2.padding": "c8eca1e82996ba6ebb6065b4",
    "conv3_1.shape": "6c10cc880c347feeaa97cd36",
    "conv3_1.padding": "3caf3c00395f594bb186d4fb",
    "conv3_2.shape": "1dc505020c2ad89420a660dd",
    "conv3_2.padding": "a5de0834d94abc471c03b7cf",
    "conv3_3.shape": "ecffbbeaeda53b50aafb8b24",
    "conv3_3.padding": "0e65c0edb7d87a1461ec1c5e",
    "conv4_1.shape": "7c3e5b7f556e63ec9794e6eb",
    "conv4_1.padding": "eb5b3d4d6318e712829de4e3",
    "conv4_2.shape": "66c1555ca746d10d5e004424",
    "conv4_2.padding": "8c67c1725b18c1622b00655f",
    "conv4_3.shape": "d7bc57bc4697fd85ee52dae2",
    "conv4_3.padding": "e2c71b02c877bc2354307128",
    "conv5_1.shape": "b8950fd4f13ca32375f725c8",
    "conv5_1.padding": "e99ffe02c49024bdce8b5822",
    "conv5_2.shape": "2755d8dd843911943da24ab3",
    "conv5_2.padding": "ab38f93ac667a2f6045397d5",
    "conv5_3.shape": "415d990da9e1f366d2bda69a",
    "conv5_3.padding": "e932e7610ebf4dbad2fb3650",
    "fc6.shape": "1bfea27f0fe148d1092f89dc",
    "fc6.padding": "c6a232e46a1c147e7328a0ae",
    "fc7.shape": "de4a3afeb68df5eb004d4a17",
    "fc7.padding": "85e0f8fce65dd0c4178e94ef",
    "fcn32s.params": "61a04e5733b2b6780280f468",
    "fcn8s.params": "14ad5c6d7a3e9bb868a39dff",
    "fcn32s.crop": "d43431a13ab8dd89bab58d75",
    "fcn8s.crop_pool4": "b8e26406dc01dba8a2f0ddb8",
    "fcn8s.crop_pool3": "8362b67094a5364ad8786901",
    "fcn8s.crop": "598f5dd5832156f2d61d8faa",
}

# (N, H, W) of the test inputs: odd sizes catch crops taken from the wrong end; few and small to
# stay fast on a laptop CPU (conv1_1's padding makes even a 1x1 input 201x201).
_SIZES = ((1, 61, 83), (2, 11, 14))

_CONV_FORMULA = "H_out = (H_in - 1)*stride - 2*padding + kernel_size + output_padding"

#: The VGG-16 convolutions of FCN, in order (their shapes are checked against :data:`_EXPECTED`).
_VGG_CONVS = ("conv1_1", "conv1_2", "conv2_1", "conv2_2", "conv3_1", "conv3_2", "conv3_3",
              "conv4_1", "conv4_2", "conv4_3", "conv5_1", "conv5_2", "conv5_3", "fc6", "fc7")

#: Layers with parameters of each model (the names the notebook gives).
_FCN32S_LAYERS = (*_VGG_CONVS, "score_fr", "upscore")
_FCN8S_LAYERS = (*_VGG_CONVS, "score_fr", "score_pool3", "score_pool4", "upscore2",
                 "upscore_pool4", "upscore8")

#: transposed_conv_padding cases, the same ones the grader tries after hand-in:
#: (kernel_size, stride) at stride 2; at other strides, kernels smaller than the stride included;
#: and inputs that must raise ValueError. Every input size in PADDING_SIZES must map to stride * H.
PADDING_STRIDE2 = tuple((k, 2) for k in range(1, 8))
PADDING_OTHER_STRIDES = tuple((k, s) for s in (3, 4) for k in range(1, 8)) + ((16, 8),)
PADDING_INVALID = ((0, 2), (3, 0), (-1, 2))
PADDING_SIZES = (1, 2, 5, 8, 13)


def _digest(key: str, value) -> str:
    """Salted SHA-256 (hex, 24 digits) of ``key=value``; ``value`` is an int or a tuple of ints."""
    if isinstance(value, (tuple, list)):
        value = ",".join(str(int(v)) for v in value)
    return hashlib.sha256(f"{_SALT}:{key}={value}".encode()).hexdigest()[:24]


def _matches(key: str, value) -> bool:
    """True when ``value`` is the expected value for ``key``."""
    return _EXPECTED[key] == _digest(key, value)


def _ok(message: str) -> None:
    print(f"\u2713 {message}")


def _pair(v) -> tuple:
    return tuple(v) if isinstance(v, (tuple, list)) else (v, v)


def _layer(model: nn.Module, cls_name: str, name: str, kind: type) -> nn.Module:
    layer = getattr(model, name, None)
    assert layer is not None, (
        f"{cls_name} has no attribute '{name}'. Create every layer in __init__ as self.{name} "
        f"(the layer names of Long et al.'s Caffe model: conv1_1 ... conv5_3, pool1 ... pool5, "
        f"fc6, fc7, score_fr, ...)."
    )
    assert isinstance(layer, kind), (
        f"{cls_name}.{name} is a {type(layer).__name__}, expected nn.{kind.__name__}."
    )
    return layer


def _check_conv(model, cls_name, name, cin, cout, k, pad, kind=nn.Conv2d):
    conv = _layer(model, cls_name, name, kind)
    got = (conv.in_channels, conv.out_channels, _pair(conv.kernel_size))
    want = (cin, cout, (k, k))
    assert got == want, (
        f"{cls_name}.{name} maps {got[0]} -> {got[1]} channels with a {got[2][0]}x{got[2][1]} "
        f"kernel; expected {cin} -> {cout} with {k}x{k}."
    )
    if pad is not None:
        assert _pair(conv.padding) == (pad, pad), (
            f"{cls_name}.{name} has padding {conv.padding}, expected {pad}.")
    return conv


def _check_vgg_conv(model, cls_name, name, previous):
    """Check one VGG-16 convolution against the hashed layer table; ``previous`` is the layer
    before it (or None), whose output channels must be this layer's input channels."""
    conv = _layer(model, cls_name, name, nn.Conv2d)
    kernel = _pair(conv.kernel_size)
    shape = (conv.in_channels, conv.out_channels, kernel[0], kernel[1])
    if not _matches(f"{name}.shape", shape):
        chain = ""
        if previous is not None and previous.out_channels != conv.in_channels:
            chain = (f" Its input channels ({conv.in_channels}) differ from the previous layer's "
                     f"output channels ({previous.out_channels}).")
        raise AssertionError(
            f"{cls_name}.{name} maps {conv.in_channels} -> {conv.out_channels} channels with a "
            f"{kernel[0]}x{kernel[1]} kernel, which is not VGG-16's {name}.{chain} Compare it with "
            f"VGG-16 (Simonyan and Zisserman, ICLR 2015, Table 1, configuration D: 3x3 "
            f"convolutions, channels doubled after each of the first pooling layers) and, for fc6 "
            f"and fc7, with the notebook's description.")
    padding = _pair(conv.padding)
    if padding[0] != padding[1] or not _matches(f"{name}.padding", padding[0]):
        if name == "conv1_1":
            raise AssertionError(
                f"{cls_name}.conv1_1 has padding {conv.padding}, expected 100: conv1_1 pads by 100 "
                f"so that small inputs survive the five poolings and fc6's 7x7 kernel (Long et "
                f"al., Sec. 4.1; the crop at the end undoes the shift).")
        raise AssertionError(
            f"{cls_name}.{name} has padding {conv.padding}, which is not VGG-16's: its 3x3 "
            f"convolutions keep the size of the map, and fc6/fc7 do not pad.")
    return conv


def _check_vgg(model: nn.Module, cls_name: str, n_classes: int) -> None:
    previous = None
    for name in _VGG_CONVS:
        previous = _check_vgg_conv(model, cls_name, name, previous)
    for i in range(1, 6):
        pool = _layer(model, cls_name, f"pool{i}", nn.MaxPool2d)
        assert _pair(pool.kernel_size) == (2, 2) and _pair(pool.stride) == (2, 2), (
            f"{cls_name}.pool{i} must be a 2x2 max pooling with stride 2, got kernel "
            f"{pool.kernel_size} stride {pool.stride}."
        )
        assert pool.ceil_mode, (
            f"{cls_name}.pool{i} needs ceil_mode=True (as Caffe rounds up), otherwise odd sizes "
            f"lose a row/column and the crop offsets no longer line up."
        )
    _check_conv(model, cls_name, "score_fr", 4096, n_classes, 1, 0)
    _ok(f"{cls_name}: VGG-16 layers conv1_1 ... fc7 and score_fr have the right shapes "
        f"(conv1_1 padding 100, pools with ceil_mode)")


def _check_upsampler(model, cls_name, name, n_classes, k, s):
    up = _check_conv(model, cls_name, name, n_classes, n_classes, k, None, nn.ConvTranspose2d)
    assert _pair(up.stride) == (s, s), f"{cls_name}.{name} needs stride {s}, got {up.stride}."
    assert _pair(up.padding) == (0, 0), (
        f"{cls_name}.{name} must not pad (padding=0); the crop in forward() aligns the output."
    )
    assert up.bias is None, (
        f"{cls_name}.{name} must be created with bias=False: in FCN the upsampling layer is "
        f"(initially) pure bilinear interpolation of the class scores, with no offset."
    )
    expected = bilinear_kernel(n_classes, n_classes, k)
    assert up.weight.shape == expected.shape and torch.allclose(up.weight.detach().cpu(), expected), (
        f"{cls_name}.{name}.weight is not the bilinear kernel: initialise it in __init__ with "
        f"assignment_lib.layers.bilinear_kernel({n_classes}, {n_classes}, {k}) (copy it into the "
        f"weight under torch.no_grad())."
    )


def _extra_layers(model, known: Iterable[str]) -> dict[str, int]:
    """{top-level attribute: parameter count} of parameters that belong to none of ``known``."""
    known_ids = {id(p) for name in known if isinstance(getattr(model, name, None), nn.Module)
                 for p in getattr(model, name).parameters()}
    extra: dict[str, int] = {}
    for full_name, p in model.named_parameters():
        if id(p) not in known_ids:
            top = full_name.split(".", 1)[0]
            extra[top] = extra.get(top, 0) + p.numel()
    return extra


def _param_count(model, cls_name, key, known):
    n = sum(p.numel() for p in model.parameters())
    extra = _extra_layers(model, known)
    if "upscore" in extra and "upscore" not in known:
        raise AssertionError(
            f"{cls_name} has a layer 'upscore' with {extra['upscore']:,} parameters: FCN-32s's "
            f"64x64 stride-32 upsampling, which FCN-8s does not use (it upsamples with upscore2, "
            f"upscore_pool4 and upscore8). If {cls_name} subclasses FCN32s it inherits upscore "
            f"(and the unused layer still counts and is saved): write {cls_name} as its own "
            f"nn.Module, or delete it after super().__init__() with `del self.upscore`; if you "
            f"copied FCN-32s's __init__, remove the upscore line.")
    if extra:
        listed = ", ".join(f"{name} ({count:,} parameters)" for name, count in sorted(extra.items()))
        raise AssertionError(
            f"{cls_name} has parameters outside the layers the notebook names: {listed}. Remove "
            f"them (an unused layer still counts), or give the layer its name from the notebook.")
    assert _matches(key, n), (
        f"{cls_name}(n_classes=12) has {n:,} parameters, not the reference model's count, although "
        f"every named layer has the right shape: check which layers have a bias (each Conv2d has "
        f"one, the upsampling layers none) and compare fc6 (512 -> 4096, 7x7) and fc7 "
        f"(4096 -> 4096, 1x1) with VGG-16.")
    _ok(f"{cls_name}: {n:,} parameters")


def _build(cls, n_classes: int) -> nn.Module:
    model = cls(n_classes=n_classes)
    assert isinstance(model, nn.Module), f"{cls.__name__}(...) must be an nn.Module."
    return model.eval()


def _check_shapes(model, cls_name, n_classes, sizes, hook_names):
    """Run the model on random inputs of each (N, H, W) in ``sizes`` and check the output shape.

    Returns the output, the hooked layers' outputs and inputs of the first run.
    """
    first = None
    for i, (n, h, w) in enumerate(sizes):
        x = torch.randn(n, 3, h, w)
        out, outs, ins = _run_with_hooks(model, hook_names if i == 0 else [], x)
        assert isinstance(out, torch.Tensor), f"{cls_name}.forward must return a tensor."
        want = (n, n_classes, h, w)
        assert tuple(out.shape) == want, (
            f"{cls_name} output is {'x'.join(map(str, out.shape))} for a {h}x{w} input "
            f"(batch {n}), expected {'x'.join(map(str, want))}: check the crop offset and that you "
            f"crop with the input's own height and width (x.size(2), x.size(3))."
        )
        if first is None:
            first = (out, outs, ins)
    _ok(f"{cls_name}: output shape (N, n_classes, H, W) for inputs "
        + ", ".join(f"{h}x{w}" for _, h, w in sizes))
    return first


def _find_crops(big: torch.Tensor, small: torch.Tensor) -> list[tuple[int, int]]:
    """Offsets (dy, dx) at which ``small`` equals a crop of ``big`` (both (N, C, h, w))."""
    h, w = small.shape[-2:]
    H, W = big.shape[-2:]
    tol = 1e-4 * (1 + small.abs().max().item())
    found = []
    probe = small[..., : min(h, 3), : min(w, 3)]
    for dy in range(H - h + 1):
        for dx in range(W - w + 1):
            cand = big[..., dy: dy + probe.shape[-2], dx: dx + probe.shape[-1]]
            if torch.allclose(cand, probe, atol=tol, rtol=0) and torch.allclose(
                    big[..., dy: dy + h, dx: dx + w], small, atol=tol, rtol=0):
                found.append((dy, dx))
    return found


def _check_crop(cls_name, what, big, small, key, hint):
    if big is None or small is None:
        raise AssertionError(
            f"{cls_name}.forward did not call {what}; use the layers you created in __init__ "
            f"(self.layer(h)), not functional equivalents, so that they can be checked.")
    if tuple(big.shape[:2]) != tuple(small.shape[:2]) or big.shape[2] < small.shape[2] or \
            big.shape[3] < small.shape[3]:
        raise AssertionError(f"{cls_name}: {hint} has shape {tuple(small.shape)}, which cannot "
                             f"be a crop of {what}'s output {tuple(big.shape)}.")
    offsets = _find_crops(big, small)
    if any(dy == dx and _matches(key, dy) for dy, dx in offsets):
        return
    if offsets:
        dy, dx = offsets[0]
        raise AssertionError(
            f"{cls_name}: {hint} is {what}'s output cropped at offset ({dy}, {dx}), which does "
            f"not line the result up with the input. Work out the offset from the geometry: "
            f"conv1_1's padding of 100 shifts everything, each pooling halves coordinates and "
            f"each kernel moves the centre (Long et al., Sec. 4.1; Caffe's Crop layer).")
    raise AssertionError(
        f"{cls_name}: {hint} is not a crop of {what}'s output: take a "
        f"[:, :, off:off + height, off:off + width] slice of it, without further processing.")


def _run_with_hooks(model, names, x):
    outs, ins = {}, {}
    handles = []
    for name in names:
        layer = getattr(model, name)
        handles.append(layer.register_forward_hook(
            lambda m, i, o, name=name: outs.__setitem__(name, o.detach())))
        handles.append(layer.register_forward_pre_hook(
            lambda m, i, name=name: ins.__setitem__(name, i[0].detach())))
    try:
        with torch.no_grad():
            out = model(x)
    finally:
        for h in handles:
            h.remove()
    return out, outs, ins


def check_fcn32s(cls) -> None:
    """Check an FCN-32s class: layers, parameter count, bilinear upsampling, output shapes, crop.

    Args:
        cls: the class; ``cls(n_classes=12)`` must build the model, whose ``forward`` maps
            float32 (N, 3, H, W) to logits (N, n_classes, H, W).

    Raises:
        AssertionError: on the first failed check, with what to fix.
    """
    name = getattr(cls, "__name__", "FCN32s")
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = _build(cls, 12)
        _check_vgg(model, name, 12)
        _check_upsampler(model, name, "upscore", 12, 64, 32)
        _ok(f"{name}: upscore is a 64x64 stride-32 transposed convolution without bias, "
            f"initialised to bilinear interpolation")
        _param_count(model, name, "fcn32s.params", _FCN32S_LAYERS)
        out, outs, _ = _check_shapes(model, name, 12, _SIZES, ["upscore"])
        _check_crop(name, "upscore", outs.get("upscore"), out, "fcn32s.crop", "the output")
        _ok(f"{name}: the output is the crop of upscore's output that lines up with the input")


def check_fcn8s(cls) -> None:
    """Check an FCN-8s class: layers, skips, parameter count, bilinear upsampling, shapes, crops.

    Args:
        cls: the class; ``cls(n_classes=12)`` must build the model, whose ``forward`` maps
            float32 (N, 3, H, W) to logits (N, n_classes, H, W).

    Raises:
        AssertionError: on the first failed check, with what to fix.
    """
    name = getattr(cls, "__name__", "FCN8s")
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = _build(cls, 12)
        _check_vgg(model, name, 12)
        # the skips score pool3's and pool4's outputs: as many channels as conv3_3's and conv4_3's
        _check_conv(model, name, "score_pool3", model.conv3_3.out_channels, 12, 1, 0)
        _check_conv(model, name, "score_pool4", model.conv4_3.out_channels, 12, 1, 0)
        _ok(f"{name}: score_pool3 and score_pool4 are 1x1 convolutions to the class scores")
        for up, k, s in (("upscore2", 4, 2), ("upscore_pool4", 4, 2), ("upscore8", 16, 8)):
            _check_upsampler(model, name, up, 12, k, s)
        _ok(f"{name}: upscore2, upscore_pool4 (4x4, stride 2) and upscore8 (16x16, stride 8) are "
            f"bias-free transposed convolutions initialised to bilinear interpolation")
        _param_count(model, name, "fcn8s.params", _FCN8S_LAYERS)
        names = ["score_pool4", "upscore2", "upscore_pool4", "score_pool3", "upscore8"]
        out, outs, ins = _check_shapes(model, name, 12, _SIZES, names)
        for layer in names:
            if layer not in outs:
                raise AssertionError(f"{name}.forward did not call self.{layer}.")
        _check_crop(name, "score_pool4", outs["score_pool4"], ins["upscore_pool4"] - outs["upscore2"],
                    "fcn8s.crop_pool4", "the pool4 skip added to upscore2's output")
        _ok(f"{name}: the pool4 skip is cropped to line up with upscore2's output and added")
        _check_crop(name, "score_pool3", outs["score_pool3"], ins["upscore8"] - outs["upscore_pool4"],
                    "fcn8s.crop_pool3", "the pool3 skip added to upscore_pool4's output")
        _ok(f"{name}: the pool3 skip is cropped to line up with upscore_pool4's output and added")
        _check_crop(name, "upscore8", outs["upscore8"], out, "fcn8s.crop", "the output")
        _ok(f"{name}: the output is the crop of upscore8's output that lines up with the input")


def check_transposed_conv_padding(fn) -> None:
    """Check ``fn(kernel_size, stride=2) -> (padding, output_padding)``.

    The same cases as the grader tries after hand-in: kernel sizes 1..7 at stride 2 (:data:`PADDING_STRIDE2`);
    kernel sizes 1..7 at strides 3 and 4, so also kernels smaller than the stride, and 16 at
    stride 8 (:data:`PADDING_OTHER_STRIDES`): ``nn.ConvTranspose2d(kernel_size, stride, padding,
    output_padding)`` built from ``fn``'s answer must map every size H in :data:`PADDING_SIZES` to
    ``stride * H``. A kernel size or stride below 1 must raise ``ValueError``
    (:data:`PADDING_INVALID`).

    Raises:
        AssertionError: on the first failed check, with what to fix.
    """
    for group in (PADDING_STRIDE2, PADDING_OTHER_STRIDES):
        for k, stride in group:
            result = fn(k) if stride == 2 else fn(k, stride=stride)
            assert isinstance(result, tuple) and len(result) == 2, (
                f"transposed_conv_padding({k}, stride={stride}) returned {result!r}; return a "
                f"tuple (padding, output_padding).")
            if stride == 2:
                again = fn(k, stride=2)
                assert again == result, (
                    f"transposed_conv_padding({k}) and transposed_conv_padding({k}, stride=2) "
                    f"differ ({result} vs {again}): stride must default to 2.")
            p, op = result
            assert all(isinstance(v, numbers.Integral) and not isinstance(v, bool)
                       for v in (p, op)), (
                f"transposed_conv_padding({k}, stride={stride}) returned {result!r}; padding and "
                f"output_padding must be ints (use // or int(), not /).")
            p, op = int(p), int(op)
            small = (" Here the kernel is smaller than the stride (k - s < 0): padding cannot be "
                     "negative, so what does output_padding have to make up?" if k < stride else "")
            assert p >= 0 and 0 <= op < stride, (
                f"transposed_conv_padding({k}, stride={stride}) returned padding={p}, "
                f"output_padding={op}; PyTorch needs padding >= 0 and 0 <= output_padding < "
                f"stride.{small}")
            layer = nn.ConvTranspose2d(1, 1, k, stride=stride, padding=p, output_padding=op)
            for h in PADDING_SIZES:
                with torch.no_grad():
                    got = layer(torch.zeros(1, 1, h, h)).shape[-1]
                assert got == stride * h, (
                    f"kernel_size={k}, stride={stride}: padding={p}, output_padding={op} maps "
                    f"{h} to {got}, not {stride * h}. Use {_CONV_FORMULA} and solve "
                    f"H_out = stride * H_in for every H_in.{small}")
        strides = sorted({s for _, s in group})
        _ok(f"transposed_conv_padding: kernels {min(k for k, _ in group)}..{max(k for k, _ in group)} "
            f"at stride {', '.join(map(str, strides))} map H to stride*H")
    for k, stride in PADDING_INVALID:
        try:
            result = fn(k, stride=stride)
        except ValueError:
            continue
        except Exception as err:  # noqa: BLE001 - the student's function may raise anything
            raise AssertionError(
                f"transposed_conv_padding({k}, stride={stride}) raised {type(err).__name__}; "
                f"raise ValueError for a kernel_size or stride below 1.") from None
        raise AssertionError(
            f"transposed_conv_padding({k}, stride={stride}) returned {result!r}; a kernel_size or "
            f"stride below 1 has no transposed convolution: raise ValueError with a message.")
    _ok("transposed_conv_padding: a kernel_size or stride below 1 raises ValueError")


def _loss_value(fn, logits, target, **kw) -> torch.Tensor:
    loss = fn(logits, target, **kw)
    assert isinstance(loss, torch.Tensor), (
        f"soft_iou_loss must return a torch.Tensor, got {type(loss).__name__}.")
    assert loss.dim() == 0, (
        f"soft_iou_loss must return a scalar (0-dim tensor), got shape {tuple(loss.shape)}: "
        f"sum intersection and union over the batch and all pixels, then average over classes.")
    return loss


def check_soft_iou_loss(fn) -> None:
    """Check ``fn(logits, target, smooth=1e-6, ignore_index=None)``, the soft IoU loss.

    Checks: scalar output in [0, 1]; about 0 for a perfect confident prediction; two small
    cases worked out by hand (uniform softmax); the gradient reaches the logits; pixels whose
    target is ``ignore_index`` do not matter; with two classes the loss is 1 - IoU of class 1.

    Raises:
        AssertionError: on the first failed check, with what to fix.
    """
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 4, 5, 6, generator=g)
    target = torch.randint(0, 4, (2, 5, 6), generator=g)
    loss = _loss_value(fn, logits, target)
    assert 0.0 <= loss.item() <= 1.0, (
        f"soft_iou_loss gave {loss.item():.4f}, outside [0, 1]: compute the soft IoU from "
        f"probabilities, i.e. softmax of the logits over the class dimension (dim=1).")
    _ok("soft_iou_loss returns a scalar in [0, 1]")

    # Hand-computed: 3 classes, 4 pixels with targets [0, 0, 1, 2], all logits 0, so every
    # softmax probability is 1/3. Class 0: I = 2/3, U = 4/3 + 2 - 2/3 = 8/3, IoU = 1/4.
    # Classes 1 and 2: I = 1/3, U = 4/3 + 1 - 1/3 = 2, IoU = 1/6. Loss = 1 - (1/4 + 1/3) / 3.
    zeros = torch.zeros(1, 3, 2, 2)
    hand_target = torch.tensor([[[0, 0], [1, 2]]])
    expected = 1 - (1 / 4 + 1 / 3) / 3
    loss = _loss_value(fn, zeros, hand_target).item()
    hint = ""
    if abs(loss - 1.0) < 1e-3:
        hint = " A loss of 1 here suggests the logits were used without softmax."
    elif abs(loss - 2 / 3) < 1e-3:
        hint = " This is what softmax over the wrong dimension gives: use dim=1 (classes)."
    assert abs(loss - expected) < 1e-4, (
        f"all-zero logits over 3 classes (softmax 1/3 everywhere) with targets [[0, 0], [1, 2]] "
        f"give {loss:.5f}, expected 1 - (1/4 + 1/6 + 1/6)/3 = {expected:.5f}. Per class: "
        f"intersection = sum(p*y), union = sum(p + y - p*y) over batch and pixels; the loss is "
        f"1 - the mean of the per-class IoUs.{hint}")
    _ok(f"hand-computed 3-class case: {expected:.5f}")

    # The same case with smooth=1 (the grader tries other smooth values too): class 0:
    # (2/3 + 1) / (8/3 + 1) = 5/11; classes 1 and 2: (1/3 + 1) / (2 + 1) = (4/3) / 3.
    expected = 1 - (5 / 11 + 2 * (4 / 3) / 3) / 3
    loss = _loss_value(fn, zeros, hand_target, smooth=1.0).item()
    assert abs(loss - expected) < 1e-4, (
        f"with smooth=1.0 the same case gives {loss:.5f}, expected 1 - (5/11 + 2 * (4/3)/3)/3 = "
        f"{expected:.5f}: use the smooth argument (do not hard-code it) and add it to both the "
        f"intersection and the union of each class.")
    _ok("the smooth argument is added to intersection and union")

    perfect = 50.0 * torch.nn.functional.one_hot(target, 4).permute(0, 3, 1, 2).float()
    loss = _loss_value(fn, perfect, target).item()
    assert loss < 1e-3, (
        f"a perfect, confident prediction (logit 50 on the true class) gives loss {loss:.4f}, "
        f"expected about 0: the loss is 1 - mean soft IoU, and IoU is 1 when probabilities match "
        f"the one-hot target.")
    _ok("a perfect prediction gives a loss of about 0")

    logits = torch.randn(2, 4, 5, 6, generator=g, requires_grad=True)
    loss = _loss_value(fn, logits, target)
    assert loss.requires_grad, (
        "the loss is not connected to the logits (requires_grad is False): do not use argmax, "
        ".detach(), .item() or numpy inside the loss.")
    loss.backward()
    grad = logits.grad
    assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0, (
        "the gradient of the loss with respect to the logits is missing, zero or not finite: the "
        "soft IoU must be a differentiable function of the softmax probabilities.")
    _ok("the gradient flows back to the logits")

    ignored = target.clone()
    ignored[:, :2, :] = 255
    base = _loss_value(fn, logits.detach(), ignored, ignore_index=255).item()
    scrambled = logits.detach().clone()
    scrambled[:, :, :2, :] = 10 * torch.randn(2, 4, 2, 6, generator=g)
    other = _loss_value(fn, scrambled, ignored, ignore_index=255).item()
    assert abs(base - other) < 1e-5, (
        f"changing the logits only at pixels whose target is ignore_index changed the loss from "
        f"{base:.5f} to {other:.5f}: those pixels must count in neither the intersection nor the "
        f"union (mask both the probabilities and the one-hot target).")
    perfect_valid = 50.0 * torch.nn.functional.one_hot(torch.where(ignored == 255, 0, ignored), 4)
    perfect_valid = perfect_valid.permute(0, 3, 1, 2).float()
    perfect_valid[:, :, :2, :] = scrambled[:, :, :2, :]
    loss = _loss_value(fn, perfect_valid, ignored, ignore_index=255).item()
    assert loss < 1e-3, (
        f"a perfect prediction on every pixel that is not ignore_index gives {loss:.4f}, expected "
        f"about 0: ignored pixels must not add to the union either.")
    negative = ignored.masked_fill(ignored == 255, -1)  # any value can be the ignore index
    hint = ("compare the target with the ignore_index argument, not with 255, and replace ignored "
            "targets by a valid class before one_hot.")
    try:
        other = _loss_value(fn, logits.detach(), negative, ignore_index=-1).item()
    except AssertionError:
        raise
    except Exception as err:  # noqa: BLE001 - the student's function may raise anything
        raise AssertionError(f"with ignore_index=-1 (the same pixels ignored) soft_iou_loss raised "
                             f"{type(err).__name__}: {err}. {hint[0].upper()}{hint[1:]}") from None
    assert abs(other - base) < 1e-5, (
        f"with ignore_index=-1 (the same pixels ignored) the loss is {other:.5f}, with 255 it is "
        f"{base:.5f}: {hint}")
    _ok("pixels labelled ignore_index do not change the loss")

    # Hand-computed binary case: 4 pixels with targets [1, 0, 0, 0], logits 0 (p = 1/2).
    # Foreground (class 1): I = 1/2, U = 2 + 1 - 1/2 = 5/2, IoU = 1/5, loss = 4/5.
    # (Averaging both classes would give 1 - (1/5 + 3/7)/2 = 0.686.)
    loss = _loss_value(fn, torch.zeros(1, 2, 2, 2), torch.tensor([[[1, 0], [0, 0]]])).item()
    assert abs(loss - 0.8) < 1e-4, (
        f"binary case (2 classes, targets [[1, 0], [0, 0]], all logits 0) gives {loss:.5f}, "
        f"expected 0.8 = 1 - IoU of the foreground channel (class 1) only; with two classes do not "
        f"average in the background."
        + (" You averaged both classes." if abs(loss - (1 - (1 / 5 + 3 / 7) / 2)) < 1e-3 else ""))
    _ok("binary case: 1 - soft IoU of the foreground channel")


class UnfinishedExercise(RuntimeError):
    """A notebook cell needs the result of an exercise or training cell that has not run yet."""


def require(done: Mapping, needed: Iterable[str], made_by: Mapping[str, str]) -> None:
    """Stop a notebook cell early, with a message that says which part to finish first, when a
    result it needs is missing (instead of a ``KeyError`` or ``NameError`` further down).

    Args:
        done: what has been computed so far (e.g. the notebook's ``results`` dict).
        needed: the keys this cell uses.
        made_by: key -> where it is made, e.g. ``"section 3 (train FCN-32s; needs FCN32s)"``.

    Raises:
        UnfinishedExercise: a key of ``needed`` is not in ``done``; names every missing key and
            where each is made.
    """
    missing = [key for key in needed if key not in done]
    if missing:
        where = "; ".join(f"{key!r}: finish {made_by.get(key, 'the cell that makes it')} first"
                          for key in missing)
        raise UnfinishedExercise(
            f"this cell needs results that have not been computed yet. {where}. Then run the "
            f"cells from there down to this one again (Run > Run Selected Cell and All Below).")

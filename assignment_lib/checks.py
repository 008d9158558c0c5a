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

import numbers

import torch
from torch import nn

from .layers import bilinear_kernel

#: Parameter counts of the reference models for 12 classes (VGG-16 encoder, fc6/fc7 as convs).
FCN32S_PARAMS = 134_899_532
FCN8S_PARAMS = 134_360_420

# (N, H, W) of the test inputs: odd sizes catch crops taken from the wrong end; few and small to
# stay fast on a laptop CPU (conv1_1's padding makes even a 1x1 input 201x201).
_SIZES = ((1, 61, 83), (2, 9, 14))

_CONV_FORMULA = "H_out = (H_in - 1)*stride - 2*padding + kernel_size + output_padding"

# (name, in_channels, out_channels, kernel_size, padding) of the VGG-16 convolutions in FCN.
_VGG_CONVS = (
    ("conv1_1", 3, 64, 3, 100), ("conv1_2", 64, 64, 3, 1),
    ("conv2_1", 64, 128, 3, 1), ("conv2_2", 128, 128, 3, 1),
    ("conv3_1", 128, 256, 3, 1), ("conv3_2", 256, 256, 3, 1), ("conv3_3", 256, 256, 3, 1),
    ("conv4_1", 256, 512, 3, 1), ("conv4_2", 512, 512, 3, 1), ("conv4_3", 512, 512, 3, 1),
    ("conv5_1", 512, 512, 3, 1), ("conv5_2", 512, 512, 3, 1), ("conv5_3", 512, 512, 3, 1),
    ("fc6", 512, 4096, 7, 0), ("fc7", 4096, 4096, 1, 0),
)


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
            f"{cls_name}.{name} has padding {conv.padding}, expected {pad}."
            + (" conv1_1 pads by 100 so that small inputs survive the five poolings and fc6's "
               "7x7 kernel (Long et al., Sec. 4.1; the crop at the end undoes the shift)."
               if name == "conv1_1" else "")
        )
    return conv


def _check_vgg(model: nn.Module, cls_name: str, n_classes: int) -> None:
    for name, cin, cout, k, pad in _VGG_CONVS:
        _check_conv(model, cls_name, name, cin, cout, k, pad)
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


def _param_count(model, cls_name, expected):
    n = sum(p.numel() for p in model.parameters())
    assert n == expected, (
        f"{cls_name}(n_classes=12) has {n:,} parameters, expected {expected:,}. Compare each "
        f"layer's channels and kernel size with VGG-16 (fc6 is 512 -> 4096 with a 7x7 kernel, "
        f"fc7 4096 -> 4096 1x1) and check which layers have a bias."
    )
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


def _check_crop(cls_name, what, big, small, expected_offset, hint):
    if big is None or small is None:
        raise AssertionError(
            f"{cls_name}.forward did not call {what}; use the layers you created in __init__ "
            f"(self.layer(h)), not functional equivalents, so that they can be checked.")
    if tuple(big.shape[:2]) != tuple(small.shape[:2]) or big.shape[2] < small.shape[2] or \
            big.shape[3] < small.shape[3]:
        raise AssertionError(f"{cls_name}: {hint} has shape {tuple(small.shape)}, which cannot "
                             f"be a crop of {what}'s output {tuple(big.shape)}.")
    offsets = _find_crops(big, small)
    e = expected_offset
    if (e, e) in offsets:
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
        _param_count(model, name, FCN32S_PARAMS)
        out, outs, _ = _check_shapes(model, name, 12, _SIZES, ["upscore"])
        _check_crop(name, "upscore", outs.get("upscore"), out, 19, "the output")
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
        _check_conv(model, name, "score_pool3", 256, 12, 1, 0)
        _check_conv(model, name, "score_pool4", 512, 12, 1, 0)
        _ok(f"{name}: score_pool3 and score_pool4 are 1x1 convolutions to the class scores")
        for up, k, s in (("upscore2", 4, 2), ("upscore_pool4", 4, 2), ("upscore8", 16, 8)):
            _check_upsampler(model, name, up, 12, k, s)
        _ok(f"{name}: upscore2, upscore_pool4 (4x4, stride 2) and upscore8 (16x16, stride 8) are "
            f"bias-free transposed convolutions initialised to bilinear interpolation")
        _param_count(model, name, FCN8S_PARAMS)
        names = ["score_pool4", "upscore2", "upscore_pool4", "score_pool3", "upscore8"]
        out, outs, ins = _check_shapes(model, name, 12, _SIZES, names)
        for layer in names:
            if layer not in outs:
                raise AssertionError(f"{name}.forward did not call self.{layer}.")
        _check_crop(name, "score_pool4", outs["score_pool4"], ins["upscore_pool4"] - outs["upscore2"],
                    5, "the pool4 skip added to upscore2's output")
        _ok(f"{name}: the pool4 skip is cropped to line up with upscore2's output and added")
        _check_crop(name, "score_pool3", outs["score_pool3"], ins["upscore8"] - outs["upscore_pool4"],
                    9, "the pool3 skip added to upscore_pool4's output")
        _ok(f"{name}: the pool3 skip is cropped to line up with upscore_pool4's output and added")
        _check_crop(name, "upscore8", outs["upscore8"], out, 31, "the output")
        _ok(f"{name}: the output is the crop of upscore8's output that lines up with the input")


def check_transposed_conv_padding(fn) -> None:
    """Check ``fn(kernel_size, stride=2) -> (padding, output_padding)``.

    For kernel sizes 2..7 and strides 2, 3 and 4, ``nn.ConvTranspose2d(kernel_size, stride,
    padding, output_padding)`` built from ``fn``'s answer must map every tested size H to
    ``stride * H``.

    Raises:
        AssertionError: on the first failed check, with what to fix.
    """
    sizes = (1, 2, 5, 8, 13)
    for stride in (2, 3, 4):
        for k in range(2, 8):
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
            assert p >= 0 and 0 <= op < stride, (
                f"transposed_conv_padding({k}, stride={stride}) returned padding={p}, "
                f"output_padding={op}; PyTorch needs padding >= 0 and 0 <= output_padding < "
                f"stride.")
            layer = nn.ConvTranspose2d(1, 1, k, stride=stride, padding=p, output_padding=op)
            for h in sizes:
                with torch.no_grad():
                    got = layer(torch.zeros(1, 1, h, h)).shape[-1]
                assert got == stride * h, (
                    f"kernel_size={k}, stride={stride}: padding={p}, output_padding={op} maps "
                    f"{h} to {got}, not {stride * h}. Use {_CONV_FORMULA} and solve "
                    f"H_out = stride * H_in for every H_in.")
        _ok(f"transposed_conv_padding: kernels 2..7 at stride {stride} map H to {stride}*H")


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

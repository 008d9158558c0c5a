"""Self-checks of the notebook ``byol_and_aspp.ipynb`` (ASPP, ``byol_loss``, ``ema_update``).

Each ``check_*`` function takes your class or function, tests it on small CPU inputs in a few
seconds, prints one ``✓ ...`` line per passed check and raises ``AssertionError`` with what is
wrong and what to look at on the first failed one. Passing them does not guarantee full marks:
more tests run after you hand in.

Sources: Chen, Papandreou, Schroff and Adam, "Rethinking Atrous Convolution for Semantic Image
Segmentation" (DeepLabv3), 2017, Sec. 3.3, and torchvision's
``torchvision.models.segmentation.deeplabv3.ASPP``; Grill et al., "Bootstrap Your Own Latent",
NeurIPS 2020, Eq. 2 and Sec. 3.1 (loss, target update).
"""

from __future__ import annotations

import math

import torch
from torch import nn


def _ok(message: str) -> None:
    print(f"\u2713 {message}")


def _call(what: str, hint: str, fn, *args, **kwargs):
    """``fn(*args, **kwargs)``; an exception becomes an AssertionError that says what was called."""
    try:
        return fn(*args, **kwargs)
    except AssertionError:
        raise
    except Exception as err:  # noqa: BLE001 - the student's code may raise anything
        raise AssertionError(f"{what} raised {type(err).__name__}: {err}. {hint}") from None


# ------------------------------------------------------------------------------------------ ASPP

#: (N, C, H, W) inputs of the ASPP checks: odd sizes, a 1x1 map, a non-square one.
ASPP_INPUTS = ((2, 8, 9, 13), (1, 8, 1, 1), (1, 8, 20, 7))


def torchvision_aspp(in_channels: int, out_channels: int, rates=(6, 12, 18)) -> nn.Module:
    """torchvision's DeepLabv3 ASPP with the same arguments (the structure to match)."""
    from torchvision.models.segmentation.deeplabv3 import ASPP as TorchvisionASPP

    return TorchvisionASPP(in_channels, list(rates), out_channels)


def randomize(model: nn.Module, seed: int = 0) -> list[tuple[str, torch.Tensor]]:
    """Random values for every tensor of ``model.state_dict()`` (running variances positive,
    ``num_batches_tracked`` kept): ``[(name, tensor)]`` in state-dict order."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for name, t in model.state_dict().items():
        if not t.is_floating_point():
            out.append((name, t.clone()))
        elif name.endswith("running_var"):
            out.append((name, torch.rand(t.shape, generator=g) + 0.5))
        elif t.ndim > 1:
            out.append((name, torch.randn(t.shape, generator=g) * math.sqrt(2.0 / t[0].numel())))
        else:
            out.append((name, torch.randn(t.shape, generator=g) * 0.1))
    return out


def load_in_order(model: nn.Module, tensors: list[tuple[str, torch.Tensor]], cls_name: str) -> str:
    """Load ``tensors`` into ``model`` by name if the names match, else by order and shape.

    Returns ``"name"`` or ``"order"``. Raises AssertionError that lists the first mismatch."""
    sd = model.state_dict()
    if [n for n, _ in tensors] == list(sd) and all(sd[n].shape == t.shape for n, t in tensors):
        model.load_state_dict(dict(tensors))
        return "name"
    own = list(sd.items())
    for i, ((name, mine), (ref_name, ref)) in enumerate(zip(own, tensors)):
        assert mine.shape == ref.shape, (
            f"{cls_name}'s tensor #{i} '{name}' has shape {tuple(mine.shape)} where torchvision's "
            f"ASPP has '{ref_name}' {tuple(ref.shape)}: build the branches in torchvision's order "
            "(1x1, then one 3x3 atrous branch per rate, then the pooling branch; each conv without "
            "bias, then BatchNorm2d and ReLU), then the projection (1x1 conv without bias, "
            "BatchNorm2d, ReLU, Dropout(0.5)).")
    assert len(own) == len(tensors), (
        f"{cls_name} has {len(own)} state tensors, torchvision's ASPP {len(tensors)}: "
        "a branch or a BatchNorm is missing or extra.")
    model.load_state_dict({n: t for (n, _), (_, t) in zip(own, tensors)})
    return "order"


def check_aspp(cls) -> None:
    """Check ``cls(in_channels, out_channels, rates=(6, 12, 18))``, the DeepLabv3 ASPP module.

    Checks: output shapes (N, out_channels, H, W) at odd sizes and 1x1; the parameter count of
    torchvision's ASPP; the atrous convolutions keep the size (padding = dilation = rate);
    the output equals torchvision's ASPP (eval mode) once its weights are loaded by order and
    shape; the image-pooling branch makes the output depend on the whole image.

    Raises:
        AssertionError: on the first failed check, with what to fix.
    """
    torch.manual_seed(0)
    model = _call("ASPP(8, 4)", "Build every layer in __init__.", cls, 8, 4)
    assert isinstance(model, nn.Module), f"ASPP(8, 4) returned a {type(model).__name__}, not an nn.Module"
    model.eval()
    with torch.no_grad():
        for shape in ASPP_INPUTS:
            y = _call(f"ASPP(8, 4) on an input of shape {shape}",
                      "Every 3x3 atrous branch needs padding = dilation = rate so that it keeps H "
                      "and W (also at 1x1), and the pooled branch must be upsampled back to H x W "
                      "before concatenating along dim=1.", model, torch.randn(*shape))
            want = (shape[0], 4, shape[2], shape[3])
            assert isinstance(y, torch.Tensor) and tuple(y.shape) == want, (
                f"ASPP(8, 4) on an input of shape {shape} returned "
                f"{tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__}, expected "
                f"{want}: every 3x3 atrous branch needs padding = dilation = rate to keep H and W, "
                "and the pooled branch must be upsampled back to H x W before concatenating.")
    _ok("output shape (N, out_channels, H, W) at odd sizes and at 1x1")

    ref = torchvision_aspp(8, 4)
    mine_n = sum(p.numel() for p in model.parameters())
    ref_n = sum(p.numel() for p in ref.parameters())
    assert mine_n == ref_n, (
        f"ASPP(8, 4) has {mine_n} parameters, expected {ref_n}: 5 branches (1x1, three 3x3 "
        "atrous, image pooling + 1x1), each conv without bias followed by BatchNorm2d; then a 1x1 "
        "projection from 5 * out_channels to out_channels without bias, and BatchNorm2d.")
    two = _call("ASPP(8, 4, rates=(2, 3))", "Build one atrous branch per rate.", cls, 8, 4, rates=(2, 3))
    two_n = sum(p.numel() for p in two.parameters())
    ref_two = sum(p.numel() for p in torchvision_aspp(8, 4, (2, 3)).parameters())
    assert two_n == ref_two, (
        f"ASPP(8, 4, rates=(2, 3)) has {two_n} parameters, expected {ref_two}: build one atrous "
        "branch per entry of rates (do not hard-code three), and size the projection for "
        "(len(rates) + 2) * out_channels input channels.")
    _ok(f"parameter count ({ref_n} for ASPP(8, 4); one branch per rate)")

    ref_tensors = randomize(ref, seed=1)
    ref.load_state_dict(dict(ref_tensors))
    ref.eval()
    matched = load_in_order(model, ref_tensors, "ASPP")
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for shape in ASPP_INPUTS:
            x = torch.randn(*shape, generator=g)
            want, got = ref(x), model(x)
            err = (want - got).abs().max().item()
            assert err < 1e-4, (
                f"with torchvision's weights loaded (by {matched}), in eval mode, ASPP's output on "
                f"an input of shape {shape} differs from torchvision's by up to {err:.3g}: check "
                "dilation = padding = rate in each branch, that the pooled branch is "
                "AdaptiveAvgPool2d(1) -> 1x1 conv -> BatchNorm2d -> ReLU, then upsampled "
                "(bilinear, align_corners=False) to H x W, the concatenation order (1x1, rates in "
                "order, pooling) along dim=1, and the projection.")
    _ok(f"same output as torchvision's ASPP under the same weights (matched by {matched})")

    # Only the pooling branch sees beyond rate 18: a change far away must move the centre.
    with torch.no_grad():
        x = torch.randn(1, 8, 41, 41, generator=g)
        x2 = x.clone()
        x2[..., :2, :2] += 5.0
        moved = (model(x)[..., 20, 20] - model(x2)[..., 20, 20]).abs().max().item()
    assert moved > 0, (
        "the output at the centre of a 41x41 map does not change when a far corner changes: the "
        "image-pooling branch (global average over H and W) is missing or not concatenated.")
    _ok("the image-pooling branch gives every position the global context")


# ----------------------------------------------------------------------------------------- BYOL

def _loss(fn, p, z) -> torch.Tensor:
    out = fn(p, z)
    assert isinstance(out, torch.Tensor), f"byol_loss must return a torch.Tensor, got {type(out).__name__}"
    assert out.dim() == 0, (
        f"byol_loss must return a scalar (0-dim tensor), got shape {tuple(out.shape)}: average the "
        "per-sample losses over the batch with .mean().")
    return out


def check_byol_loss(fn) -> None:
    """Check ``fn(p, z)``: the mean over the batch of 2 - 2 cos(p_i, z_i), with z detached.

    Checks: scalar; hand-computed cases (orthogonal, opposite, parallel vectors, 45 degrees);
    invariance to the vectors' lengths; the mean (not the sum) over the batch; no gradient
    reaches z; the gradient with respect to p is orthogonal to p (as for any function of the
    cosine alone).

    Raises:
        AssertionError: on the first failed check, with what to fix.
    """
    p = torch.tensor([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0], [1.0, 1.0]])
    z = torch.tensor([[0.0, 1.0], [-1.0, 0.0], [1.0, 0.0], [1.0, 0.0]])
    cases = [("orthogonal", 2.0), ("opposite", 4.0), ("parallel", 0.0), ("45 degrees", 2 - math.sqrt(2))]
    for i, (what, want) in enumerate(cases):
        got = _loss(fn, p[i:i + 1], z[i:i + 1]).item()
        assert abs(got - want) < 1e-5, (
            f"{what} vectors p = {p[i].tolist()}, z = {z[i].tolist()} give {got:.5f}, expected "
            f"2 - 2 cos = {want:.5f}: normalise p and z to unit length (F.normalize(..., dim=1)) "
            "before the dot product, or use the cosine similarity along dim=1.")
    _ok("hand-computed cases: orthogonal 2, opposite 4, parallel 0, 45 degrees 2 - sqrt(2)")

    scaled = _loss(fn, 3.0 * p, 0.5 * z).item()
    base = _loss(fn, p, z).item()
    assert abs(scaled - base) < 1e-5, (
        f"scaling p by 3 and z by 0.5 changed the loss from {base:.5f} to {scaled:.5f}: the loss "
        "depends only on the angle between p and z; normalise both.")
    want = sum(w for _, w in cases) / len(cases)
    assert abs(base - want) < 1e-5, (
        f"the batch of all four cases gives {base:.5f}, expected their mean {want:.5f}"
        + (": you summed over the batch; take the mean." if abs(base - 4 * want) < 1e-4 else
           ": normalise each row (dim=1), not the whole batch, and average over the batch."))
    _ok("invariant to the vectors' lengths; the mean over the batch")

    g = torch.Generator().manual_seed(0)
    pp = torch.randn(5, 7, generator=g, requires_grad=True)
    zz = torch.randn(5, 7, generator=g, requires_grad=True)
    loss = _loss(fn, pp, zz)
    assert loss.requires_grad, "the loss is not connected to p: do not .detach() p or use .item()."
    loss.backward()
    assert zz.grad is None or zz.grad.abs().max().item() == 0, (
        "a gradient reached z: the target's projection must be treated as a constant; use "
        "z.detach() inside byol_loss (the target network is trained only by the EMA).")
    assert pp.grad is not None and pp.grad.abs().sum() > 0, "no gradient reached p."
    radial = (pp.grad * pp.detach()).sum(dim=1).abs().max().item()
    assert radial < 1e-5, (
        f"the gradient with respect to p has a component along p ({radial:.3g}): the loss must "
        "depend on p only through its direction (normalise p).")
    _ok("no gradient reaches z; the gradient of p is orthogonal to p")


def check_ema_update(fn) -> None:
    """Check ``fn(target, online, tau)``: xi <- tau * xi + (1 - tau) * theta for every parameter,
    in place, without gradients.

    Checks: the exact update for tau = 0.9 and 0.5; tau = 1 leaves the target as it is and tau = 0
    copies the online network; the online network is unchanged; the update is in place (same
    tensors) and records no autograd history.

    Raises:
        AssertionError: on the first failed check, with what to fix.
    """
    def pair(seed):
        torch.manual_seed(seed)
        target = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
        torch.manual_seed(seed + 100)
        online = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
        return target, online

    for tau in (0.9, 0.5, 1.0, 0.0):
        target, online = pair(0)
        xi = [p.detach().clone() for p in target.parameters()]
        theta = [p.detach().clone() for p in online.parameters()]
        ids = [id(p) for p in target.parameters()]
        try:
            fn(target, online, tau)
        except RuntimeError as err:
            raise AssertionError(
                f"ema_update raised RuntimeError: {err}. Update the parameters in place (the tensor "
                "methods ending in _, such as mul_, add_, copy_) inside `with torch.no_grad():`.") from None
        after = list(target.parameters())
        assert [id(p) for p in after] == ids, (
            "the target's parameters were replaced by new tensors: update them in place "
            "(p.mul_(...).add_(...) or p.copy_(...)), do not reassign or return a new model.")
        for (name, p), x0, t0 in zip(target.named_parameters(), xi, theta):
            want = tau * x0 + (1 - tau) * t0
            err = (p.detach() - want).abs().max().item()
            hint = ""
            if (p.detach() - ((1 - tau) * x0 + tau * t0)).abs().max().item() < 1e-6 and tau != 0.5:
                hint = " You swapped tau and 1 - tau: tau weighs the TARGET's old value."
            elif (p.detach() - x0).abs().max().item() == 0 and tau != 1.0:
                hint = " The target did not change: update it in place."
            assert err < 1e-6, (
                f"tau = {tau}: target parameter '{name}' is off by up to {err:.3g} from "
                f"tau * xi + (1 - tau) * theta.{hint}")
        for p, t0 in zip(online.parameters(), theta):
            assert torch.equal(p.detach(), t0), "ema_update changed the ONLINE network: only the target moves."
    _ok("exact update at tau = 0.9 and 0.5; tau = 1 keeps the target, tau = 0 copies the online network")
    _ok("in place and without gradients; the online network is not changed")

"""Hidden tests of ``byol_loss`` (cell ``byol_loss``) and ``ema_update`` (cell ``ema_update``).

``byol_loss`` is called in the sandbox on tensors sent with ``requires_grad``; its value and the
gradient that reaches ``p`` are compared with the trusted reference's, and no gradient may reach
``z``. ``ema_update`` is called on two modules stored in the sandbox; their states before and after
are compared with tau * xi + (1 - tau) * theta computed here.
"""

from __future__ import annotations

import pytest
import torch

from autograder.hidden_plugin import CallRaised

SEED = 20200613


def _loss_cases():
    """(p, z) pairs: random batches of several sizes, lengths far from 1, a batch of one."""
    g = torch.Generator().manual_seed(SEED)
    cases = [(torch.randn(8, 16, generator=g), torch.randn(8, 16, generator=g)),
             (5 * torch.randn(3, 4, generator=g), 0.1 * torch.randn(3, 4, generator=g)),
             (torch.randn(1, 7, generator=g), torch.randn(1, 7, generator=g)),
             (torch.randn(32, 128, generator=g), torch.randn(32, 128, generator=g))]
    p = torch.randn(6, 5, generator=g)
    cases.append((p, -2 * p + 0.01 * torch.randn(6, 5, generator=g)))  # nearly opposite
    return cases


def _call_loss(submission, p, z):
    submission.require("byol_loss")
    try:
        return submission.invoke("byol_loss", p, z, grad=[0, 1])
    except CallRaised as err:
        pytest.fail(f"byol_loss(p, z) with p, z of shape {list(p.shape)} raised {err.raised}: "
                    f"{err.message}")


def _reference_loss(reference, p, z):
    p = p.clone().requires_grad_(True)
    value = reference.byol_loss(p, z)
    (grad,) = torch.autograd.grad(value.sum(), [p])
    return value.detach(), grad


def test_byol_loss_values(submission, reference, partial):
    cases = _loss_cases()
    problems = []
    for p, z in cases:
        r = _call_loss(submission, p, z)
        want, _ = _reference_loss(reference, p, z)
        got = r["value"]
        if not isinstance(got, torch.Tensor) or got.dim() != 0:
            shape = list(got.shape) if isinstance(got, torch.Tensor) else r["type"]
            problems.append(f"p, z of shape {list(p.shape)}: returned {shape}, expected a scalar tensor "
                            "(the mean over the batch)")
        elif not torch.isclose(got.float(), want, atol=1e-5, rtol=1e-4):
            problems.append(f"p, z of shape {list(p.shape)}: loss {got.item():.5f}, expected "
                            f"{want.item():.5f}")
    partial(1 - len(problems) / len(cases))
    assert not problems, "\n".join(problems) + (
        "\nThe loss is 2 - 2 cos(p_i, z_i) = ||p_i/||p_i|| - z_i/||z_i||||^2 for each row i, averaged "
        "over the batch: normalise each row (dim=1), not the whole batch, and take the mean.")


def test_byol_loss_gradient_wrt_p(submission, reference, partial):
    cases = _loss_cases()
    problems = []
    for p, z in cases:
        r = _call_loss(submission, p, z)
        _, want = _reference_loss(reference, p, z)
        got = r.get("grads", {}).get(0)
        if got is None:
            problems.append(f"p of shape {list(p.shape)}: no gradient reached p")
        elif got.shape != want.shape or not torch.allclose(got, want, atol=1e-5, rtol=1e-3):
            problems.append(f"p of shape {list(p.shape)}: the gradient with respect to p differs from "
                            "the reference's")
    partial(1 - len(problems) / len(cases))
    assert not problems, "\n".join(problems) + (
        "\nThe loss must be a differentiable function of p's direction (normalise p; no .detach(), "
        ".item() or numpy on p), averaged (not summed) over the batch.")


def test_byol_loss_stop_gradient(submission):
    p, z = _loss_cases()[0]
    r = _call_loss(submission, p, z)
    gp = r.get("grads", {}).get(0)
    # a loss that ignores its inputs (a constant) stops every gradient: nothing to credit
    assert gp is not None and gp.abs().max().item() > 0, (
        "no gradient reached p: the loss must depend on the online prediction p (only z, the "
        "target's projection, is detached)")
    g = r.get("grads", {}).get(1)
    assert g is None or g.abs().max().item() == 0, (
        "a gradient reached z: the target network's projection is a constant for the loss "
        "(stop-gradient); use z.detach() inside byol_loss, the target is trained only by the EMA.")


def _ema_pair(submission, name, factory, *args):
    submission.require("ema_update")
    submission.new(f"{name}_target", factory, *args, seed=SEED)
    submission.new(f"{name}_online", factory, *args, seed=SEED + 1)
    before_t = submission.state(f"{name}_target")
    before_o = submission.state(f"{name}_online")
    return before_t, before_o


def _ema(submission, name, tau):
    try:
        submission.invoke("ema_update", submission.ref(f"{name}_target"), submission.ref(f"{name}_online"),
                          tau)
    except CallRaised as err:
        hint = (" Updating a parameter that requires grad in place needs `with torch.no_grad():`."
                if "leaf" in err.message or "in-place" in err.message else "")
        pytest.fail(f"ema_update(target, online, tau={tau}) raised {err.raised}: {err.message}.{hint}")


#: (factory, args) of the module pairs: several parameter tensors of different shapes.
EMA_MODULES = (("torch.nn.Bilinear", 3, 4, 5), ("torch.nn.Conv2d", 3, 4, 3))
EMA_TAUS = (0.9, 0.5, 0.0, 0.996)


def test_ema_update_exact(submission, partial):
    problems, total = [], 0
    for m, (factory, *args) in enumerate(EMA_MODULES):
        for k, tau in enumerate(EMA_TAUS):
            total += 1
            name = f"ema{m}_{k}"
            before_t, before_o = _ema_pair(submission, name, factory, *args)
            _ema(submission, name, tau)
            after = submission.state(f"{name}_target")
            for (pname, xi, _), (_, theta, _), (_, got, _) in zip(before_t, before_o, after):
                want = tau * xi + (1 - tau) * theta
                if not torch.allclose(got, want, atol=1e-6, rtol=1e-5):
                    swapped = torch.allclose(got, (1 - tau) * xi + tau * theta, atol=1e-6)
                    unchanged = torch.equal(got, xi)
                    why = (" (tau and 1 - tau swapped: tau weighs the target's old value)" if swapped
                           else " (the target did not change: update it in place)" if unchanged else "")
                    problems.append(f"{factory}, tau={tau}: target '{pname}' is not "
                                    f"tau * xi + (1 - tau) * theta{why}")
                    break
    partial(1 - len(problems) / total)
    assert not problems, "\n".join(problems)


def _require_a_moving_target(submission, name, before_t, tau):
    """Fail unless the call just made moved the target: an ema_update that changes nothing keeps
    the target for tau = 1 and leaves the online network alone trivially, which earns nothing."""
    after = submission.state(f"{name}_target")
    if all(torch.equal(a, b) for (_, a, _), (_, b, _) in zip(before_t, after)):
        pytest.fail(f"ema_update(target, online, tau={tau}) left the target unchanged: move it in place, "
                    "xi <- tau * xi + (1 - tau) * theta (this test only counts once it does)")


def test_ema_update_tau_one_keeps_the_target(submission):
    moving, _ = _ema_pair(submission, "ema_half", "torch.nn.Bilinear", 3, 4, 5)
    _ema(submission, "ema_half", 0.5)
    _require_a_moving_target(submission, "ema_half", moving, 0.5)
    before_t, _ = _ema_pair(submission, "ema_one", "torch.nn.Bilinear", 3, 4, 5)
    _ema(submission, "ema_one", 1.0)
    after = submission.state("ema_one_target")
    changed = [n for (n, a, _), (_, b, _) in zip(before_t, after) if not torch.equal(a, b)]
    assert not changed, (f"with tau = 1 the target must not change, but {changed} did: "
                         "xi <- tau * xi + (1 - tau) * theta")


def test_ema_update_leaves_the_online_network(submission):
    before_t, before_o = _ema_pair(submission, "ema_on", "torch.nn.Conv2d", 3, 4, 3)
    _ema(submission, "ema_on", 0.7)
    _require_a_moving_target(submission, "ema_on", before_t, 0.7)
    after = submission.state("ema_on_online")
    changed = [n for (n, a, _), (_, b, _) in zip(before_o, after) if not torch.equal(a, b)]
    assert not changed, (f"ema_update changed the ONLINE network ({changed}): only the target moves; "
                         "the online network is trained by the optimiser.")

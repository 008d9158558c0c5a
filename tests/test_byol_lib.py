"""assignment_lib.byol: settings, images, the BYOL pre-training loop (with the reference loss and
EMA of the notebook), the tau schedule, the downstream classifier's frozen backbone."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from assignment_lib import byol


def small_encoder():
    return nn.Sequential(nn.Conv2d(3, 8, 3, stride=2), nn.BatchNorm2d(8), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten())


def ref_loss(p, z):
    p, z = nn.functional.normalize(p, dim=1), nn.functional.normalize(z.detach(), dim=1)
    return (2 - 2 * (p * z).sum(1)).mean()


def ref_ema(target, online, tau):
    with torch.no_grad():
        for xi, theta in zip(target.parameters(), online.parameters()):
            xi.mul_(tau).add_(theta, alpha=1 - tau)


def test_config_round_trip_and_errors():
    c = byol.BYOLConfig(steps=3, tau=0.9)
    assert byol.BYOLConfig.from_dict(c.to_dict()) == c
    with pytest.raises(ValueError, match="tau must be in"):
        byol.BYOLConfig(tau=1.5)
    with pytest.raises(ValueError, match="steps must be a positive int"):
        byol.BYOLConfig(steps=0)
    with pytest.raises(ValueError, match="unknown BYOLConfig fields"):
        byol.BYOLConfig.from_dict({"stepz": 1})


def test_images_in_both_layouts_and_clear_errors():
    hwc = np.random.default_rng(0).integers(0, 256, (4, 10, 12, 3), dtype=np.uint8)
    chw = byol.as_uint8_batch(hwc)
    assert chw.shape == (4, 3, 10, 12) and torch.equal(chw[1, 2], torch.from_numpy(hwc[1, :, :, 2]))
    assert byol.as_uint8_batch(chw) is not None and byol.as_uint8_batch(list(hwc)).shape == chw.shape
    with pytest.raises(ValueError, match="uint8"):
        byol.as_uint8_batch(chw.float())
    with pytest.raises(ValueError, match=r"\(N, H, W, 3\)"):
        byol.as_uint8_batch(hwc[..., :2])
    x = byol.to_inputs(hwc, 8)
    assert x.shape == (4, 3, 8, 8) and x.dtype == torch.float32


def test_tau_schedule_goes_from_base_to_one():
    assert byol.tau_schedule(0.99, 0, 100) == pytest.approx(0.99)
    assert byol.tau_schedule(0.99, 100, 100) == pytest.approx(1.0)
    assert byol.tau_schedule(0.99, 50, 100) == pytest.approx(0.995)


def test_pretrain_trains_online_and_moves_target_by_ema():
    pool = np.random.default_rng(1).integers(0, 256, (6, 20, 20, 3), dtype=np.uint8)
    seen = []

    def spy_loss(p, z):
        seen.append((tuple(p.shape), p.requires_grad, z.requires_grad))
        return ref_loss(p, z)

    taus = []

    def spy_ema(target, online, tau):
        taus.append(tau)
        ref_ema(target, online, tau)

    encoder = small_encoder()
    start = [p.detach().clone() for p in encoder.parameters()]
    config = byol.BYOLConfig(steps=3, batch_size=4, image_size=16, hidden_dim=16, projection_dim=8,
                             tau=0.5)
    hist = byol.pretrain(encoder, pool, config, loss_fn=spy_loss, ema_fn=spy_ema, device="cpu",
                         progress=False)
    assert hist["step"] == [1, 2, 3] and len(hist["loss"]) == 3
    assert all(0 <= v <= 8 for v in hist["loss"])
    assert seen == [((4, 8), True, False)] * 6  # symmetrised: two calls per step; z without grad
    assert taus == [pytest.approx(byol.tau_schedule(0.5, k, 3)) for k in range(3)]
    model = hist["model"]
    assert model.online["encoder"] is encoder
    assert any(not torch.equal(a, b.detach()) for a, b in zip(start, encoder.parameters()))
    assert all(not p.requires_grad for p in model.target.parameters())
    # the target moved towards the online network but is not equal to it (tau < 1 at the steps)
    tgt = list(model.target["encoder"].parameters())
    assert any(not torch.equal(a, b.detach()) for a, b in zip(start, tgt))
    assert any(not torch.equal(a.detach(), b.detach()) for a, b in zip(tgt, encoder.parameters()))


def test_pretrain_rejects_a_bad_loss():
    pool = np.zeros((4, 16, 16, 3), np.uint8)
    config = byol.BYOLConfig(steps=1, batch_size=4, image_size=16, hidden_dim=8, projection_dim=4)
    with pytest.raises(ValueError, match="finite scalar"):
        byol.pretrain(small_encoder(), pool, config, loss_fn=lambda p, z: (p - z).pow(2).sum(1),
                      ema_fn=ref_ema, device="cpu", progress=False)


def test_few_per_class():
    labels = np.array([0, 0, 0, 1, 1, 2])
    idx = byol.few_per_class(labels, 2, seed=0)
    assert np.bincount(labels[idx]).tolist() == [2, 2, 1] and list(idx) == sorted(idx)
    assert list(byol.few_per_class(labels, None)) == list(range(6))


def test_linear_classifier_frozen_backbone_stays_in_eval_mode():
    model = byol.LinearClassifier(small_encoder(), 5, freeze_backbone=True, image_size=16)
    model.train()
    assert model.training and model.head.training and not model.encoder.training
    assert all(not p.requires_grad for p in model.encoder.parameters())
    assert model(torch.zeros(2, 3, 16, 16)).shape == (2, 5)
    free = byol.LinearClassifier(small_encoder(), 5, image_size=16).train()
    assert free.encoder.training and all(p.requires_grad for p in free.encoder.parameters())


def test_augment_is_batched_per_image_and_seeded():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(16, 3, 24, 30, generator=g)
    torch.manual_seed(1)
    a = byol.augment(x, 12)
    assert a.shape == (16, 3, 12, 12) and a.min() >= 0 and a.max() <= 1
    torch.manual_seed(1)
    assert torch.equal(byol.augment(x, 12), a)
    same = torch.stack([x[0]] * 16)
    views = byol.augment(same, 12)  # one image, 16 views: each its own crop and colours
    assert len({v.sum().item() for v in views}) > 12
    v1, v2 = byol.two_views((x * 255).to(torch.uint8), 12)
    assert v1.shape == v2.shape == (16, 3, 12, 12) and not torch.equal(v1, v2)

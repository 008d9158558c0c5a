"""Tests of assignment_lib.train on tiny models (never the 135 M-parameter FCN: too slow for CI)."""

from __future__ import annotations

import math
from dataclasses import asdict

import numpy as np
import pytest
import torch
from torch import nn

from assignment_lib import train as T
from assignment_lib.data import IGNORE_INDEX, load_split


class TinyNet(nn.Module):
    """Two 3x3 convolutions: enough to learn colour -> class on a few facades."""

    def __init__(self, n_classes=12):
        super().__init__()
        self.conv1_1 = nn.Conv2d(3, 16, 3, padding=1)
        self.relu1_1 = nn.ReLU()
        self.score_fr = nn.Conv2d(16, n_classes, 3, padding=1)

    def forward(self, x):
        return self.score_fr(self.relu1_1(self.conv1_1(x)))


@pytest.fixture(scope="module")
def few_images(data_root):
    return load_split("train", root=data_root, max_side=64)[:6]


def _cfg(**kw):
    base = {"steps": 6, "batch_size": 3, "crop_size": 48, "max_side": 64, "lr": 1e-2, "optimizer": "adam",
                "weight_decay": 0.0, "amp": False, "channels_last": False, "eval_every": 3, "seed": 0}
    return T.TrainConfig(**{**base, **kw})


def _params(model):
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def test_seed_everything_makes_training_bitwise_identical(few_images):
    runs = []
    for _ in range(2):
        T.seed_everything(3)
        model = TinyNet()
        T.fit(model, few_images, _cfg(seed=3), progress=False)
        runs.append(_params(model))
    for n in runs[0]:
        assert torch.equal(runs[0][n], runs[1][n]), f"{n} differs between two seeded runs"
    # and a different seed really gives a different run (the test above could not fail otherwise)
    T.seed_everything(4)
    model = TinyNet()
    T.fit(model, few_images, _cfg(seed=4), progress=False)
    assert not torch.equal(_params(model)["conv1_1.weight"], runs[0]["conv1_1.weight"])


def test_seed_everything_rejects_bad_seed():
    with pytest.raises(ValueError, match="seed"):
        T.seed_everything(-1)


def test_fit_lowers_the_loss_on_real_images(few_images):
    T.seed_everything(0)
    model = TinyNet()
    cfg = _cfg(steps=20, eval_every=10, scale=(1.0, 1.0), hflip=False, crop_size=64)
    hist = T.fit(model, few_images, cfg, val_data=few_images[:2], progress=False)
    assert hist["train_loss"][-1] < 0.9 * hist["train_loss"][0], hist["train_loss"]
    assert all(0 <= v <= 1 for v in hist["val_mean_iou"])


def test_history_has_documented_keys_and_rows(few_images):
    T.seed_everything(0)
    hist = T.fit(TinyNet(), few_images, _cfg(steps=7, eval_every=3), progress=False)
    assert tuple(hist.keys()) == T.HISTORY_KEYS
    assert hist["step"] == [3, 6, 7]  # every eval_every steps, and the last step
    assert len({len(v) for v in hist.values()}) == 1
    assert all(math.isnan(v) for v in hist["val_mean_iou"])  # no val_data given
    assert hist["epoch"][-1] == pytest.approx(7 * 3 / len(few_images))
    assert hist["seconds"] == sorted(hist["seconds"])


def test_frozen_layers_do_not_change_and_are_not_optimised(few_images, monkeypatch):
    seen = {}
    real = T._make_optimizer

    def spy(params, config):
        seen["params"] = list(params)
        return real(seen["params"], config)

    monkeypatch.setattr(T, "_make_optimizer", spy)
    T.seed_everything(0)
    model = TinyNet()
    before = _params(model)
    T.fit(model, few_images, _cfg(freeze=["conv1_1"]), progress=False)
    after = _params(model)
    assert torch.equal(before["conv1_1.weight"], after["conv1_1.weight"])
    assert torch.equal(before["conv1_1.bias"], after["conv1_1.bias"])
    assert not torch.equal(before["score_fr.weight"], after["score_fr.weight"])
    ids = {id(p) for p in seen["params"]}
    assert id(model.conv1_1.weight) not in ids and id(model.score_fr.weight) in ids
    # the freeze list is the whole truth: a second fit with freeze=[] trains conv1_1 again
    T.fit(model, few_images, _cfg(steps=2), progress=False)
    assert not torch.equal(after["conv1_1.weight"], model.conv1_1.weight.detach())


def test_freeze_prefix_that_matches_nothing_is_an_error(few_images):
    with pytest.raises(ValueError, match="conv9_9"):
        T.fit(TinyNet(), few_images, _cfg(freeze=["conv9_9"]), progress=False)


def test_encoder_policy_names_the_vgg_layers():
    assert T.TrainConfig(freeze="encoder").frozen_prefixes() == T.ENCODER_LAYERS
    assert T.ENCODER_LAYERS[0] == "conv1_1" and T.ENCODER_LAYERS[-1] == "conv5_3"
    assert len(T.ENCODER_LAYERS) == 13


def test_checkpoint_round_trips(few_images, tmp_path):
    path = tmp_path / "ckpt.pt"
    T.seed_everything(0)
    model = TinyNet()
    cfg = _cfg(checkpoint=str(path))
    hist = T.fit(model, few_images, cfg, progress=False)
    fresh = TinyNet()
    cfg2, hist2, _ = T.load_checkpoint(path, fresh)
    assert cfg2 == cfg
    np.testing.assert_equal(dict(hist2), dict(hist))  # NaN == NaN here
    for (n, a), (_, b) in zip(model.state_dict().items(), fresh.state_dict().items()):
        assert torch.equal(a, b), n
    assert not list(tmp_path.glob(".*tmp"))  # no temporary file left behind
    torch.load(path, weights_only=True)  # plain data only


def test_trainconfig_round_trips_through_a_dict():
    cfg = T.TrainConfig(steps=5, freeze="encoder", scale=(0.75, 1.5), optimizer="adam", loss="soft_iou")
    d = cfg.to_dict()
    assert T.TrainConfig.from_dict(d) == cfg
    assert T.TrainConfig.from_dict(asdict(cfg)) == cfg
    with pytest.raises(ValueError, match="bogus"):
        T.TrainConfig.from_dict({**d, "bogus": 1})
    with pytest.raises(ValueError, match="optimizer"):
        T.TrainConfig(optimizer="rmsprop")


class Constant(nn.Module):
    """Always predicts class ``k`` (a huge logit), whatever the input."""

    def __init__(self, k, n_classes=3):
        super().__init__()
        self.k, self.n = k, n_classes
        self.dummy = nn.Parameter(torch.zeros(()))

    def forward(self, x):
        out = torch.zeros(x.shape[0], self.n, *x.shape[2:])
        out[:, self.k] = 10.0
        return out + 0 * self.dummy


def test_evaluate_matches_a_hand_computed_confusion():
    rng = np.random.default_rng(0)
    t1 = np.array([[0, 0, 1], [2, 1, IGNORE_INDEX]], dtype=np.int64)
    t2 = np.array([[1, 1], [1, 0]], dtype=np.int64)
    data = [(rng.integers(0, 256, (2, 3, 3), dtype=np.uint8), t1),
            (rng.integers(0, 256, (2, 2, 3), dtype=np.uint8), t2)]
    res = T.evaluate(Constant(1), data, n_classes=3, device="cpu")
    # predicting 1 everywhere: 9 counted pixels (one ignored), class counts 0:3, 1:5, 2:1
    expected = torch.tensor([[0, 3, 0], [0, 5, 0], [0, 1, 0]])
    assert torch.equal(res["confusion_matrix"], expected)
    assert res["pixel_accuracy"] == pytest.approx(5 / 9)
    # IoU: class 0 -> 0/3, class 1 -> 5/9, class 2 -> 0/1
    assert res["mean_iou"] == pytest.approx((0 + 5 / 9 + 0) / 3)
    assert res["n_images"] == 2
    preds = T.predict(Constant(2), [d[0] for d in data], device="cpu")
    assert [p.shape for p in preds] == [(2, 3), (2, 2)] and all((p == 2).all() for p in preds)
    assert preds[0].dtype == np.int64


def test_fit_rejects_a_model_with_the_wrong_output_size(few_images):
    class Shrinks(TinyNet):
        def forward(self, x):
            return super().forward(x)[:, :, 1:, 1:]

    with pytest.raises(ValueError, match="expected"):
        T.fit(Shrinks(), few_images, _cfg(steps=1), progress=False)


def test_fit_calls_a_custom_loss_and_needs_one_for_soft_iou(few_images):
    calls = []

    def loss_fn(logits, target):
        calls.append((logits.shape, target.shape, int((target == IGNORE_INDEX).sum())))
        return nn.functional.cross_entropy(logits, target, ignore_index=IGNORE_INDEX)

    T.fit(TinyNet(), few_images, _cfg(steps=2, loss="soft_iou"), loss_fn=loss_fn, progress=False)
    assert len(calls) == 2 and calls[0][0] == (3, 12, 48, 48) and calls[0][1] == (3, 48, 48)
    with pytest.raises(ValueError, match="loss_fn"):
        T.fit(TinyNet(), few_images, _cfg(steps=1, loss="soft_iou"), progress=False)


def test_augmentation_pads_small_images_with_ignore_index():
    cfg = _cfg(crop_size=16, scale=(1.0, 1.0), hflip=False)
    image = torch.full((3, 8, 10), 7, dtype=torch.uint8)
    target = torch.zeros(8, 10, dtype=torch.int64)
    img, tgt = T._augment(image, target, cfg, torch.Generator().manual_seed(0))
    assert img.shape == (3, 16, 16) and tgt.shape == (16, 16)
    assert int((tgt == 0).sum()) == 80 and int((tgt == IGNORE_INDEX).sum()) == 256 - 80
    assert int((img == 7).all(0).sum()) == 80  # photo pixels kept, padding is the mean colour


def test_fit_advances_a_shared_progress_bar_and_leaves_it_open(few_images):
    """A notebook cell that trains in stages passes one bar to every fit call."""
    class Bar:
        n, closed = 0, False

        def update(self, k=1):
            self.n += k

        def set_postfix(self, **kw):
            pass

        def close(self):
            self.closed = True

    bar = Bar()
    T.fit(TinyNet(), few_images, _cfg(steps=3), progress=bar)
    T.fit(TinyNet(), few_images, _cfg(steps=2), progress=bar)
    assert bar.n == 5 and not bar.closed


def test_estimate_seconds_times_a_copy(few_images):
    model = TinyNet()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    guess = T.estimate_seconds(model, few_images, _cfg(steps=50), eval_images=10,
                               eval_data=few_images, device="cpu")
    assert guess["steps"] == 50 and guess["per_step"] > 0 and guess["per_image"] > 0
    assert guess["seconds"] == pytest.approx(50 * guess["per_step"] + 10 * guess["per_image"])
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # untouched
    with pytest.raises(ValueError, match="probe_steps"):
        T.estimate_seconds(model, few_images, _cfg(), probe_steps=1)
    with pytest.raises(ValueError, match="eval_data"):
        T.estimate_seconds(model, few_images, _cfg(), eval_images=3)

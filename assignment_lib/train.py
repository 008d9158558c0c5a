"""Seeding, training and evaluation loops for the FCN exercises.

What students call from the notebooks, and what the autograder calls inside its sandbox::

    seed_everything(0)
    model = FCN8s()
    copy_vgg16_weights(model)
    config = TrainConfig(steps=2000, batch_size=8, crop_size=320, lr=1e-4, optimizer="adam")
    history = fit(model, load_split("train", max_side=512), config, val_data=load_split("val", max_side=512))
    print(evaluate(model, load_split("test", max_side=512))["mean_iou"])

Design (why it is fast without a ``DataLoader``): the decoded split is moved to the device ONCE as
uint8 tensors; every batch is augmented there (random scale, random crop of ``crop_size`` padded
with :data:`~assignment_lib.data.IGNORE_INDEX`, horizontal flip, ImageNet normalisation), so
batches hold several images and nothing is decoded twice. Mixed precision is bf16 autocast on CUDA
devices that support it and plain fp32 elsewhere (CPU).

Training recipe background: Long, Shelhamer and Darrell, "Fully Convolutional Networks for Semantic
Segmentation", CVPR 2015, Sec. 4.3 (SGD with momentum 0.99 at batch 1 / lr 1e-10 on unnormalised
loss; here the loss is the pixel MEAN, so the usual lr is 1e-3..1e-4 with momentum 0.9 or Adam).
"""

from __future__ import annotations

import math
import os
import random
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from assignment_lib.data import IGNORE_INDEX, IMAGENET_MEAN, IMAGENET_STD, N_CLASSES
from assignment_lib.metrics import SegmentationMetrics

#: The VGG-16 convolutional layers of FCN-32s/16s/8s (names as in Long et al. / wkentaro/pytorch-fcn).
ENCODER_LAYERS = (
    "conv1_1", "conv1_2", "conv2_1", "conv2_2", "conv3_1", "conv3_2", "conv3_3",
    "conv4_1", "conv4_2", "conv4_3", "conv5_1", "conv5_2", "conv5_3",
)

#: Named freeze policies accepted by ``TrainConfig.freeze``.
FREEZE_POLICIES = {
    "none": (),
    "encoder": ENCODER_LAYERS,
    "encoder+fc": ENCODER_LAYERS + ("fc6", "fc7"),
}

#: Keys of :class:`History`, in order.
HISTORY_KEYS = ("step", "epoch", "train_loss", "val_pixel_accuracy", "val_mean_iou", "lr", "seconds")


# ------------------------------------------------------------------------------------------ seeding


def seed_everything(seed: int, deterministic: bool = False) -> None:
    """Seed Python's ``random``, NumPy and torch (CPU and every CUDA device) with ``seed``.

    With ``deterministic=True`` also: ``torch.backends.cudnn.deterministic = True``,
    ``torch.backends.cudnn.benchmark = False``, ``CUBLAS_WORKSPACE_CONFIG=:4096:8`` (needed by
    deterministic cuBLAS, set only if not already set) and
    ``torch.use_deterministic_algorithms(True, warn_only=True)`` (ops without a deterministic
    implementation warn instead of failing). On CPU a seeded run of :func:`fit` is bitwise
    reproducible with or without this flag; on CUDA only with it (and even then some ops, e.g.
    transposed-convolution backward, may warn that they are not deterministic).

    Args:
        seed: an int in [0, 2**32).

    Raises:
        ValueError: if ``seed`` is not an int in that range.
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed < 2**32:
        raise ValueError(f"seed must be an int in [0, 2**32), got {seed!r}")
    seed = int(seed)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # seeds the CPU generator and every CUDA device's
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
        torch.use_deterministic_algorithms(True, warn_only=True)


# ------------------------------------------------------------------------------------------- config


@dataclass
class TrainConfig:
    """Everything that defines a training run, as plain data (``asdict`` / :meth:`from_dict`).

    Attributes:
        steps: optimiser steps; if ``None``, ``epochs * ceil(len(train_data) / batch_size)``.
        epochs: used only when ``steps`` is ``None``.
        batch_size: images per step (crops of equal size, so they stack).
        crop_size: side in pixels of the square training crops; images smaller than the crop are
            padded (photo with the ImageNet mean, i.e. 0 after normalisation; target with
            ``IGNORE_INDEX``).
        max_side: if set, images (train, val) whose longer side exceeds it are shrunk to it once,
            before training (photo bilinear, target nearest).
        scale: (min, max) random rescale factor applied before cropping; ``(1.0, 1.0)`` = none.
        hflip: random horizontal flips (p = 0.5).
        lr: learning rate. ``lr_schedule``: ``"constant"`` or ``"poly"`` (lr * (1 - t/T)^0.9).
        momentum: SGD momentum (also Adam's beta1). ``weight_decay``: L2 penalty.
        optimizer: ``"sgd"`` or ``"adam"``; only parameters with ``requires_grad`` are optimised.
        loss: ``"cross_entropy"`` (mean over non-ignored pixels, ``ignore_index=255``) or
            ``"soft_iou"`` (then ``fit(..., loss_fn=...)`` must be given: the notebook's function).
        freeze: layer-name prefixes whose parameters are frozen (``requires_grad=False``), or a
            named policy from :data:`FREEZE_POLICIES` (``"encoder"`` = conv1_1 ... conv5_3).
        amp: bf16 autocast where the device supports it (CUDA with bf16); ignored on CPU.
        channels_last: use the channels-last memory format (faster convolutions on GPUs).
        compile: wrap the model in ``torch.compile`` (first steps are slow while it compiles).
        seed: seeds :func:`seed_everything`, the data order and the augmentation.
        deterministic: pass ``deterministic=True`` to :func:`seed_everything`.
        eval_every: a History row (and a validation pass, and a checkpoint) every this many steps;
            ``None`` = once per epoch. The last step always gets a row.
        checkpoint: path of the checkpoint written at every row (``None`` = none).
        n_classes: classes of the model output (12 for CMP Facade, 2 for a binary task).
    """

    steps: int | None = None
    epochs: int = 1
    batch_size: int = 8
    crop_size: int = 320
    max_side: int | None = 512
    scale: tuple[float, float] = (0.5, 2.0)
    hflip: bool = True
    lr: float = 1e-4
    lr_schedule: str = "constant"
    momentum: float = 0.9
    weight_decay: float = 5e-4
    optimizer: str = "sgd"
    loss: str = "cross_entropy"
    freeze: list[str] | str = field(default_factory=list)
    amp: bool = True
    channels_last: bool = True
    compile: bool = False
    seed: int = 0
    deterministic: bool = False
    eval_every: int | None = None
    checkpoint: str | None = None
    n_classes: int = N_CLASSES

    def __post_init__(self):
        self.scale = tuple(float(s) for s in self.scale)
        if isinstance(self.freeze, tuple):
            self.freeze = list(self.freeze)
        problems = []
        if self.steps is not None and (not isinstance(self.steps, int) or self.steps < 1):
            problems.append(f"steps must be a positive int or None, got {self.steps!r}")
        if not isinstance(self.epochs, int) or self.epochs < 1:
            problems.append(f"epochs must be a positive int, got {self.epochs!r}")
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            problems.append(f"batch_size must be a positive int, got {self.batch_size!r}")
        if not isinstance(self.crop_size, int) or self.crop_size < 8:
            problems.append(f"crop_size must be an int >= 8, got {self.crop_size!r}")
        if self.max_side is not None and (not isinstance(self.max_side, int) or self.max_side < 8):
            problems.append(f"max_side must be an int >= 8 or None, got {self.max_side!r}")
        if len(self.scale) != 2 or not 0 < self.scale[0] <= self.scale[1]:
            problems.append(f"scale must be (min, max) with 0 < min <= max, got {self.scale!r}")
        if self.optimizer not in ("sgd", "adam"):
            problems.append(f"optimizer must be 'sgd' or 'adam', got {self.optimizer!r}")
        if self.loss not in ("cross_entropy", "soft_iou"):
            problems.append(f"loss must be 'cross_entropy' or 'soft_iou', got {self.loss!r}")
        if self.lr_schedule not in ("constant", "poly"):
            problems.append(f"lr_schedule must be 'constant' or 'poly', got {self.lr_schedule!r}")
        if not self.lr > 0:
            problems.append(f"lr must be > 0, got {self.lr!r}")
        if isinstance(self.freeze, str) and self.freeze not in FREEZE_POLICIES:
            problems.append(f"freeze must be a list of layer prefixes or one of "
                            f"{sorted(FREEZE_POLICIES)}, got {self.freeze!r}")
        if self.eval_every is not None and (not isinstance(self.eval_every, int) or self.eval_every < 1):
            problems.append(f"eval_every must be a positive int or None, got {self.eval_every!r}")
        if problems:
            raise ValueError("bad TrainConfig: " + "; ".join(problems))

    def to_dict(self) -> dict:
        """Plain-data copy (lists, numbers, strings, None), safe for JSON and ``weights_only`` loads."""
        d = asdict(self)
        d["scale"] = list(d["scale"])
        return d

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        """Inverse of :meth:`to_dict` / ``asdict``. Unknown keys raise ``ValueError`` (naming them)."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown TrainConfig fields {unknown}; known: {sorted(known)}")
        return cls(**d)

    def frozen_prefixes(self) -> tuple[str, ...]:
        """The layer-name prefixes that ``freeze`` names."""
        if isinstance(self.freeze, str):
            return tuple(FREEZE_POLICIES[self.freeze])
        return tuple(self.freeze)

    def total_steps(self, n_train: int) -> int:
        return self.steps if self.steps is not None else self.epochs * math.ceil(n_train / self.batch_size)


class History(dict):
    """What :func:`fit` recorded: a dict of equally long lists, one entry per row.

    Keys (:data:`HISTORY_KEYS`): ``step`` (optimiser steps done), ``epoch`` (float, passes over the
    training set), ``train_loss`` (mean loss over the steps since the previous row),
    ``val_pixel_accuracy`` and ``val_mean_iou`` (in [0, 1]; NaN without validation data), ``lr``
    (learning rate at the row), ``seconds`` (wall time since the start of training).
    """

    def __init__(self, data: dict | None = None):
        super().__init__({k: [] for k in HISTORY_KEYS})
        if data:
            for k, v in data.items():
                self[k] = list(v)

    def append(self, **row) -> None:
        if set(row) != set(HISTORY_KEYS):
            raise ValueError(f"a History row needs exactly the keys {HISTORY_KEYS}, got {sorted(row)}")
        for k in HISTORY_KEYS:
            self[k].append(row[k])

    def __len__(self) -> int:  # number of rows, not of keys
        return len(self["step"])

    def last(self) -> dict:
        """The last row as a dict (raises IndexError if empty)."""
        return {k: self[k][-1] for k in HISTORY_KEYS}


# -------------------------------------------------------------------------------------------- data


def _device(device) -> torch.device:
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def _to_tensors(data, device, max_side: int | None, what: str):
    """``[(image uint8 (H,W,3), target int (H,W))]`` -> ``[(uint8 (3,H,W), int64 (H,W))]`` on ``device``."""
    if len(data) == 0:
        raise ValueError(f"{what} is empty: pass a list of (image, target) pairs, e.g. load_split('train')")
    out = []
    for i, pair in enumerate(data):
        try:
            image, target = pair
        except (TypeError, ValueError):
            raise ValueError(f"{what}[{i}] is not an (image, target) pair") from None
        image = torch.tensor(np.asarray(image))  # a copy: cached arrays are read-only
        target = torch.tensor(np.asarray(target))
        if image.dtype != torch.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"{what}[{i}]: image must be uint8 (H, W, 3), got {tuple(image.shape)} "
                             f"{image.dtype}")
        if target.shape != image.shape[:2] or target.is_floating_point():
            raise ValueError(f"{what}[{i}]: target must be int (H, W) = {tuple(image.shape[:2])}, got "
                             f"{tuple(target.shape)} {target.dtype}")
        image = image.to(device).permute(2, 0, 1).contiguous()
        target = target.to(device=device, dtype=torch.int64)
        if max_side is not None and max(target.shape) > max_side:
            image, target = _resize(image, target, max_side / max(target.shape))
        out.append((image, target))
    return out


def _resize(image: torch.Tensor, target: torch.Tensor, factor: float):
    """Rescale uint8 (3,H,W) bilinearly (antialiased when shrinking) and target (H,W) nearest."""
    h, w = target.shape
    size = (max(1, round(h * factor)), max(1, round(w * factor)))
    img = F.interpolate(image[None].float(), size=size, mode="bilinear", align_corners=False,
                        antialias=factor < 1)[0]
    img = img.round_().clamp_(0, 255).to(torch.uint8)
    tgt = F.interpolate(target[None, None].float(), size=size, mode="nearest")[0, 0].to(torch.int64)
    return img, tgt


def _normalize(images_u8: torch.Tensor) -> torch.Tensor:
    """uint8 (N,3,H,W) -> float32 ImageNet-normalised."""
    mean = torch.tensor(IMAGENET_MEAN, device=images_u8.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=images_u8.device).view(1, 3, 1, 1)
    return (images_u8.float() / 255 - mean) / std


def _augment(image, target, config: TrainConfig, gen: torch.Generator):
    """One random training crop: (uint8 (3,c,c), int64 (c,c)); padding is mean colour / IGNORE_INDEX.

    Random numbers come from the CPU generator ``gen`` (cheap, and identical on every device).
    """
    lo, hi = config.scale
    if hi > lo or lo != 1.0:
        s = lo + (hi - lo) * torch.rand((), generator=gen).item()
        if abs(s - 1.0) > 1e-6:
            image, target = _resize(image, target, s)
    c = config.crop_size
    h, w = target.shape
    # pad up to the crop size: photo with the mean colour (0 after normalisation), target ignored
    ph, pw = max(0, c - h), max(0, c - w)
    if ph or pw:
        mean = torch.tensor([round(255 * m) for m in IMAGENET_MEAN], dtype=torch.uint8,
                            device=image.device).view(3, 1, 1)
        canvas = mean.expand(3, h + ph, w + pw).clone()
        canvas[:, :h, :w] = image
        tcanvas = torch.full((h + ph, w + pw), IGNORE_INDEX, dtype=torch.int64, device=target.device)
        tcanvas[:h, :w] = target
        image, target = canvas, tcanvas
        h, w = target.shape
    top = int(torch.randint(0, h - c + 1, (), generator=gen))
    left = int(torch.randint(0, w - c + 1, (), generator=gen))
    image = image[:, top:top + c, left:left + c]
    target = target[top:top + c, left:left + c]
    if config.hflip and torch.rand((), generator=gen).item() < 0.5:
        image, target = image.flip(-1), target.flip(-1)
    return image, target


# -------------------------------------------------------------------------------------------- model


def _autocast(device: torch.device, enabled: bool):
    """bf16 autocast on CUDA devices that support bf16; a no-op context elsewhere."""
    use = enabled and device.type == "cuda" and torch.cuda.is_bf16_supported()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=use)


def freeze_layers(model: torch.nn.Module, prefixes: Sequence[str]) -> list[str]:
    """Set ``requires_grad=False`` on every parameter whose name starts with one of ``prefixes``
    (a prefix matches a whole name component: ``"conv1_1"`` matches ``conv1_1.weight``, not
    ``conv1_10.weight``) and ``requires_grad=True`` on all others, so that the list is the whole
    truth (a second :func:`fit` with ``freeze=[]`` fine-tunes everything again).

    Returns:
        The names of the frozen parameters.

    Raises:
        ValueError: if a prefix matches no parameter (names the prefix and lists the layers).
    """
    names = [n for n, _ in model.named_parameters()]
    frozen = []
    for prefix in prefixes:
        hits = [n for n in names if n == prefix or n.startswith(prefix + ".")]
        if not hits:
            layers = sorted({n.rsplit(".", 1)[0] for n in names})
            raise ValueError(f"freeze: no parameter of {type(model).__name__} is named {prefix!r}; "
                             f"check the layer names (the model has {layers})")
        frozen.extend(hits)
    frozen_set = set(frozen)
    for n, p in model.named_parameters():
        p.requires_grad_(n not in frozen_set)
    return frozen


def _make_optimizer(params, config: TrainConfig) -> torch.optim.Optimizer:
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=config.lr, betas=(config.momentum, 0.999),
                                weight_decay=config.weight_decay)
    return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum,
                           weight_decay=config.weight_decay)


def _atomic_torch_save(obj, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)  # readers see the old checkpoint or the new one, never half of one
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def save_checkpoint(path, model: torch.nn.Module, config: TrainConfig, history: History) -> None:
    """Write ``{"model": state_dict (CPU), "config": dict, "history": dict}`` atomically to ``path``.
    Loadable with ``torch.load(path, weights_only=True)``."""
    state = {k: v.detach().cpu() for k, v in _unwrap(model).state_dict().items()}
    _atomic_torch_save({"model": state, "config": config.to_dict(), "history": dict(history)},
                       Path(path))


def load_checkpoint(path, model: torch.nn.Module | None = None) -> tuple[TrainConfig, History, dict]:
    """Read a checkpoint of :func:`save_checkpoint`; load its weights into ``model`` if given.

    Returns:
        ``(config, history, state_dict)``.

    Raises:
        FileNotFoundError: no such file. ``ValueError``: not a checkpoint of this module (names the file).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(ckpt, dict) or set(ckpt) != {"model", "config", "history"}:
        raise ValueError(f"{path} is not a checkpoint written by assignment_lib.train.save_checkpoint")
    if model is not None:
        _unwrap(model).load_state_dict(ckpt["model"])
    return TrainConfig.from_dict(ckpt["config"]), History(ckpt["history"]), ckpt["model"]


def _unwrap(model):
    return getattr(model, "_orig_mod", model)  # torch.compile wrapper -> the module itself


# --------------------------------------------------------------------------------------------- fit


def fit(
    model: torch.nn.Module,
    train_data,
    config: TrainConfig,
    val_data=None,
    *,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    device=None,
    progress=True,
) -> History:
    """Train ``model`` in place on ``train_data`` and return its :class:`History`.

    Args:
        model: any ``nn.Module`` mapping float32 (N, 3, H, W) ImageNet-normalised images to logits
            (N, config.n_classes, H, W). Built (and initialised) by the caller; moved to ``device``.
        train_data: list of ``(image uint8 (H, W, 3), target int (H, W))`` pairs, e.g.
            ``load_split("train", max_side=...)``; targets hold class indices in
            ``[0, n_classes)`` or ``IGNORE_INDEX`` (255).
        config: a :class:`TrainConfig`.
        val_data: same format; if given, evaluated (:func:`evaluate`) at every History row.
        loss_fn: ``callable(logits, target) -> scalar tensor``; overrides ``config.loss``. Needed for
            ``config.loss == "soft_iou"``. Training targets contain ``IGNORE_INDEX`` where a crop was
            padded, so pass e.g. ``functools.partial(soft_iou_loss, ignore_index=255)``.
        device: ``"cpu"``, ``"cuda"``, ...; ``None`` = CUDA when available, else CPU.
        progress: ``True`` shows a tqdm progress bar of this call's steps; ``False`` none; or an
            open tqdm bar, which is advanced by one per step and left open (one bar over several
            calls, e.g. a notebook cell that trains in stages).

    Returns:
        A :class:`History`. With ``config.checkpoint`` set, a checkpoint is written at every row.

    Raises:
        ValueError: bad data (names the pair), a freeze prefix that matches no layer, nothing left
            to train, a model output of the wrong shape, or a non-finite loss (names the step).
    """
    if not isinstance(config, TrainConfig):
        raise TypeError(f"config must be a TrainConfig, got {type(config).__name__}")
    if loss_fn is None:
        if config.loss == "soft_iou":
            raise ValueError("config.loss is 'soft_iou': pass your function, "
                             "fit(..., loss_fn=functools.partial(soft_iou_loss, ignore_index=255))")

        def loss_fn(logits, target):
            return F.cross_entropy(logits.float(), target, ignore_index=IGNORE_INDEX)

    dev = _device(device)
    seed_everything(config.seed, deterministic=config.deterministic)
    gen = torch.Generator().manual_seed(config.seed)

    train = _to_tensors(train_data, dev, config.max_side, "train_data")
    freeze_layers(model, config.frozen_prefixes())
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("every parameter is frozen: nothing to train (check config.freeze)")
    model.to(dev)
    if config.channels_last:
        model.to(memory_format=torch.channels_last)
    optimizer = _make_optimizer(params, config)
    net = torch.compile(model) if config.compile else model

    total = config.total_steps(len(train))
    per_epoch = math.ceil(len(train) / config.batch_size)
    row_every = config.eval_every or per_epoch
    history = History()
    order: list[int] = []
    loss_sum, n_losses = None, 0
    start = time.perf_counter()

    bar, own_bar = None, False
    if progress is True:
        from tqdm.auto import tqdm

        bar, own_bar = tqdm(total=total, desc="fit", unit="step", leave=True), True
    elif progress:
        bar = progress
    try:
        for step in range(1, total + 1):
            lr = config.lr * ((1 - (step - 1) / total) ** 0.9 if config.lr_schedule == "poly" else 1.0)
            for group in optimizer.param_groups:
                group["lr"] = lr
            batch_idx = []
            while len(batch_idx) < config.batch_size:
                if not order:
                    order = torch.randperm(len(train), generator=gen).tolist()
                batch_idx.append(order.pop())
            crops = [_augment(*train[i], config, gen) for i in batch_idx]
            images = _normalize(torch.stack([c[0] for c in crops]))
            target = torch.stack([c[1] for c in crops])
            if config.channels_last:
                images = images.contiguous(memory_format=torch.channels_last)

            model.train()
            with _autocast(dev, config.amp):
                logits = net(images)
            if logits.ndim != 4 or logits.shape[0] != images.shape[0] or logits.shape[2:] != images.shape[2:]:
                raise ValueError(f"the model returned shape {tuple(logits.shape)} for input "
                                 f"{tuple(images.shape)}; expected (N, n_classes, H, W) with the "
                                 "input's H and W (check the final crop / upsampling)")
            loss = loss_fn(logits.float(), target)
            if not isinstance(loss, torch.Tensor) or loss.ndim != 0:
                raise ValueError(f"the loss function must return a scalar tensor, got {loss!r:.80}")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            # summed on the device: no host synchronisation per step (checked at every row)
            loss_sum = loss.detach().float() if loss_sum is None else loss_sum + loss.detach().float()
            n_losses += 1
            if bar is not None:
                bar.update(1)

            if step % row_every == 0 or step == total:
                mean_loss = (loss_sum / n_losses).item()
                if not math.isfinite(mean_loss):
                    raise ValueError(f"the training loss is {mean_loss} between steps "
                                     f"{step - n_losses + 1} and {step}: lower the learning rate "
                                     "or check the loss function")
                loss_sum, n_losses = None, 0
                val = {"pixel_accuracy": float("nan"), "mean_iou": float("nan")}
                if val_data is not None:
                    val = evaluate(model, val_data, n_classes=config.n_classes, device=dev,
                                   max_side=config.max_side, amp=config.amp)
                history.append(step=step, epoch=step * config.batch_size / len(train),
                               train_loss=mean_loss,
                               val_pixel_accuracy=float(val["pixel_accuracy"]),
                               val_mean_iou=float(val["mean_iou"]), lr=lr,
                               seconds=time.perf_counter() - start)
                if bar is not None:
                    bar.set_postfix(loss=f"{mean_loss:.3f}", val_miou=f"{history['val_mean_iou'][-1]:.3f}")
                if config.checkpoint:
                    save_checkpoint(config.checkpoint, model, config, history)
    finally:
        if own_bar:
            bar.close()
    return history


def estimate_seconds(model: torch.nn.Module, train_data, config: TrainConfig, *, eval_images: int = 0,
                     eval_data=None, device=None, probe_steps: int = 2) -> dict:
    """Estimate how long training ``model`` under ``config`` (and evaluating) takes, by timing a
    few steps on a copy of the model: ``seconds per step x steps + seconds per image x images``.

    The model itself is not changed (a deep copy trains). The first probe step is a warm-up and
    not counted (allocation, thread start-up), so ``probe_steps`` must be at least 2.

    Args:
        model, train_data, config: as for :func:`fit`.
        eval_images: images the cell will push through the model for evaluation and prediction.
        eval_data: ``(image, target)`` pairs to time one evaluation image on (the first is used);
            needed when ``eval_images > 0``.
        device: as for :func:`fit`.
        probe_steps: steps timed (the first not counted).

    Returns:
        ``{"seconds": total estimate, "per_step": s, "per_image": s, "steps": steps}`` (seconds).

    Raises:
        ValueError: ``probe_steps < 2``, or ``eval_images > 0`` without ``eval_data``.
    """
    import copy

    if probe_steps < 2:
        raise ValueError(f"probe_steps must be >= 2 (the first is a warm-up), got {probe_steps}")
    if eval_images and not eval_data:
        raise ValueError("eval_images > 0 needs eval_data to time one evaluation image on")
    probe = copy.deepcopy(_unwrap(model))
    marks = []
    probe_config = TrainConfig(**{**config.to_dict(), "steps": probe_steps, "eval_every": None,
                                  "checkpoint": None, "compile": False})

    class _Clock:  # a stand-in progress bar that records when each step ends
        def update(self, n=1):
            marks.append(time.perf_counter())

        def set_postfix(self, **kwargs):
            pass

    fit(probe, train_data, probe_config, device=device, progress=_Clock())
    per_step = (marks[-1] - marks[0]) / (len(marks) - 1)
    per_image = 0.0
    if eval_images:
        start = time.perf_counter()
        evaluate(probe, eval_data[:1], n_classes=config.n_classes, device=device,
                 max_side=config.max_side, amp=config.amp)
        per_image = time.perf_counter() - start
    del probe
    steps = config.total_steps(len(train_data))
    return {"seconds": per_step * steps + per_image * eval_images, "per_step": per_step,
            "per_image": per_image, "steps": steps}


# ---------------------------------------------------------------------------------------- evaluate


def _forward_one(model, x: torch.Tensor, dev: torch.device, amp: bool) -> torch.Tensor:
    """Class indices int64 (H, W) on ``dev`` for one uint8 (3, H, W) photo already on ``dev``."""
    with _autocast(dev, amp):
        logits = model(_normalize(x[None]))
    if logits.ndim != 4 or logits.shape[0] != 1 or logits.shape[2:] != x.shape[1:]:
        raise ValueError(f"the model returned shape {tuple(logits.shape)} for input "
                         f"{(1, *x.shape)}; expected (1, n_classes, H, W) with the input's H and W "
                         "(check the final crop / upsampling)")
    return logits.float().argmax(1)[0]


@torch.no_grad()
def predict(model: torch.nn.Module, images, *, device=None, max_side: int | None = None,
            amp: bool = True) -> list[np.ndarray]:
    """Class-index maps for a list of photos, one image at a time (sizes may differ).

    Args:
        images: list of uint8 (H, W, 3) arrays or tensors.
        device: where to run; ``None`` = CUDA when available, else CPU.
        max_side: if set, a photo larger than this is shrunk for the forward pass and the
            prediction is upsampled back (nearest) to (H, W).
        amp: bf16 autocast on CUDA devices that support it.

    Returns:
        list of int64 numpy arrays (H, W), the argmax over classes; the model is left in eval mode.

    Raises:
        ValueError: an image that is not uint8 (H, W, 3), or a model output of the wrong shape.
    """
    dev = _device(device)
    model.to(dev).eval()
    out = []
    for i, image in enumerate(images):
        image = torch.tensor(np.asarray(image))
        if image.dtype != torch.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"images[{i}] must be uint8 (H, W, 3), got {tuple(image.shape)} {image.dtype}")
        h, w = image.shape[:2]
        x = image.to(dev).permute(2, 0, 1)
        if max_side is not None and max(h, w) > max_side:
            x, _ = _resize(x, torch.zeros(h, w, dtype=torch.int64, device=dev), max_side / max(h, w))
        pred = _forward_one(model, x, dev, amp)
        if pred.shape != (h, w):
            pred = F.interpolate(pred[None, None].float(), size=(h, w), mode="nearest")[0, 0].long()
        out.append(pred.cpu().numpy().astype(np.int64))
    return out


@torch.no_grad()
def evaluate(model: torch.nn.Module, data, n_classes: int = N_CLASSES, *, device=None,
             max_side: int | None = None, amp: bool = True, progress: bool = False) -> dict:
    """Segmentation metrics of ``model`` on ``data``, pixels counted over the whole set.

    Each image goes through the model on its own (sizes differ), at full size or shrunk to
    ``max_side`` (then the prediction is compared with the equally shrunk target, nearest).

    Args:
        data: list of ``(image uint8 (H, W, 3), target int (H, W))``; ``IGNORE_INDEX`` pixels are
            not counted.
        n_classes: classes of the model output.

    Returns:
        :meth:`assignment_lib.metrics.SegmentationMetrics.compute`'s dict (``pixel_accuracy``,
        ``mean_iou``, ``iou_per_class``, ``confusion_matrix``, ...) plus ``n_images``.
    """
    dev = _device(device)
    pairs = _to_tensors(data, dev, max_side, "data")
    metrics = SegmentationMetrics(n_classes, ignore_index=IGNORE_INDEX)
    it = pairs
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(pairs, desc="evaluate", unit="img")
    model.to(dev).eval()
    for image, target in it:
        metrics.update(_forward_one(model, image, dev, amp)[None], target[None])
    result = metrics.compute()
    result["n_images"] = len(pairs)
    return result

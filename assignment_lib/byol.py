"""BYOL self-supervised pre-training (Grill et al., "Bootstrap Your Own Latent", NeurIPS 2020),
built around the two functions the notebook asks you to write.

What is here:

- :func:`augment` / :func:`two_views`: the augmentation of the paper scaled down to small crops
  (random resized crop, flip, colour jitter, grey, blur, solarise), batched on the GPU with
  per-image random parameters (``torchvision.ops.roi_align`` and ``transforms.v2.functional``);
- :func:`mlp_head`: the projector / predictor MLP (Linear, BatchNorm, ReLU, Linear);
- :class:`BYOL`: online network (encoder, projector, predictor) and its target (an EMA copy of
  encoder and projector, never trained by the optimiser);
- :func:`pretrain`: the training loop. Each step draws a batch, makes two views, computes the
  symmetrised loss ``loss_fn(p1, z2) + loss_fn(p2, z1)`` with **your** ``byol_loss``, takes an
  optimiser step on the online network and then calls **your** ``ema_update(target, online, tau)``
  with tau following the paper's cosine schedule from ``config.tau`` to 1;
- :func:`resnet18_encoder`: torchvision's ResNet-18 without weights, its classifier removed
  (512 features);
- :class:`LinearClassifier` / :func:`to_inputs`: the downstream evaluation (a linear head on the
  encoder, fine-tuning everything or with the backbone frozen), trained with
  :func:`assignment_lib.transfer.fit_classifier`.

Images everywhere are uint8, either a tensor ``(N, 3, H, W)`` or an array ``(N, H, W, 3)``
(:func:`as_uint8_batch`); all square crops of the same size.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from assignment_lib.data import IMAGENET_MEAN, IMAGENET_STD


@dataclass
class BYOLConfig:
    """Settings of one BYOL pre-training run (:func:`pretrain`).

    Attributes:
        steps: optimiser steps.
        batch_size: images per step (each gives two views).
        image_size: side in pixels of the augmented views.
        lr: Adam learning rate. ``weight_decay``: Adam's L2 penalty.
        tau: base EMA rate of the target network; the schedule raises it to 1 by the last step
            (tau_k = 1 - (1 - tau) (cos(pi k / K) + 1) / 2, Grill et al. Sec. 3.2).
        hidden_dim: hidden width of projector and predictor. ``projection_dim``: their output size.
        seed: seeds the network heads, the batch order and the augmentations.
    """

    steps: int = 300
    batch_size: int = 64
    image_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 1e-6
    tau: float = 0.99
    hidden_dim: int = 512
    projection_dim: int = 128
    seed: int = 0

    def __post_init__(self):
        problems = [f"{name} must be a positive int, got {getattr(self, name)!r}"
                    for name in ("steps", "batch_size", "image_size", "hidden_dim", "projection_dim")
                    if not isinstance(getattr(self, name), int) or getattr(self, name) < 1]
        if not 0.0 <= self.tau <= 1.0:
            problems.append(f"tau must be in [0, 1], got {self.tau!r}")
        if not self.lr > 0:
            problems.append(f"lr must be > 0, got {self.lr!r}")
        if problems:
            raise ValueError("bad BYOLConfig: " + "; ".join(problems))

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> BYOLConfig:
        """Inverse of :meth:`to_dict`. Unknown keys raise ``ValueError`` (naming them)."""
        unknown = sorted(set(d) - {f.name for f in fields(cls)})
        if unknown:
            raise ValueError(f"unknown BYOLConfig fields {unknown}")
        return cls(**d)


# ------------------------------------------------------------------------------------ images


def as_uint8_batch(images) -> torch.Tensor:
    """uint8 ``(N, 3, H, W)`` tensor from a uint8 tensor ``(N, 3, H, W)``, an array
    ``(N, H, W, 3)`` or a list of ``(H, W, 3)`` arrays of equal size.

    Raises:
        ValueError: other dtypes or shapes (says which).
    """
    if isinstance(images, (list, tuple)):
        images = np.stack([np.asarray(im) for im in images])
    if isinstance(images, np.ndarray):
        if images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(f"images must be (N, H, W, 3), got an array of shape {images.shape}")
        images = torch.from_numpy(np.array(images, dtype=np.uint8)).permute(0, 3, 1, 2)  # a writable copy
    if not isinstance(images, torch.Tensor) or images.dtype != torch.uint8:
        raise ValueError(f"images must be uint8, got {getattr(images, 'dtype', type(images))}")
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be (N, 3, H, W), got {tuple(images.shape)}")
    return images.contiguous()


def normalize(images_u8: torch.Tensor) -> torch.Tensor:
    """uint8 ``(N, 3, H, W)`` -> float32, ImageNet mean/std normalised (as the encoders expect)."""
    return normalize01(images_u8.float() / 255.0)


def _uniform(n: int, low: float, high: float, device) -> torch.Tensor:
    return torch.empty(n, device=device).uniform_(low, high)


def augment(images: torch.Tensor, size: int) -> torch.Tensor:
    """One BYOL view of each image (Grill et al. 2020, Table 6, scaled to small crops), batched and
    on the images' device, each image with its own random parameters (torch's RNG):

    random resized crop (area 0.2-1, aspect ratio 3/4-4/3, :func:`torchvision.ops.roi_align`),
    horizontal flip (p = 0.5), colour jitter (p = 0.8: brightness and contrast factors in
    [0.6, 1.4], saturation in [0.8, 1.2] per image, one hue shift in [-0.1, 0.1] per batch),
    greyscale (p = 0.2), Gaussian blur (p = 0.5; kernel about 10 % of the side, one sigma in
    [0.1, 2] per batch), solarisation (p = 0.1).

    Args:
        images: float (N, 3, H, W) in [0, 1].
        size: side of the output.

    Returns:
        float (N, 3, size, size) in [0, 1].
    """
    from torchvision.ops import roi_align
    from torchvision.transforms.v2 import functional as TF

    n, _, h, w = images.shape
    dev = images.device
    area = _uniform(n, 0.2, 1.0, dev) * h * w
    ratio = torch.exp(_uniform(n, math.log(3 / 4), math.log(4 / 3), dev))
    cw = torch.sqrt(area * ratio).clamp(1, w)
    ch = torch.sqrt(area / ratio).clamp(1, h)
    x0 = torch.rand(n, device=dev) * (w - cw)
    y0 = torch.rand(n, device=dev) * (h - ch)
    boxes = torch.stack([torch.arange(n, device=dev, dtype=images.dtype), x0, y0, x0 + cw, y0 + ch], 1)
    x = roi_align(images, boxes, output_size=(size, size), sampling_ratio=2, aligned=True)

    def per_image(p):
        return (torch.rand(n, device=dev) < p).view(n, 1, 1, 1)

    x = torch.where(per_image(0.5), x.flip(-1), x)
    jitter = per_image(0.8)
    grey = TF.rgb_to_grayscale(x)
    mean = grey.mean(dim=(1, 2, 3), keepdim=True)
    y = x * _uniform(n, 0.6, 1.4, dev).view(n, 1, 1, 1)
    c = _uniform(n, 0.6, 1.4, dev).view(n, 1, 1, 1)
    y = (c * y + (1 - c) * mean).clamp(0, 1)
    sat = _uniform(n, 0.8, 1.2, dev).view(n, 1, 1, 1)
    y = (sat * y + (1 - sat) * TF.rgb_to_grayscale(y)).clamp(0, 1)
    y = TF.adjust_hue(y, float(_uniform(1, -0.1, 0.1, "cpu")))
    x = torch.where(jitter, y, x)
    x = torch.where(per_image(0.2), TF.rgb_to_grayscale(x, num_output_channels=3), x)
    kernel = max(3, (size // 10) | 1)
    sigma = float(_uniform(1, 0.1, 2.0, "cpu"))
    x = torch.where(per_image(0.5), TF.gaussian_blur(x, [kernel, kernel], [sigma, sigma]), x)
    return torch.where(per_image(0.1) & (x >= 0.5), 1 - x, x)


def two_views(batch_u8: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Two independent :func:`augment` views of uint8 ``(N, 3, H, W)`` images (on any device),
    ImageNet-normalised: float ``(N, 3, size, size)`` each."""
    x = batch_u8.float() / 255.0
    return normalize01(augment(x, size)), normalize01(augment(x, size))


def normalize01(x: torch.Tensor) -> torch.Tensor:
    """float (N, 3, H, W) in [0, 1] -> ImageNet mean/std normalised."""
    mean = torch.tensor(IMAGENET_MEAN, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std


# ---------------------------------------------------------------------------------- networks


def mlp_head(in_dim: int, hidden_dim: int, out_dim: int) -> nn.Sequential:
    """BYOL's projector/predictor: Linear(in, hidden), BatchNorm1d, ReLU, Linear(hidden, out)."""
    return nn.Sequential(nn.Linear(in_dim, hidden_dim), nn.BatchNorm1d(hidden_dim),
                         nn.ReLU(inplace=True), nn.Linear(hidden_dim, out_dim))


def resnet18_encoder() -> nn.Module:
    """torchvision's ResNet-18 without pretrained weights (``weights=None``), ``fc`` replaced by
    ``nn.Identity``: float ``(N, 3, H, W)`` -> ``(N, 512)`` features (global average pooled, so any
    H, W >= 32 works; the notebook uses 32-64 px crops)."""
    from torchvision.models import resnet18

    net = resnet18(weights=None)
    net.fc = nn.Identity()
    return net


def few_per_class(labels, n_per_class: int | None, seed: int = 0) -> np.ndarray:
    """Indices of at most ``n_per_class`` items of each class of ``labels`` (int ``(N,)``), drawn
    without replacement (``numpy.random.default_rng(seed)``), sorted; ``None`` = all indices."""
    labels = np.asarray(labels)
    if n_per_class is None:
        return np.arange(len(labels))
    rng = np.random.default_rng(seed)
    picked = [rng.permutation(np.flatnonzero(labels == c))[:n_per_class] for c in np.unique(labels)]
    return np.sort(np.concatenate(picked))


def feature_dim(encoder: nn.Module, image_size: int = 32) -> int:
    """Width D of ``encoder``'s ``(N, D)`` output (one forward pass of zeros in eval mode)."""
    was = encoder.training
    encoder.eval()
    try:
        with torch.no_grad():
            p = next(encoder.parameters())
            out = encoder(torch.zeros(2, 3, image_size, image_size, device=p.device, dtype=p.dtype))
    finally:
        encoder.train(was)
    if out.ndim != 2:
        raise ValueError(f"the encoder must return (N, D) features, got shape {tuple(out.shape)}")
    return int(out.shape[1])


class BYOL(nn.Module):
    """Online network (``online.encoder``, ``online.projector``, ``predictor``) and target network
    (``target``: a copy of ``online`` updated only by the EMA, every parameter with
    ``requires_grad=False``). ``online`` and ``target`` have the same structure, so their
    ``parameters()`` pair up in order."""

    def __init__(self, encoder: nn.Module, hidden_dim: int = 512, projection_dim: int = 128,
                 image_size: int = 32):
        super().__init__()
        dim = feature_dim(encoder, image_size)
        self.online = nn.ModuleDict({"encoder": encoder,
                                     "projector": mlp_head(dim, hidden_dim, projection_dim)})
        self.predictor = mlp_head(projection_dim, hidden_dim, projection_dim)
        self.target = copy.deepcopy(self.online)
        for p in self.target.parameters():
            p.requires_grad_(False)

    def online_prediction(self, x: torch.Tensor) -> torch.Tensor:
        """float (N, 3, H, W) -> predictions p (N, projection_dim)."""
        return self.predictor(self.online["projector"](self.online["encoder"](x)))

    @torch.no_grad()
    def target_projection(self, x: torch.Tensor) -> torch.Tensor:
        """float (N, 3, H, W) -> target projections z (N, projection_dim), without gradients."""
        return self.target["projector"](self.target["encoder"](x))


def tau_schedule(base_tau: float, step: int, total: int) -> float:
    """Grill et al.'s cosine schedule: ``1 - (1 - base_tau) * (cos(pi * step / total) + 1) / 2``
    (``base_tau`` at step 0, 1 at the last step)."""
    return 1.0 - (1.0 - base_tau) * (math.cos(math.pi * step / max(total, 1)) + 1.0) / 2.0


def pretrain(encoder: nn.Module, images, config: BYOLConfig, *,
             loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
             ema_fn: Callable[[nn.Module, nn.Module, float], None],
             device=None, progress=True) -> dict:
    """Pre-train ``encoder`` in place with BYOL on unlabelled ``images``.

    Each step: a random batch, two augmented views, online predictions ``p1, p2`` and target
    projections ``z1, z2``; the loss ``loss_fn(p1, z2) + loss_fn(p2, z1)`` (symmetrised, Grill
    et al. Eq. 2) is minimised over the online network (encoder, projector, predictor) with Adam;
    then ``ema_fn(model.target, model.online, tau)`` moves the target towards the online network.

    Args:
        encoder: ``nn.Module`` float ``(N, 3, S, S)`` -> ``(N, D)``; trained in place.
        images: the unlabelled pool (:func:`as_uint8_batch` formats), at least 2 images.
        config: a :class:`BYOLConfig`.
        loss_fn: your ``byol_loss(p, z)``: ``(N, K)``, ``(N, K)`` -> scalar tensor.
        ema_fn: your ``ema_update(target, online, tau)``.
        device: ``None`` = CUDA when available, else CPU.
        progress: show a tqdm bar.

    Returns:
        history dict: ``step``, ``loss`` (the symmetrised loss, in [0, 8]), ``tau``, lists of one
        entry per step; ``seconds`` (wall time); ``model``: the :class:`BYOL` wrapper (on ``device``).

    Raises:
        ValueError: fewer than 2 images, or a loss that is not a finite scalar tensor (names the
            step and what to check in ``byol_loss``).
    """
    import time

    from tqdm.auto import tqdm

    pool = as_uint8_batch(images)
    if len(pool) < 2:
        raise ValueError(f"BYOL needs at least 2 images, got {len(pool)}")
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    torch.manual_seed(config.seed)
    gen = torch.Generator().manual_seed(config.seed)
    pool = pool.to(dev)  # the augmentations run where the network does
    model = BYOL(encoder, config.hidden_dim, config.projection_dim, config.image_size).to(dev)
    params = list(model.online.parameters()) + list(model.predictor.parameters())
    opt = torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    batch = min(config.batch_size, len(pool))
    history = {"step": [], "loss": [], "tau": []}
    start = time.time()
    model.train()
    for step in tqdm(range(config.steps), desc="BYOL", disable=not progress):
        idx = torch.randperm(len(pool), generator=gen)[:batch].to(dev)
        x1, x2 = two_views(pool[idx], config.image_size)
        p1, p2 = model.online_prediction(x1), model.online_prediction(x2)
        z1, z2 = model.target_projection(x1), model.target_projection(x2)
        loss = loss_fn(p1, z2) + loss_fn(p2, z1)
        if not isinstance(loss, torch.Tensor) or loss.ndim != 0 or not torch.isfinite(loss):
            raise ValueError(f"step {step}: byol_loss must return a finite scalar tensor, got "
                             f"{loss!r}: average 2 - 2 cos(p, z) over the batch")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        tau = tau_schedule(config.tau, step, config.steps)
        ema_fn(model.target, model.online, tau)
        history["step"].append(step + 1)
        history["loss"].append(float(loss.detach()))
        history["tau"].append(tau)
    history["seconds"] = time.time() - start
    history["model"] = model
    return history


# ------------------------------------------------------------------------ downstream evaluation


class LinearClassifier(nn.Module):
    """``encoder`` followed by ``head = nn.Linear(D, n_classes)``: float ``(N, 3, S, S)`` ->
    logits ``(N, n_classes)``.

    With ``freeze_backbone`` the encoder's parameters get ``requires_grad=False`` and the encoder
    stays in eval mode even when the classifier is put in train mode, so its BatchNorm statistics
    do not move either: a linear probe of the features. Train it with
    :func:`assignment_lib.transfer.fit_classifier` (which optimises only trainable parameters).
    """

    def __init__(self, encoder: nn.Module, n_classes: int, freeze_backbone: bool = False,
                 image_size: int = 32):
        super().__init__()
        self.encoder = encoder
        self.head = nn.Linear(feature_dim(encoder, image_size), n_classes)
        self.freeze_backbone = freeze_backbone
        for p in encoder.parameters():
            p.requires_grad_(not freeze_backbone)

    def train(self, mode: bool = True):
        super().train(mode)
        if self.freeze_backbone:
            self.encoder.eval()
        return self

    def forward(self, x):
        return self.head(self.encoder(x))


def to_inputs(images, image_size: int) -> torch.Tensor:
    """uint8 images (:func:`as_uint8_batch` formats) -> float32 ``(N, 3, image_size, image_size)``,
    resized (bilinear, antialiased) and ImageNet-normalised: the classifiers' inputs."""
    x = normalize(as_uint8_batch(images))
    if x.shape[-2:] != (image_size, image_size):
        x = F.interpolate(x, size=(image_size, image_size), mode="bilinear", antialias=True,
                          align_corners=False)
    return x

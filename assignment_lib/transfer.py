"""Train and evaluate image classifiers: the one training loop of the transfer-learning notebooks.

Inputs are float32 tensors ``x`` (N, 3, S, S), ImageNet-normalised
(:func:`assignment_lib.facade_parts.to_tensor`), and int64 labels ``y`` (N,) in ``0..n_classes-1``.
The loop optimises only the parameters with ``requires_grad`` (so what you freeze stays frozen),
shuffles with its own seeded generator, flips images horizontally at random, and shows a tqdm bar.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
import torchvision
from torch import nn
from tqdm.auto import tqdm

from assignment_lib.weights import load_vgg16_state_dict


def default_device() -> torch.device:
    """``cuda`` when available, else ``cpu``."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def vgg16_imagenet(weights_path=None, *, state_dict: dict | None = None, download: bool = False) -> nn.Module:
    """torchvision's VGG-16 with ImageNet weights in its 13 convolutions (``model.features``).

    The file is found as :func:`assignment_lib.weights.find_vgg16_weights` says
    (``$VGG16_WEIGHTS`` first, then the torch hub cache). With the course's features-only file the
    ImageNet classifier (``model.classifier``) keeps torchvision's random initialisation; a full
    torchvision file loads it too. Either way the notebooks replace it.

    Args:
        weights_path: a weights file; default: found as above.
        state_dict: VGG-16 weights already loaded (:func:`assignment_lib.weights.load_vgg16_state_dict`);
            used instead of a file when given.
        download: when no file is found, download torchvision's (528 MB, checksum verified) into the
            torch hub cache, as the notebooks do; off by default, so that an offline grader fails
            at once with a message that says how to get the file.

    Raises:
        FileNotFoundError, WeightsError: see :func:`assignment_lib.weights.load_vgg16_state_dict`.
        RuntimeError: ``download=True`` and the download failed.
        ValueError: the weights lack some convolution (named).
    """
    model = torchvision.models.vgg16(weights=None)
    state = state_dict if state_dict is not None else load_vgg16_state_dict(weights_path, download=download)
    missing = model.load_state_dict(state, strict=False).missing_keys
    if any(k.startswith("features.") for k in missing):
        raise ValueError(f"the VGG-16 weights lack convolution weights: {missing[:4]}")
    return model


class TinyVGG(nn.Module):
    """A VGG-shaped toy classifier for fast checks: ``features`` (two 3x3 convolutions with ReLU and
    max pooling), ``avgpool`` (global average pooling), ``classifier`` (Linear, ReLU, Dropout(0.5),
    Linear), and torchvision's VGG ``forward``: classifier(flatten(avgpool(features(x)))).

    Args:
        n_classes: outputs of the last layer.
        width: channels of the first convolution (the second has ``2 * width``).
        hidden: outputs of the classifier's first Linear (the penultimate features).

    Input float (N, 3, H, W) with H, W >= 4; output float (N, n_classes).
    """

    def __init__(self, n_classes: int = 5, width: int = 8, hidden: int = 12):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, width, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Linear(2 * width, hidden), nn.ReLU(inplace=True),
                                        nn.Dropout(0.5), nn.Linear(hidden, n_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


def training_flags(model: nn.Module) -> list[bool]:
    """``module.training`` of ``model`` and each of its sub-modules, in ``model.modules()`` order."""
    return [m.training for m in model.modules()]


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """``(total, trainable)`` numbers of scalar parameters (trainable: ``requires_grad``)."""
    total = sum(p.numel() for p in model.parameters())
    return total, sum(p.numel() for p in model.parameters() if p.requires_grad)


@dataclasses.dataclass
class ClassifierConfig:
    """One classifier training run (:func:`fit_classifier`).

    Attributes:
        epochs: passes over the training set.
        batch_size: images per step.
        lr: learning rate of Adam (or SGD with momentum 0.9).
        weight_decay: L2 penalty of the optimiser.
        optimizer: ``"adam"`` or ``"sgd"``.
        hflip: flip each training image horizontally with probability 1/2.
        seed: seeds the shuffling, the flips and dropout.
    """

    epochs: int = 3
    batch_size: int = 32
    lr: float = 3e-4
    weight_decay: float = 0.0
    optimizer: str = "adam"
    hflip: bool = True
    seed: int = 0

    def __post_init__(self):
        if self.optimizer not in ("adam", "sgd"):
            raise ValueError(f"optimizer must be 'adam' or 'sgd', got {self.optimizer!r}")
        if self.epochs < 1 or self.batch_size < 1 or self.lr <= 0:
            raise ValueError(f"invalid ClassifierConfig {self}: need epochs, batch_size >= 1, lr > 0")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> ClassifierConfig:
        return cls(**d)


def _check_xy(x, y, what: str) -> None:
    if not (isinstance(x, torch.Tensor) and x.ndim == 4 and x.shape[1] == 3 and x.is_floating_point()):
        raise ValueError(f"{what}: images must be a float tensor (N, 3, H, W), got "
                         f"{type(x).__name__} {tuple(getattr(x, 'shape', ()))}")
    if not (isinstance(y, torch.Tensor) and y.shape == (x.shape[0],) and y.dtype == torch.int64):
        raise ValueError(f"{what}: labels must be an int64 tensor ({x.shape[0]},), got "
                         f"{getattr(y, 'dtype', type(y).__name__)} {tuple(getattr(y, 'shape', ()))}")


@torch.no_grad()
def predict_logits(model: nn.Module, x: torch.Tensor, *, device=None, batch_size: int = 128) -> torch.Tensor:
    """Logits float32 (N, C) on the CPU, in eval mode without gradients; the model's train/eval
    mode is restored afterwards."""
    device = torch.device(device) if device is not None else next(model.parameters()).device
    mode_before = model.training
    model.eval()
    try:
        out = [model(x[i:i + batch_size].to(device)).float().cpu() for i in range(0, len(x), batch_size)]
    finally:
        model.train(mode_before)
    return torch.cat(out)


def evaluate_classifier(model: nn.Module, x: torch.Tensor, y: torch.Tensor, n_classes: int, *,
                        device=None, batch_size: int = 128) -> dict:
    """Accuracy of ``model`` on ``(x, y)``.

    Returns:
        ``{"accuracy": float, "per_class_accuracy": list[float] (nan for an absent class),
        "confusion": int64 ndarray (n_classes, n_classes), rows = true class}``.

    Raises:
        ValueError: malformed ``x`` / ``y``.
    """
    _check_xy(x, y, "evaluate_classifier")
    pred = predict_logits(model, x, device=device, batch_size=batch_size).argmax(1)
    confusion = np.bincount(y.numpy() * n_classes + pred.numpy(),
                            minlength=n_classes * n_classes).reshape(n_classes, n_classes)
    per_class = confusion.diagonal() / np.maximum(confusion.sum(1), 1)
    per_class = np.where(confusion.sum(1) > 0, per_class, np.nan)
    return {"accuracy": float((pred == y).float().mean()), "per_class_accuracy": per_class.tolist(),
            "confusion": confusion}


def fit_classifier(model: nn.Module, train: tuple[torch.Tensor, torch.Tensor], config: ClassifierConfig,
                   *, test: tuple[torch.Tensor, torch.Tensor] | None = None, device=None,
                   progress: bool = True,
                   on_epoch_end: Callable[[int, nn.Module], None] | None = None) -> list[dict]:
    """Train ``model`` (in place) with cross-entropy on ``train = (x, y)``.

    Only parameters with ``requires_grad`` are optimised; if there are none this raises (a model
    frozen by mistake). After each epoch ``on_epoch_end(epoch, model)`` is called (epoch from 1),
    e.g. to extract features, then the test accuracy is computed when ``test`` is given.

    Returns:
        one dict per epoch: ``epoch``, ``loss`` (mean training loss), ``train_accuracy`` (on the
        augmented batches, in train mode), ``test_accuracy`` (or None), ``seconds`` (wall time).

    Raises:
        ValueError: malformed data, or no trainable parameter.
    """
    x, y = train
    _check_xy(x, y, "fit_classifier train")
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("the model has no trainable parameter (requires_grad is False everywhere): "
                         "check set_trainable")
    device = torch.device(device) if device is not None else default_device()
    model.to(device)
    if config.optimizer == "adam":
        opt = torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    else:
        opt = torch.optim.SGD(params, lr=config.lr, momentum=0.9, weight_decay=config.weight_decay)
    gen = torch.Generator().manual_seed(config.seed)
    torch.manual_seed(config.seed)  # dropout
    n_classes = None
    history = []
    steps = -(-len(x) // config.batch_size)
    bar = tqdm(total=config.epochs * steps, desc="training", unit="step", disable=not progress)
    for epoch in range(1, config.epochs + 1):
        start = time.time()
        model.train()
        order = torch.randperm(len(x), generator=gen)
        total_loss, correct = 0.0, 0
        for i in range(0, len(x), config.batch_size):
            idx = order[i:i + config.batch_size]
            xb, yb = x[idx], y[idx]
            if config.hflip:
                flip = torch.rand(len(idx), generator=gen) < 0.5
                xb = torch.where(flip.view(-1, 1, 1, 1), xb.flip(-1), xb)
            xb, yb = xb.to(device), yb.to(device)
            logits = model(xb)
            n_classes = int(logits.shape[1])
            loss = F.cross_entropy(logits, yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total_loss += loss.item() * len(idx)
            correct += int((logits.argmax(1) == yb).sum())
            bar.update(1)
        if on_epoch_end is not None:
            on_epoch_end(epoch, model)
        test_acc = None
        if test is not None:
            test_acc = evaluate_classifier(model, *test, n_classes, device=device)["accuracy"]
        history.append({"epoch": epoch, "loss": total_loss / len(x), "train_accuracy": correct / len(x),
                        "test_accuracy": test_acc, "seconds": time.time() - start})
        bar.set_postfix(loss=f"{history[-1]['loss']:.3f}",
                        test=f"{test_acc:.3f}" if test_acc is not None else "-")
    bar.close()
    return history


def probe_predictions(model: nn.Module, train: tuple[torch.Tensor, torch.Tensor], test_images: torch.Tensor,
                      config: ClassifierConfig, *, device=None) -> torch.Tensor:
    """Train ``model`` on ``train`` with :func:`fit_classifier` (no progress bar), then predict the
    class of each test image: the argmax of :func:`predict_logits`.

    The one function behind the transfer_learning probe test: calibration runs it on the reference
    in-process, grading invokes it in the sandbox on the student's model (which sees the test
    images, never their labels; the trusted side scores).

    Args:
        model: a classifier (e.g. VGG-16 after ``replace_head`` and ``set_trainable``); trained in
            place, only its parameters with ``requires_grad``.
        train: ``(x float (N, 3, S, S), y int64 (N,))``.
        test_images: float (M, 3, S, S).
        config: the training run (:class:`ClassifierConfig`; its ``seed`` seeds shuffling, flips, dropout).
        device: default :func:`default_device`.

    Returns:
        int64 (M,) predicted classes, on the CPU.

    Raises:
        ValueError: malformed ``train`` or ``test_images``, or no trainable parameter (see
            :func:`fit_classifier`).
    """
    if isinstance(config, dict):
        config = ClassifierConfig.from_dict(config)
    if not (isinstance(test_images, torch.Tensor) and test_images.ndim == 4 and test_images.shape[1] == 3
            and test_images.is_floating_point()):
        raise ValueError(f"probe_predictions: test images must be a float tensor (M, 3, H, W), got "
                         f"{type(test_images).__name__} {tuple(getattr(test_images, 'shape', ()))}")
    fit_classifier(model, train, config, device=device, progress=False)
    device = torch.device(device) if device is not None else default_device()
    return predict_logits(model, test_images, device=device).argmax(1).to(torch.int64)


def optimizer_step(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, lr: float = 0.1) -> float:
    """One plain SGD step (momentum 0, weight decay 0.01) of cross-entropy over ALL of ``model``'s
    parameters, in train mode: parameters without a gradient (frozen ones) must stay unchanged.

    Returns:
        the loss before the step (float). Used by the graded checks of ``set_trainable``.
    """
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=lr, weight_decay=0.01)
    opt.zero_grad(set_to_none=True)
    loss = F.cross_entropy(model(images), labels)
    loss.backward()
    opt.step()
    return loss.item()


def embed_2d(features, method: str, seed: int = 0) -> np.ndarray:
    """2-D embedding of ``features`` (N, D) with scikit-learn: ``"pca"`` (``PCA(2)``, linear,
    keeps global distances) or ``"tsne"`` (``TSNE(2)``, non-linear, keeps neighbourhoods;
    perplexity ``min(30, (N - 1) / 3)``).

    Returns:
        float (N, 2) ndarray.

    Raises:
        ValueError: unknown method or fewer than 4 points.
    """
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE

    feats = np.asarray(features.detach().cpu() if isinstance(features, torch.Tensor) else features,
                       dtype=np.float64)
    if feats.ndim != 2 or len(feats) < 4:
        raise ValueError(f"need features (N, D) with N >= 4, got shape {feats.shape}")
    if method == "pca":
        return PCA(n_components=2, random_state=seed).fit_transform(feats)
    if method == "tsne":
        perplexity = min(30.0, (len(feats) - 1) / 3)
        return TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(feats)
    raise ValueError(f"method must be 'pca' or 'tsne', got {method!r}")

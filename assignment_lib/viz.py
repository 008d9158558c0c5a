"""Plots for the assignment: colour label maps, sample grids, training curves, confusion matrices,
per-class IoU bars.

Every function builds a :class:`matplotlib.figure.Figure` directly (no pyplot state), so it works
with any backend, including ``Agg`` on a headless machine, and returns it. In a Jupyter notebook it
is also drawn at once, where the cell runs, as a PNG (``show=None``, the default, means "draw it
when running in a notebook"): this does not depend on pyplot's inline backend being active yet,
so figures appear in a fresh Restart & Run All. End the line with ``;`` (or assign the figure)
so that Jupyter does not echo the return value; an unchanged figure is never drawn twice. Elsewhere
save it with ``fig.savefig("out.png")``.

Colours: figures use :data:`FIGURE_PALETTE`, 12 qualitative colours that readers with a colour
vision deficiency can tell apart; the dataset's own palette (:data:`assignment_lib.data.PALETTE`,
three similar blues for background, facade and window) stays for reading and writing label files.
"""

from __future__ import annotations

import dataclasses
import io
from collections.abc import Mapping, Sequence

import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from assignment_lib.data import CLASS_NAMES, IGNORE_INDEX, N_CLASSES

__all__ = [
    "FIGURE_PALETTE",
    "class_legend_handles",
    "colorize",
    "plot_confusion_matrix",
    "plot_history",
    "plot_iou_bars",
    "show_samples",
]

#: Colour of pixels with ``IGNORE_INDEX`` (no label).
IGNORE_COLOR = (0, 0, 0)

#: Figure colours, uint8 (12, 3) RGB, row ``i`` = class index ``i``: M. Krzywinski's 12-colour
#: palette for colour blindness (mk.bcgsc.ca/colorblind), distinct under deuteranopia,
#: protanopia and tritanopia; none is black (``IGNORE_COLOR``). Similar classes (facade / window /
#: door) get far-apart colours.
FIGURE_PALETTE = np.array(
    [
        (0x00, 0x8D, 0xF9),  # background: dodger blue
        (0xFF, 0xC3, 0x3B),  # facade: sunflower
        (0x84, 0x00, 0xCD),  # window: french violet
        (0x00, 0x9F, 0x81),  # door: jeepers creepers
        (0xFF, 0x5A, 0xAF),  # cornice: barbie pink
        (0x00, 0xFC, 0xCF),  # sill: aquamarine
        (0xE2, 0x01, 0x34),  # balcony: red
        (0x00, 0xC2, 0xF9),  # blind: capri
        (0xFF, 0xB2, 0xFD),  # deco: plum
        (0xFF, 0x6E, 0x3A),  # molding: orange
        (0x9F, 0x01, 0x62),  # pillar: jazzberry jam
        (0xA4, 0x01, 0x22),  # shop: carmine
    ],
    dtype=np.uint8,
)
FIGURE_PALETTE.setflags(write=False)


def _in_notebook() -> bool:
    """True inside a Jupyter kernel (an IPython shell with a kernel attached)."""
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - IPython ships with Jupyter
        return False
    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


class NotebookFigure(Figure):
    """A :class:`~matplotlib.figure.Figure` that Jupyter shows as a PNG whatever the backend, and
    never twice in a row unchanged (a figure drawn by a viz function and then echoed as the cell's
    value appears once; after a change, e.g. ``fig.suptitle(...)``, ``display(fig)`` draws it again)."""

    _shown_unchanged = False

    def _ipython_display_(self):
        if self._shown_unchanged and not self.stale:
            return
        from IPython.display import Image, display

        buffer = io.BytesIO()
        self.savefig(buffer, format="png")
        display(Image(data=buffer.getvalue(), format="png"))
        self.stale = False
        self._shown_unchanged = True


def _finish(fig: Figure, show: bool | None) -> Figure:
    """Draw ``fig`` now when ``show`` is True (or None inside a notebook); return it."""
    if show is None:
        show = _in_notebook()
    if show:
        from IPython.display import display

        display(fig)
    return fig


def _to_numpy(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def colorize(target, ignore_index: int = IGNORE_INDEX) -> np.ndarray:
    """Paint a label map with the figure palette (:data:`FIGURE_PALETTE`).

    Args:
        target: integer class indices ``(H, W)`` (numpy array or tensor), values in
            ``0 .. N_CLASSES - 1`` or ``ignore_index``.
        ignore_index: value drawn black (``IGNORE_COLOR``), 255 by default.

    Returns:
        uint8 array ``(H, W, 3)`` (RGB); pixel of class ``c`` gets ``FIGURE_PALETTE[c]``.

    Raises:
        ValueError: ``target`` is not 2-D, not integer, or holds values outside the classes.
    """
    t = _to_numpy(target)
    if t.ndim != 2:
        raise ValueError(f"colorize expects one label map (H, W), got shape {t.shape}")
    if not np.issubdtype(t.dtype, np.integer):
        raise ValueError(f"colorize expects integer class indices, got dtype {t.dtype}; "
                         "for logits take .argmax(0) first")
    ignored = t == ignore_index
    bad = (~ignored) & ((t < 0) | (t >= N_CLASSES))
    if bad.any():
        raise ValueError(f"label map has values {np.unique(t[bad])[:5].tolist()} outside "
                         f"0..{N_CLASSES - 1} and ignore_index={ignore_index}")
    out = FIGURE_PALETTE[np.where(ignored, 0, t)]
    out[ignored] = IGNORE_COLOR
    return out


def class_legend_handles(class_names: Sequence[str] = CLASS_NAMES) -> list[Patch]:
    """One coloured patch per class (``FIGURE_PALETTE`` colours) for ``ax.legend(handles=...)``."""
    return [Patch(facecolor=FIGURE_PALETTE[i] / 255.0, edgecolor="0.3", label=f"{i} {name}")
            for i, name in enumerate(class_names)]


def _as_image(image) -> np.ndarray:
    """uint8 (H, W, 3) from a uint8 (H, W, 3) array or a normalised float (3, H, W) tensor."""
    if isinstance(image, torch.Tensor) and image.is_floating_point() and image.ndim == 3 \
            and image.shape[0] == 3:
        from assignment_lib.transforms import denormalize
        return denormalize(image)
    a = _to_numpy(image)
    if a.ndim == 3 and a.shape[-1] == 3 and a.dtype == np.uint8:
        return a
    raise ValueError(f"image must be uint8 (H, W, 3) or a normalised float tensor (3, H, W), "
                     f"got {a.dtype} {a.shape}")


def _as_label(x) -> np.ndarray:
    a = x.detach().cpu() if isinstance(x, torch.Tensor) else np.asarray(x)
    if a.ndim == 3:  # logits (C, H, W)
        a = a.argmax(0)
    return _to_numpy(a)


def show_samples(images, targets, preds=None, ncols: int | None = None, title: str | None = None,
                 class_names: Sequence[str] = CLASS_NAMES, show: bool | None = None) -> Figure:
    """Grid of samples: photo | ground truth | prediction (when given), with a class legend.

    Args:
        images: sequence (or batch tensor) of photos, each uint8 ``(H, W, 3)`` or a normalised
            float tensor ``(3, H, W)`` (as returned by ``CMPFacade``).
        targets: sequence (or batch) of label maps ``(H, W)`` int, ``IGNORE_INDEX`` drawn black.
        preds: optional predictions, class indices ``(H, W)`` or logits ``(C, H, W)`` per sample.
        ncols: samples per row (each sample takes 2 or 3 panels); default: at most 2 with
            predictions, 3 without, with the rows filled evenly (4 samples -> 2 x 2).
        title: figure title.
        show: draw the figure now (``None``: when running in a notebook).

    Returns:
        the Figure.

    Raises:
        ValueError: the sequences have different lengths or are empty.
    """
    n = len(images)
    if n == 0 or len(targets) != n or (preds is not None and len(preds) != n):
        raise ValueError(f"show_samples needs as many targets (and preds) as images: got "
                         f"{n} images, {len(targets)} targets"
                         + ("" if preds is None else f", {len(preds)} preds"))
    per = 2 if preds is None else 3
    if ncols is None:  # at most 3 (2 with predictions) per row, rows filled evenly
        most = 3 if preds is None else 2
        ncols = -(-n // -(-n // most))
    ncols = max(1, min(n, ncols))
    nrows = -(-n // ncols)
    fig = NotebookFigure(figsize=(2.4 * per * ncols, 3.0 * nrows + 0.9), layout="constrained")
    axes = fig.subplots(nrows, per * ncols, squeeze=False)
    for ax in axes.flat:
        ax.set_axis_off()
    for i in range(n):
        r, c = divmod(i, ncols)
        panels = [(_as_image(images[i]), "image"), (colorize(_as_label(targets[i])), "ground truth")]
        if preds is not None:
            panels.append((colorize(_as_label(preds[i])), "prediction"))
        for j, (pic, label) in enumerate(panels):
            ax = axes[r, c * per + j]
            ax.imshow(pic, interpolation="nearest")
            ax.set_title(label if nrows * ncols == 1 or i < ncols else "", fontsize=9)
    fig.legend(handles=class_legend_handles(class_names), loc="outside lower center",
               ncol=min(6, len(class_names)), fontsize=8, frameon=False)
    if title:
        fig.suptitle(title)
    return _finish(fig, show)


def _history_dict(history) -> dict:
    if isinstance(history, Mapping):
        return dict(history)
    if dataclasses.is_dataclass(history):
        return dataclasses.asdict(history)
    for attr in ("as_dict", "to_dict"):
        if callable(getattr(history, attr, None)):
            return dict(getattr(history, attr)())
    if hasattr(history, "__dict__"):
        return dict(vars(history))
    raise TypeError(f"history must be a dict of lists (or a History object), "
                    f"got {type(history).__name__}")


def plot_history(history, title: str | None = None, show: bool | None = None) -> Figure:
    """Loss curves (left) and metric curves (right) over epochs.

    Args:
        history: dict of equal-length lists, e.g. ``{"epoch": [1, 2], "train_loss": [...],
            "val_loss": [...], "val_mean_iou": [...], "val_pixel_accuracy": [...]}`` (or an
            object with such attributes, e.g. ``train.History``). Keys holding ``loss`` go left,
            keys holding ``iou`` or ``acc`` go right; other keys and empty lists are ignored;
            without ``epoch`` the x axis counts 1, 2, ... A panel with nothing to draw says so.
        title: figure title (e.g. the run's name).

    Returns:
        the Figure.
    """
    h = _history_dict(history)
    series = {k: list(v) for k, v in h.items()
              if k != "epoch" and isinstance(v, (list, tuple, np.ndarray)) and len(v) > 0}
    epochs = list(h.get("epoch") or [])
    fig = NotebookFigure(figsize=(10, 3.6), layout="constrained")
    ax_loss, ax_metric = fig.subplots(1, 2)
    for ax, keep, ylabel in ((ax_loss, lambda k: "loss" in k, "loss"),
                             (ax_metric, lambda k: "iou" in k or "acc" in k, "score")):
        drawn = 0
        for key, values in series.items():
            if not keep(key):
                continue
            x = epochs if len(epochs) == len(values) else list(range(1, len(values) + 1))
            ax.plot(x, values, marker="o" if len(values) < 30 else None, ms=3, label=key)
            drawn += 1
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        if drawn:
            ax.legend(fontsize=8)
        else:
            ax.text(0.5, 0.5, f"no {ylabel} recorded", ha="center", va="center",
                    transform=ax.transAxes, color="0.5")
    ax_metric.set_ylim(0, 1)
    if title:
        fig.suptitle(title)
    return _finish(fig, show)


def plot_confusion_matrix(cm, class_names: Sequence[str] = CLASS_NAMES, normalize: bool = True,
                          show: bool | None = None) -> Figure:
    """Heat map of a confusion matrix (rows = ground truth, columns = prediction).

    Args:
        cm: ``(n_classes, n_classes)`` pixel counts (``metrics.confusion_matrix``).
        class_names: axis labels, one per class.
        normalize: divide each row by its sum, so row ``i`` shows where the pixels of class ``i``
            went and the diagonal is the per-class accuracy; rows of classes absent from the
            ground truth stay empty.

    Returns:
        the Figure.

    Raises:
        ValueError: ``cm`` is not square or does not match ``class_names``.
    """
    m = _to_numpy(cm).astype(np.float64)
    if m.ndim != 2 or m.shape[0] != m.shape[1] or m.shape[0] != len(class_names):
        raise ValueError(f"confusion matrix shape {m.shape} does not match "
                         f"{len(class_names)} class names")
    if normalize:
        rows = m.sum(1, keepdims=True)
        with np.errstate(invalid="ignore", divide="ignore"):
            m = np.where(rows > 0, m / rows, np.nan)
    n = m.shape[0]
    fig = NotebookFigure(figsize=(1.0 + 0.55 * n, 0.6 + 0.5 * n), layout="constrained")
    ax = fig.subplots()
    im = ax.imshow(m, cmap="Blues", vmin=0, vmax=1 if normalize else None)
    fig.colorbar(im, ax=ax, shrink=0.8, label="fraction of the row" if normalize else "pixels")
    ax.set_xticks(range(n), class_names, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(n), class_names, fontsize=8)
    ax.set_xlabel("prediction")
    ax.set_ylabel("ground truth")
    if n <= 15:
        top = np.nanmax(m) if np.isfinite(m).any() else 1
        for i in range(n):
            for j in range(n):
                if np.isfinite(m[i, j]):
                    text = f"{m[i, j]:.2f}" if normalize else f"{m[i, j]:.0f}"
                    ax.text(j, i, text, ha="center", va="center", fontsize=6,
                            color="white" if m[i, j] > 0.6 * top else "black")
    return _finish(fig, show)


def plot_iou_bars(iou, class_names: Sequence[str] = CLASS_NAMES, show: bool | None = None) -> Figure:
    """Bar chart of the IoU of each class, in the class colours, with the mean IoU as a line.

    Args:
        iou: ``(n_classes,)`` values in [0, 1] or NaN (``metrics.iou_per_class``); NaN classes
            (absent from prediction and ground truth) are marked "n/a" and left out of the mean.
        class_names: one label per class.

    Returns:
        the Figure.
    """
    v = _to_numpy(iou).astype(np.float64).reshape(-1)
    if len(v) != len(class_names):
        raise ValueError(f"got {len(v)} IoU values for {len(class_names)} class names")
    fig = NotebookFigure(figsize=(1.0 + 0.6 * len(v), 3.6), layout="constrained")
    ax = fig.subplots()
    colors = [FIGURE_PALETTE[i % len(FIGURE_PALETTE)] / 255.0 for i in range(len(v))]
    ax.bar(range(len(v)), np.nan_to_num(v), color=colors, edgecolor="0.3")
    for i, x in enumerate(v):
        ax.text(i, (0 if np.isnan(x) else x) + 0.01, "n/a" if np.isnan(x) else f"{x:.2f}",
                ha="center", va="bottom", fontsize=7)
    if np.isfinite(v).any():
        mean = float(np.nanmean(v))
        ax.axhline(mean, color="k", ls="--", lw=1, label=f"mean IoU {mean:.3f}")
        ax.legend(fontsize=8, loc="upper right")
    ax.set_xticks(range(len(v)), class_names, rotation=45, ha="right", fontsize=8)
    ax.set_ylim(0, 1.08)
    ax.set_ylabel("IoU")
    return _finish(fig, show)

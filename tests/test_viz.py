"""Tests of assignment_lib.viz: exact colours, and every plot renders to a real PNG with Agg."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest
import torch
from PIL import Image

from assignment_lib import viz
from assignment_lib.data import CLASS_NAMES, IGNORE_INDEX, N_CLASSES, PALETTE
from assignment_lib.transforms import IMAGENET_MEAN, IMAGENET_STD
from assignment_lib.viz import FIGURE_PALETTE


def render(fig, path):
    fig.savefig(path, dpi=60)
    assert path.is_file() and path.stat().st_size > 5_000
    return np.asarray(Image.open(path).convert("RGB"))


def has_colour(pixels: np.ndarray, rgb) -> bool:
    return bool((pixels == np.asarray(rgb, dtype=np.uint8)).all(-1).any())


def blocks(h=48, w=64, classes=(2, 5, 11)):
    t = np.zeros((h, w), dtype=np.int64)
    for k, c in enumerate(classes):
        t[:, k * w // len(classes):(k + 1) * w // len(classes)] = c
    return t


def test_colorize_exact_colours():
    t = np.arange(N_CLASSES, dtype=np.int64).reshape(3, 4)
    t[0, 0] = IGNORE_INDEX
    rgb = viz.colorize(t)
    assert rgb.dtype == np.uint8 and rgb.shape == (3, 4, 3)
    for c in range(1, N_CLASSES):
        np.testing.assert_array_equal(rgb.reshape(-1, 3)[c], FIGURE_PALETTE[c])
    np.testing.assert_array_equal(rgb[0, 0], [0, 0, 0])
    np.testing.assert_array_equal(viz.colorize(torch.from_numpy(t)), rgb)  # tensors work too


def test_colorize_rejects_bad_labels():
    with pytest.raises(ValueError, match=r"values \[12\]"):
        viz.colorize(np.array([[0, 12]]))
    with pytest.raises(ValueError, match="integer"):
        viz.colorize(np.zeros((2, 2), dtype=np.float32))
    with pytest.raises(ValueError, match=r"\(H, W\)"):
        viz.colorize(np.zeros((1, 2, 2), dtype=np.int64))


def test_legend_handles():
    handles = viz.class_legend_handles()
    assert [h.get_label() for h in handles] == [f"{i} {n}" for i, n in enumerate(CLASS_NAMES)]
    np.testing.assert_allclose(handles[3].get_facecolor()[:3], FIGURE_PALETTE[3] / 255.0)


def test_show_samples_renders_palette_colours(tmp_path):
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (48, 64, 3), dtype=np.uint8) for _ in range(3)]
    targets = [blocks() for _ in range(3)]
    preds = [blocks(classes=(4, 5, 7)) for _ in range(3)]
    pixels = render(viz.show_samples(images, targets, preds, ncols=2, title="t"),
                    tmp_path / "samples.png")
    for c in (2, 5, 11, 4, 7):  # big blocks keep their exact palette colour in the PNG
        assert has_colour(pixels, FIGURE_PALETTE[c]), c


def test_show_samples_accepts_normalised_tensors_and_logits(tmp_path):
    target = torch.from_numpy(blocks(classes=(1, 8)))
    rgb = torch.full((3, 48, 64), 0.5)
    image = (rgb - torch.tensor(IMAGENET_MEAN).view(3, 1, 1)) / torch.tensor(IMAGENET_STD).view(3, 1, 1)
    logits = torch.nn.functional.one_hot(target, N_CLASSES).permute(2, 0, 1).float()
    pixels = render(viz.show_samples(image[None], target[None], logits[None]),
                    tmp_path / "one.png")
    assert has_colour(pixels, FIGURE_PALETTE[8]) and has_colour(pixels, FIGURE_PALETTE[1])
    assert has_colour(pixels, (128, 128, 128))  # the denormalised grey photo


def test_show_samples_length_mismatch():
    with pytest.raises(ValueError, match="2 images, 1 targets"):
        viz.show_samples([np.zeros((4, 4, 3), np.uint8)] * 2, [np.zeros((4, 4), np.int64)])


def test_plot_history_with_and_without_keys(tmp_path):
    history = {"epoch": [1, 2, 3], "train_loss": [2.0, 1.5, 1.2], "val_loss": [2.1, 1.7, 1.4],
               "val_mean_iou": [0.1, 0.2, 0.3], "lr": [0.1, 0.1, 0.1]}
    fig = viz.plot_history(history)
    ax_loss, ax_metric = fig.axes[:2]
    assert [line.get_label() for line in ax_loss.lines] == ["train_loss", "val_loss"]
    assert [line.get_label() for line in ax_metric.lines] == ["val_mean_iou"]
    np.testing.assert_array_equal(ax_metric.lines[0].get_xdata(), [1, 2, 3])
    render(fig, tmp_path / "history.png")
    fig = viz.plot_history({"train_loss": [3.0, 2.0]})  # no epoch, no metric
    np.testing.assert_array_equal(fig.axes[0].lines[0].get_xdata(), [1, 2])
    assert "no score recorded" in [t.get_text() for t in fig.axes[1].texts]
    render(fig, tmp_path / "history2.png")


def test_plot_confusion_matrix(tmp_path):
    cm = torch.zeros(N_CLASSES, N_CLASSES, dtype=torch.int64)
    cm[0, 0], cm[0, 1], cm[1, 1] = 30, 10, 5
    fig = viz.plot_confusion_matrix(cm)
    shown = fig.axes[0].images[0].get_array()
    assert shown[0, 0] == pytest.approx(0.75) and shown[0, 1] == pytest.approx(0.25)
    assert np.ma.is_masked(shown[2, 2]) or np.isnan(shown[2, 2])  # class 2 absent: empty row
    render(fig, tmp_path / "cm.png")
    raw = viz.plot_confusion_matrix(cm, normalize=False)
    assert raw.axes[0].images[0].get_array()[0, 0] == 30
    with pytest.raises(ValueError, match="does not match"):
        viz.plot_confusion_matrix(cm[:3, :3])


def test_plot_iou_bars(tmp_path):
    iou = np.linspace(0.1, 0.9, N_CLASSES)
    iou[4] = np.nan
    fig = viz.plot_iou_bars(torch.from_numpy(iou))
    ax = fig.axes[0]
    heights = [p.get_height() for p in ax.patches]
    np.testing.assert_allclose(heights, np.nan_to_num(iou))
    assert "n/a" in [t.get_text() for t in ax.texts]
    assert ax.get_legend().get_texts()[0].get_text() == f"mean IoU {np.nanmean(iou):.3f}"
    pixels = render(fig, tmp_path / "iou.png")
    assert has_colour(pixels, FIGURE_PALETTE[11])


def test_figure_palette_is_distinct_and_the_files_keep_the_dataset_palette():
    """Figures use 12 well-separated colours (none black, which marks ignored pixels); the
    dataset palette (label files) is untouched and differs (its three similar blues)."""
    assert FIGURE_PALETTE.shape == (12, 3) and FIGURE_PALETTE.dtype == np.uint8
    colours = FIGURE_PALETTE.astype(float)
    gaps = [np.abs(colours[i] - colours[j]).sum() for i in range(12) for j in range(i + 1, 12)]
    assert min(gaps) >= 50, min(gaps)
    assert not (FIGURE_PALETTE == 0).all(1).any()
    assert not np.array_equal(FIGURE_PALETTE, PALETTE)
    assert tuple(PALETTE[0]) == (0, 0, 170)  # data.PALETTE: the label PNGs' own colours


def _notebook_shell(monkeypatch, shown):
    """Pretend to run inside a Jupyter kernel whose display() records what it shows."""
    import IPython
    import IPython.display

    class Shell:
        kernel = object()

    monkeypatch.setattr(IPython, "get_ipython", lambda: Shell())
    monkeypatch.setattr(IPython.display, "display",
                        lambda *objs, **kw: [o._ipython_display_() if hasattr(o, "_ipython_display_")
                                             else shown.append(o) for o in objs])


def test_figures_are_drawn_where_made_in_a_notebook_once(monkeypatch):
    """In a kernel every viz function shows its figure at once as a PNG (whatever the pyplot
    backend), an unchanged figure is not shown twice, a changed one is shown again."""
    import IPython.display

    shown = []
    _notebook_shell(monkeypatch, shown)
    fig = viz.plot_history({"train_loss": [2.0, 1.0]}, title="run")
    assert len(shown) == 1 and isinstance(shown[0], IPython.display.Image)
    assert shown[0].data[:8] == b"\x89PNG\r\n\x1a\n"
    fig._ipython_display_()           # echoed as the cell's value: not drawn again
    assert len(shown) == 1
    fig.suptitle("changed")
    fig._ipython_display_()
    assert len(shown) == 2
    viz.show_samples([np.zeros((8, 8, 3), np.uint8)], [np.zeros((8, 8), np.int64)], show=False)
    assert len(shown) == 2            # show=False: not drawn

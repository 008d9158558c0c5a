"""The data-and-metrics tour: what is in CMP Facade, and what the metrics say about a dumb model.

Run ``python -m assignment_lib.tour [--root DIR] [--out samples.png]``. It

1. finds the data (:func:`assignment_lib.data.find_data_root`),
2. prints the share of pixels of each class in each split (the classes are very unbalanced:
   ``facade`` and ``window`` cover most pixels, ``door``/``pillar``/``sill`` very few),
3. writes a picture of a few training samples with their colour legend,
4. scores trivial predictors on the validation split with the FCN metrics (Long et al. 2015,
   Sec. 5): "always facade" gets a respectable pixel accuracy but a poor mean IoU. That is why
   the assignment reports mean IoU.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from assignment_lib.data import CLASS_NAMES, IGNORE_INDEX, N_CLASSES, find_data_root, load_split
from assignment_lib.metrics import SegmentationMetrics

SPLITS = ("train", "val", "test")


def class_pixel_counts(pairs) -> np.ndarray:
    """Pixels per class over ``[(image, target), ...]``: int64 array ``(N_CLASSES,)``;
    ``IGNORE_INDEX`` pixels are not counted."""
    counts = np.zeros(N_CLASSES, dtype=np.int64)
    for _, target in pairs:
        t = np.asarray(target).ravel()
        counts += np.bincount(t[t != IGNORE_INDEX], minlength=N_CLASSES)[:N_CLASSES]
    return counts


def format_class_table(counts: dict[str, np.ndarray], n_images: dict[str, int]) -> str:
    """Text table: one row per class, one column per split, in percent of the split's pixels."""
    splits = list(counts)
    lines = [f"{'class':<14}" + "".join(f"{s:>10}" for s in splits)]
    for c, name in enumerate(CLASS_NAMES):
        cells = ""
        for s in splits:
            total = counts[s].sum()
            cells += f"{100 * counts[s][c] / total:>9.2f}%" if total else f"{'-':>10}"
        lines.append(f"{c:>2} {name:<11}" + cells)
    lines.append(f"{'images':<14}" + "".join(f"{n_images[s]:>10d}" for s in splits))
    lines.append(f"{'Mpixels':<14}" + "".join(f"{counts[s].sum() / 1e6:>10.2f}" for s in splits))
    return "\n".join(lines)


def score_constant(pairs, cls: int) -> dict:
    """Metrics of the predictor that answers class ``cls`` everywhere, over ``pairs``."""
    m = SegmentationMetrics(N_CLASSES, ignore_index=IGNORE_INDEX)
    for _, target in pairs:
        t = torch.as_tensor(np.asarray(target, dtype=np.int64))[None]
        m.update(torch.full_like(t, cls), t)
    return m.compute()


def score_random(pairs, prior: np.ndarray, seed: int = 0) -> dict:
    """Metrics of a predictor that draws each pixel's class at random with probabilities
    ``prior`` (e.g. the training class frequencies), ignoring the image."""
    g = torch.Generator().manual_seed(seed)
    p = torch.as_tensor(prior, dtype=torch.float64)
    m = SegmentationMetrics(N_CLASSES, ignore_index=IGNORE_INDEX)
    for _, target in pairs:
        t = torch.as_tensor(np.asarray(target, dtype=np.int64))[None]
        pred = torch.multinomial(p, t.numel(), replacement=True, generator=g).view_as(t)
        m.update(pred, t)
    return m.compute()


def _row(name: str, scores: dict) -> str:
    return (f"{name:<38}{scores['pixel_accuracy']:>9.3f}{scores['mean_pixel_accuracy']:>9.3f}"
            f"{scores['mean_iou']:>9.3f}{scores['frequency_weighted_iou']:>9.3f}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m assignment_lib.tour", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", help="CMP Facade folder (default: see data.find_data_root)")
    parser.add_argument("--out", default="samples.png", help="picture of samples (PNG)")
    parser.add_argument("--n-samples", type=int, default=4, help="samples in the picture")
    parser.add_argument("--max-side", type=int, default=None,
                        help="shrink images so the longer side is at most this (faster)")
    args = parser.parse_args(argv)

    root = find_data_root(args.root)
    print(f"CMP Facade data: {root}")
    data = {s: load_split(s, root, max_side=args.max_side) for s in SPLITS}

    print("\nShare of labelled pixels per class and split")
    counts = {s: class_pixel_counts(pairs) for s, pairs in data.items()}
    print(format_class_table(counts, {s: len(p) for s, p in data.items()}))

    import matplotlib
    matplotlib.use("Agg")  # a script writes files; no window
    from assignment_lib.viz import show_samples

    shown = data["train"][: args.n_samples]
    fig = show_samples([im for im, _ in shown], [t for _, t in shown],
                       title=f"CMP Facade, first {len(shown)} training images")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    print(f"\nWrote {out} ({len(shown)} samples with the class colour legend)")

    val = data["val"]
    facade = CLASS_NAMES.index("facade")
    prior = counts["train"] / max(1, counts["train"].sum())
    print("\nTrivial predictors on the validation split (Long et al. 2015, Sec. 5 metrics)")
    print(f"{'predictor':<38}{'pix acc':>9}{'mean acc':>9}{'mIoU':>9}{'fwIoU':>9}")
    print(_row('"always facade"', score_constant(val, facade)))
    print(_row("random with train class frequencies", score_random(val, prior)))
    print("\nPixel accuracy rewards predicting the big classes; mean IoU weighs every class")
    print("equally, so a model has to find doors, sills and pillars too to score well.")
    return 0


if __name__ == "__main__":
    sys.exit(main())

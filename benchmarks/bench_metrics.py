"""Confusion-matrix throughput: assignment_lib.metrics.confusion_matrix vs. the numpy formulation of
the course handout / FCN score.py (``np.bincount(n * gt[mask] + pred[mask], minlength=n**2)``).

Prints Mpixel/s (best and median of several repetitions) for both and their ratio, on a batch of
8 x 512 x 512 pixels, 12 classes, 5 % ignored pixels. Both start from class indices already in
memory (ours from int64 torch tensors, numpy from int64 arrays) and both skip ignored pixels.

    python benchmarks/bench_metrics.py [--batch 8] [--size 512] [--repeats 15] [--device cpu|cuda]
        [--threads N]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing
from assignment_lib.metrics import confusion_matrix

N_CLASSES = 12
IGNORE = 255


def numpy_hist(gt: np.ndarray, pred: np.ndarray, n: int) -> np.ndarray:
    mask = (gt >= 0) & (gt < n)
    return np.bincount(n * gt[mask] + pred[mask], minlength=n ** 2).reshape(n, n)


def timeit(fn, repeats: int, sync=lambda: None) -> list[float]:
    fn()  # warm-up
    sync()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return times


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--repeats", type=int, default=15)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (CPU)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    g = torch.Generator().manual_seed(0)
    shape = (args.batch, args.size, args.size)
    target = torch.randint(0, N_CLASSES, shape, generator=g)
    target[torch.rand(shape, generator=g) < 0.05] = IGNORE
    pred = torch.randint(0, N_CLASSES, shape, generator=g)
    gt_np, pred_np = target.numpy().copy(), pred.numpy().copy()
    n_pix = target.numel()

    dev = torch.device(args.device)
    t_dev, p_dev = target.to(dev), pred.to(dev)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)

    ours_cm = confusion_matrix(p_dev, t_dev, N_CLASSES, ignore_index=IGNORE).cpu().numpy()
    assert np.array_equal(ours_cm, numpy_hist(gt_np, pred_np, N_CLASSES)), "results differ"

    ours = timeit(lambda: confusion_matrix(p_dev, t_dev, N_CLASSES, ignore_index=IGNORE),
                  args.repeats, sync)
    ref = timeit(lambda: numpy_hist(gt_np, pred_np, N_CLASSES), args.repeats)

    def mpix(ts):
        return n_pix / min(ts) / 1e6, n_pix / statistics.median(ts) / 1e6

    (ob, om), (nb, nm) = mpix(ours), mpix(ref)
    print(f"confusion matrix, {args.batch} x {args.size} x {args.size} = {n_pix / 1e6:.2f} Mpixel, "
          f"{N_CLASSES} classes, {args.repeats} repeats, torch threads {torch.get_num_threads()}")
    print(f"{'implementation':<34}{'best Mpx/s':>12}{'median Mpx/s':>14}")
    print(f"{'ours: confusion_matrix on ' + str(dev):<34}{ob:>12.1f}{om:>14.1f}")
    print(f"{'numpy handout (np.bincount)':<34}{nb:>12.1f}{nm:>14.1f}")
    print(f"ratio ours / numpy: best {ob / nb:.2f}x, median {om / nm:.2f}x")


if __name__ == "__main__":
    main()

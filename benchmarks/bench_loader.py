"""Images per second when iterating a CMP Facade split: decode every time vs the decode-once cache.

Usage: ``python benchmarks/bench_loader.py [--root DIR] [--split train] [--max-side 512] [--epochs 3]``

Both runs use ``CMPFacade`` with ``eval_transforms()`` (to float32 + ImageNet normalisation), one
process, no DataLoader workers. "uncached" = ``CMPFacade(..., cache=False)``, which decodes the JPEG
and PNG (and resizes to ``--max-side``) on every access; "cached" = the default ``CMPFacade``, whose
arrays come from ``load_split`` (decoded once, kept in memory and in ``$FCN_KIT_CACHE``). The
benchmark uses a fresh temporary cache folder, so the one-off cost of filling it is printed too.
Epochs of the two datasets alternate and the fastest epoch of each is reported, which damps the
noise of other processes sharing the CPU.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing


def epoch_seconds(dataset) -> float:
    start = time.perf_counter()
    for i in range(len(dataset)):
        dataset[i]
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default=None, help="data root (default: assignment_lib.data.find_data_root())")
    parser.add_argument("--split", default="train")
    parser.add_argument("--max-side", type=int, default=512, help="0 = native resolution")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per variant (best one reported)")
    args = parser.parse_args()
    max_side = args.max_side or None

    with tempfile.TemporaryDirectory() as cache:
        os.environ["FCN_KIT_CACHE"] = cache
        import torch

        from assignment_lib import data, dataset

        torch.set_num_threads(1)
        root = data.find_data_root(args.root)
        print(f"data root {root}, split {args.split}, max_side {max_side}, {args.epochs} epoch(s) each, 1 thread")

        start = time.perf_counter()
        cached = dataset.CMPFacade(args.split, root=root, max_side=max_side)
        print(f"filling the cache (decode once + write .npz): {time.perf_counter() - start:6.2f} s")
        data.clear_memory_cache()
        start = time.perf_counter()
        cached = dataset.CMPFacade(args.split, root=root, max_side=max_side)
        print(f"loading from the disk cache (a new process):   {time.perf_counter() - start:6.2f} s")
        uncached = dataset.CMPFacade(args.split, root=root, max_side=max_side, cache=False)

        best = {"uncached": float("inf"), "cached": float("inf")}
        for _ in range(args.epochs):
            best["uncached"] = min(best["uncached"], epoch_seconds(uncached))
            best["cached"] = min(best["cached"], epoch_seconds(cached))
        n = len(cached)
        rate = {k: n / v for k, v in best.items()}
        print(f"uncached (decode every access): {rate['uncached']:8.1f} images/s  ({n} images, best epoch)")
        print(f"cached (decode-once):           {rate['cached']:8.1f} images/s")
        print(f"speed-up cached / uncached:     {rate['cached'] / rate['uncached']:8.2f} x")


if __name__ == "__main__":
    main()

"""Images per second when iterating a CMP Facade split: decode every time vs the decode-once cache.

Usage: ``python benchmarks/bench_loader.py [--root DIR] [--split train] [--max-side 512] [--epochs 2]``

Both runs use ``CMPFacade`` with ``eval_transforms()`` (to float32 + ImageNet normalisation), one
process, no DataLoader workers. "uncached" = ``CMPFacade(..., cache=False)``, which decodes the JPEG
and PNG (and resizes to ``--max-side``) on every access; "cached" = the default ``CMPFacade``, whose
arrays come from ``load_split`` (decoded once, kept in memory and in ``$FCN_KIT_CACHE``). The
benchmark uses a fresh temporary cache folder, so the one-off cost of filling it is printed too.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing


def epoch_rate(dataset, epochs: int) -> float:
    start = time.perf_counter()
    for _ in range(epochs):
        for i in range(len(dataset)):
            dataset[i]
    return epochs * len(dataset) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default=None, help="data root (default: assignment_lib.data.find_data_root())")
    parser.add_argument("--split", default="train")
    parser.add_argument("--max-side", type=int, default=512, help="0 = native resolution")
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args()
    max_side = args.max_side or None

    with tempfile.TemporaryDirectory() as cache:
        os.environ["FCN_KIT_CACHE"] = cache
        import torch

        from assignment_lib import data

        torch.set_num_threads(1)
        root = data.find_data_root(args.root)
        print(f"data root {root}, split {args.split}, max_side {max_side}, {args.epochs} epoch(s), 1 thread")

        uncached = data.CMPFacade(args.split, root=root, max_side=max_side, cache=False)
        rate_uncached = epoch_rate(uncached, args.epochs)
        print(f"uncached (decode every access): {rate_uncached:8.1f} images/s  ({len(uncached)} images)")

        start = time.perf_counter()
        cached = data.CMPFacade(args.split, root=root, max_side=max_side)
        fill = time.perf_counter() - start
        print(f"filling the cache (decode once + write .npz): {fill:.2f} s")
        data.clear_memory_cache()
        start = time.perf_counter()
        data.load_split(args.split, root=root, max_side=max_side)
        print(f"reloading from the disk cache (new process case): {time.perf_counter() - start:.2f} s")

        rate_cached = epoch_rate(cached, args.epochs)
        print(f"cached (decode-once):           {rate_cached:8.1f} images/s")
        print(f"speed-up cached / uncached:     {rate_cached / rate_uncached:8.2f} x")


if __name__ == "__main__":
    main()

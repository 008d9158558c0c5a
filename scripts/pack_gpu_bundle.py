"""Pack what a GPU machine needs for calibration and the training benchmark, within 64 MiB.

A lent GPU machine gets only the repository (64 MiB per call) and has no network and no
``../shared``. This writes, into an ignored folder of the repository:

- ``cmp_facade/``: every pair of the base set shrunk so its longer side is at most ``--max-side``
  (default 512, the GPU recipe's resolution; photo re-encoded as JPEG quality 90, label NEAREST),
  in the original layout, so ``CMP_FACADE_ROOT`` can point at it;
- ``vgg16_features_fp16.pth``: the features-only VGG-16 state dict in float16 (half the bytes;
  ``copy_vgg16_weights`` casts back to the model's float32), for ``VGG16_WEIGHTS``.

Thresholds calibrated on this copy differ from ones on the original JPEGs only by the
re-encoding; recalibrate on the grading machine's own data where it has them.

Usage::

    echo /.device_bundle/ >> .git/info/exclude
    python scripts/pack_gpu_bundle.py [--data DIR] [--weights FILE] [--out .device_bundle]

then, on the GPU machine (the bundle named in ``carry``)::

    export PYTHONPATH=$PWD CMP_FACADE_ROOT=$PWD/.device_bundle/cmp_facade \\
           VGG16_WEIGHTS=$PWD/.device_bundle/vgg16_features_fp16.pth
    python -m autograder calibrate --tier gpu --seeds 0 1 2
    python benchmarks/bench_train.py --device cuda
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "datasets"))
sys.path.insert(0, str(REPO))
from make_sample import shrink_copy

from assignment_lib.data import find_data_root
from assignment_lib.weights import load_vgg16_state_dict

LIMIT = 60 * 2**20  # leave room for the repository itself under the 64 MiB a call carries


def folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=None, help="CMP Facade base set (default: the usual search)")
    p.add_argument("--weights", type=Path, default=None, help="VGG-16 state dict (default: VGG16_WEIGHTS, ...)")
    p.add_argument("--out", type=Path, default=REPO / ".device_bundle")
    p.add_argument("--max-side", type=int, default=512)
    args = p.parse_args(argv)

    src = find_data_root(args.data)
    ids = sorted(f.stem for f in (src / "base").glob("*.jpg"))
    if len(ids) != 378:
        print(f"note: {src} holds {len(ids)} images, not the 378 of the full base set", file=sys.stderr)
    shutil.rmtree(args.out, ignore_errors=True)
    shrink_copy(src, args.out / "cmp_facade", ids, max_side=args.max_side, xml=False)
    if (src / "splits").is_dir():  # a partial set (the sample) carries its own split lists
        shutil.copytree(src / "splits", args.out / "cmp_facade" / "splits")

    state = load_vgg16_state_dict(args.weights)
    half = {k: v for k, v in state.items() if k.startswith("features.")}
    torch.save({k: v.to(torch.float16) for k, v in half.items()}, args.out / "vgg16_features_fp16.pth")

    size = folder_bytes(args.out)
    print(f"{args.out}: {len(ids)} pairs at max side {args.max_side}, {len(half)} weight tensors "
          f"(float16); {size / 2**20:.1f} MiB")
    if size > LIMIT:
        print(f"too large to carry: over {LIMIT / 2**20:.0f} MiB; lower --max-side", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

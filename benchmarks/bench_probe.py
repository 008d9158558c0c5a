"""Choose the transfer_learning linear-probe setting: accuracy gap against known-wrong models, and cost.

For each candidate setting (crop size, training crops per class, epochs; 300 class-balanced eval
crops of the TEST facades) and each torch thread count, prints: the reference's accuracy over
seeds (ImageNet VGG-16 convolutions frozen, the notebook's ``replace_head`` and ``set_trainable``),
the known-wrong random-init encoder (the same, the ImageNet weights never loaded), the constant
predictor, the gap ``ref min - 0.01 - max(wrong, constant)`` and seconds per run
(:func:`autograder.probe.run_probe`: model build + training + prediction; data loading excluded).
The sandbox runs with one thread by default, so ``threads=1`` is the figure that bounds grading.

    python benchmarks/bench_probe.py                                   # the default grid
    python benchmarks/bench_probe.py --sizes 32 --per-class 20 --epochs 3 --threads 1 --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from assignment_lib.transfer import ClassifierConfig
from assignment_lib.weights import load_vgg16_state_dict
from autograder.assignment import get_assignment
from autograder.probe import PartsSpec, constant_accuracy, load_probe_data, run_probe
from autograder.reference import load_reference


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[32, 48, 64])
    ap.add_argument("--per-class", type=int, nargs="+", default=[20, 40])
    ap.add_argument("--epochs", type=int, nargs="+", default=[2, 3])
    ap.add_argument("--n-eval", type=int, default=300)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--wrong-seeds", type=int, nargs="+", default=None,
                    help="seeds of the random-init runs (default: --seeds)")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--data-root", default=None)
    args = ap.parse_args(argv)

    ref = load_reference(get_assignment("transfer_learning"))
    vgg = load_vgg16_state_dict()
    print(f"torch {torch.__version__}; lr {args.lr}, batch {args.batch_size}, adam, hflip; "
          f"seeds {args.seeds}; eval {args.n_eval} test crops (balanced)")
    header = (f"{'size':>4} {'n/cls':>5} {'ep':>2} {'thr':>3} | {'ref accuracy per seed':<22} {'min':>5} | "
              f"{'rand-init':<17} {'max':>5} | {'const':>5} | {'gap':>6} | {'s/run':>5}")
    print(header)
    print("-" * len(header))
    for size, per_class in itertools.product(args.sizes, args.per_class):
        spec = PartsSpec(size=size, n_train_per_class=per_class, n_eval=args.n_eval)
        data = load_probe_data(spec, args.data_root)
        const = constant_accuracy(data[0][1], data[1][1])
        for epochs, threads in itertools.product(args.epochs, args.threads):
            torch.set_num_threads(threads)
            cfg = ClassifierConfig(epochs=epochs, batch_size=args.batch_size, lr=args.lr)
            runs, times = [], []
            for seed in args.seeds:
                r = run_probe(spec, cfg, ref.replace_head, ref.set_trainable, seed, data=data,
                              vgg16_state_dict=vgg)
                runs.append(r["accuracy"])
                times.append(r["train_s"])
            wrong = []
            for seed in args.wrong_seeds if args.wrong_seeds is not None else args.seeds:
                r = run_probe(spec, cfg, ref.replace_head, ref.set_trainable, seed, data=data, init="random")
                wrong.append(r["accuracy"])
                times.append(r["train_s"])
            gap = min(runs) - 0.01 - max(max(wrong), const)
            print(f"{size:>4} {per_class:>5} {epochs:>2} {threads:>3} | "
                  f"{' '.join(f'{a:.3f}' for a in runs):<22} {min(runs):.3f} | "
                  f"{' '.join(f'{a:.3f}' for a in wrong):<17} {max(wrong):.3f} | {const:.3f} | "
                  f"{gap:+.3f} | {statistics.fmean(times):5.1f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

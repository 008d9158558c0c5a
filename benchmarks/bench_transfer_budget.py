"""Estimate how long the two transfer_learning notebooks take under a budget, from timed probes.

The notebooks cannot run end to end where there is no Jupyter kernel (a lent GPU machine has none),
and a full ``gpu`` run (sized for about 30 minutes) does not fit a short device session. This runs
the notebooks' own set-up cells (their data loading is timed as it is: the facade parts are built
and cached on a first run), executes the reference answers, then times a few batches of every
training run the notebooks make, through the same library calls (``transfer.fit_classifier``,
``train.estimate_seconds``, ``byol.pretrain``), and multiplies by the batches of the budget:

    estimate = set-up + sum over runs (seconds per batch x batches + seconds per test item x items)

The first batch of each probe is a warm-up and is not counted. Where the notebooks were timed end to
end (``benchmarks/bench_notebook.py``, cpu budget), compare the two to see how far to trust it.

``--parts-counts FILE`` (``{"train": [count per class], "test": [...]}``, written by
``scripts/pack_gpu_bundle.py`` from the full-resolution data) counts the batches of the runs that
use every part of a split from those numbers: a GPU machine gets the data shrunk to 512 px, where
fewer components reach the minimum area. Seconds per batch do not depend on it.

    python benchmarks/bench_transfer_budget.py                        # this machine's budget
    python benchmarks/bench_transfer_budget.py --budget gpu --device cuda --parts-counts FILE
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def _clock(fn):
    """``(seconds, fn())``, with CUDA work finished before the clock stops."""
    import torch

    start = time.perf_counter()
    out = fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - start, out


class Probe:
    """Times training and evaluation batches through the library calls the notebooks make.

    Args:
        device: where the notebooks would train (``"cuda"``, ``"cpu"``).
        batches: batches timed per probe after one warm-up batch.
    """

    def __init__(self, device: str, batches: int):
        self.device, self.batches = device, batches

    def fit_per_batch(self, model, xy, config) -> float:
        """Seconds per ``fit_classifier`` batch of ``config.batch_size`` items."""
        from dataclasses import replace

        from assignment_lib.transfer import fit_classifier

        x, y = xy
        b = config.batch_size
        one = replace(config, epochs=1)
        if len(y) < 2 * b:  # too few items for more than one batch: time the whole (short) epoch
            t, _ = _clock(lambda: fit_classifier(model, (x, y), one, device=self.device, progress=False))
            return t / max(1, math.ceil(len(y) / b))
        fit_classifier(model, (x[:b], y[:b]), one, device=self.device, progress=False)  # warm-up
        k = min(self.batches, len(y) // b)
        t, _ = _clock(lambda: fit_classifier(model, (x[:k * b], y[:k * b]), one, device=self.device,
                                             progress=False))
        return t / k

    def eval_per_item(self, model, xy, n_classes: int) -> float:
        """Seconds per test item of ``evaluate_classifier`` (batches of 128 as the notebooks use)."""
        from assignment_lib.transfer import evaluate_classifier

        x, y = xy
        n = min(len(y), 256)
        evaluate_classifier(model, x[:8], y[:8], n_classes, device=self.device)  # warm-up
        t, _ = _clock(lambda: evaluate_classifier(model, x[:n], y[:n], n_classes, device=self.device))
        return t / n


def _run_cells(ns: dict, assignment, grade_ids) -> float:
    """Execute the source notebook cells ``grade_ids`` (set-up cells and reference answers, in this
    order) into ``ns``, as the notebook's kernel would; seconds taken."""
    import nbformat

    from autograder.notebook import cells_by_grade_id

    cells = {}
    for path in sorted(Path(assignment.source_dir).glob("*.ipynb")):
        cells.update(cells_by_grade_id(nbformat.read(path, as_version=4)))
    start = time.perf_counter()
    for gid in grade_ids:
        exec(compile(cells[gid].source, gid, "exec"), ns)  # noqa: S102 - the instructor's own notebook
    return time.perf_counter() - start


def _used(n: int | None, available: int) -> int:
    """Items a notebook uses when it asks for ``n`` (None: all) of ``available``."""
    return available if n is None else min(n, available)


def transfer_and_features(assignment, probe: Probe, rows: list, counts: dict | None = None) -> None:
    """Rows of ``transfer_and_features.ipynb``: set-up, the three modes, PCA and t-SNE."""
    import numpy as np

    from assignment_lib import transfer

    ns: dict = {"__name__": "__main__"}
    rows.append(("transfer_and_features", "set-up (facade parts built or read from the cache)",
                 _run_cells(ns, assignment, ["tl_imports", "tl_setup", "transfer_head", "extract_features"])))
    sizes, train_xy, test_xy = ns["SIZES"], ns["train_xy"], ns["test_xy"]
    config = transfer.ClassifierConfig(**sizes["train"])
    n_train, n_test = len(train_xy[1]), len(test_xy[1])
    if counts and sizes["n_train_images"] is None and sizes["n_test_images"] is None:
        n_train = _used(sizes["n_train"], sum(counts["train"]))
        n_test = _used(sizes["n_test"], sum(counts["test"]))
    batches = math.ceil(n_train / config.batch_size) * config.epochs
    for mode in ns["MODES"]:
        start = time.perf_counter()
        model = ns["set_trainable"](ns["replace_head"](transfer.vgg16_imagenet(), 10), mode)
        build = time.perf_counter() - start
        per_batch = probe.fit_per_batch(model, train_xy, config)
        per_item = probe.eval_per_item(model, test_xy, 10)
        # a test evaluation after each epoch and one at the end; the fine-tuned run also keeps the
        # test features after the first and the last epoch (extract_features: about one evaluation)
        evals = config.epochs + 1 + (2 if mode == "fine_tune" else 0)
        what = f"{mode}: {batches} batches of {config.batch_size}, {evals} x {n_test} test parts"
        rows.append(("transfer_and_features", what, build + per_batch * batches + per_item * n_test * evals))
    import importlib

    for module in ("sklearn.decomposition", "sklearn.manifold"):  # imported once by the notebook, not per plot
        importlib.import_module(module)
    features = np.random.default_rng(0).standard_normal((n_test, 256)).astype(np.float32)
    for method in ("pca", "tsne"):
        start = time.perf_counter()
        transfer.embed_2d(features, method)
        t = time.perf_counter() - start
        rows.append(("transfer_and_features", f"{method} of {n_test} test features, twice", 2 * t))


def byol_and_aspp(assignment, probe: Probe, rows: list, counts: dict | None = None) -> None:
    """Rows of ``byol_and_aspp.ipynb``: set-up, the two segmentation heads, BYOL and supervised
    pre-training, the six downstream runs."""
    from dataclasses import replace

    from assignment_lib import byol, train
    from assignment_lib.transfer import ClassifierConfig

    ns: dict = {"__name__": "__main__"}
    setup = _run_cells(ns, assignment, ["byol_imports", "byol_setup", "aspp", "aspp_models", "byol_loss",
                                        "ema_update", "byol_data"])
    rows.append(("byol_and_aspp", "set-up (VGG-16, segmentation images, facade parts, unlabelled pool)", setup))
    config, seg_train, seg_test = ns["SEG_CONFIG"], ns["seg_train"], ns["seg_test"]
    for name, make in (("FCN head", ns["fcn_head_net"]), ("ASPP head", ns["deeplab_net"])):
        build, model = _clock(make)
        est = train.estimate_seconds(model, seg_train, config, eval_images=len(seg_test), eval_data=seg_test,
                                     device=probe.device, probe_steps=probe.batches + 1)
        what = f"{name}: {est['steps']} steps of {config.batch_size} crops, {len(seg_test)} test images"
        rows.append(("byol_and_aspp", what, build + est["seconds"]))

    sizes, n_parts, image_size = ns["BYOL_SIZES"], ns["N_PARTS"], ns["IMAGE_SIZE"]
    full = byol.BYOLConfig(steps=sizes["steps"], batch_size=sizes["batch_size"], image_size=image_size)
    step = {}
    for label, steps in (("warm-up", 1), ("timed", probe.batches)):
        encoder = byol.resnet18_encoder()
        history = byol.pretrain(encoder, ns["pool"], replace(full, steps=steps), loss_fn=ns["byol_loss"],
                                ema_fn=ns["ema_update"], device=probe.device, progress=False)
        step[label] = history["seconds"] / steps
    rows.append(("byol_and_aspp", f"BYOL pre-training: {full.steps} steps of {full.batch_size} images",
                 step["timed"] * full.steps))

    sup = ClassifierConfig(**{k: v for k, v in ns["SUP"].items() if k != "n_train"})
    sup_xy, few_xy, test_xy = (ns["sup_x"], ns["sup_y"]), (ns["few_x"], ns["few_y"]), (ns["test_x"], ns["test_y"])
    n_sup, n_few, n_test = len(sup_xy[1]), len(few_xy[1]), len(test_xy[1])
    if counts:  # this notebook always cuts the parts of every facade
        n_sup = _used(ns["SUP"]["n_train"], sum(counts["train"]))
        per_class = ns["CLF"]["n_per_class"]
        n_few = sum(counts["train"]) if per_class is None else sum(min(per_class, c) for c in counts["train"])
        n_test = _used(ns["CLF"]["n_test"], sum(counts["test"]))
    per_batch = probe.fit_per_batch(byol.LinearClassifier(byol.resnet18_encoder(), n_parts, image_size=image_size),
                                    sup_xy, sup)
    batches = math.ceil(n_sup / sup.batch_size) * sup.epochs
    rows.append(("byol_and_aspp", f"supervised pre-training: {batches} batches of {sup.batch_size}",
                 per_batch * batches))

    clf = ClassifierConfig(**{k: v for k, v in ns["CLF"].items() if k not in ("n_per_class", "n_test")})
    batches = math.ceil(n_few / clf.batch_size) * clf.epochs
    for mode, frozen in (("fine-tune all", False), ("frozen backbone", True)):
        model = byol.LinearClassifier(byol.resnet18_encoder(), n_parts, freeze_backbone=frozen, image_size=image_size)
        per_batch = probe.fit_per_batch(model, few_xy, clf)
        per_item = probe.eval_per_item(model, test_xy, n_parts)
        what = f"downstream, {mode}: 3 runs x {batches} batches of {clf.batch_size}, {n_test} test parts"
        rows.append(("byol_and_aspp", what, 3 * (per_batch * batches + per_item * n_test)))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--budget", choices=("gpu", "cpu", "smoke"), default=None,
                    help="default: this machine's (gpu with CUDA, else cpu), as the notebooks pick it")
    ap.add_argument("--device", default=None, help="cuda or cpu (default: cuda when present)")
    ap.add_argument("--probe-batches", type=int, default=5, help="batches timed per run after a warm-up")
    ap.add_argument("--notebooks", nargs="+", default=["transfer_and_features", "byol_and_aspp"],
                    choices=["transfer_and_features", "byol_and_aspp"])
    ap.add_argument("--parts-counts", type=Path, default=None,
                    help="JSON of the full data's part counts per class (see above)")
    ap.add_argument("--json", type=Path, default=None, help="also write the rows and totals here")
    args = ap.parse_args(argv)
    if args.budget is None:
        from assignment_lib.config import detect_budget

        args.budget = detect_budget()
    # The notebooks read their budget and device when their set-up cells run.
    os.environ["ASSIGNMENT_BUDGET"] = args.budget
    os.environ.setdefault("MPLBACKEND", "Agg")
    import torch

    from autograder.assignment import get_assignment

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cpu" and torch.cuda.is_available():
        os.environ["CUDA_VISIBLE_DEVICES"] = ""  # the notebooks pick CUDA themselves when they see it
    assignment = get_assignment("transfer_learning")
    probe, rows = Probe(device, max(1, args.probe_batches)), []
    counts = json.loads(args.parts_counts.read_text()) if args.parts_counts else None
    for name in args.notebooks:
        run = {"transfer_and_features": transfer_and_features, "byol_and_aspp": byol_and_aspp}[name]
        run(assignment, probe, rows, counts)

    name = torch.cuda.get_device_name(0) if device.startswith("cuda") else f"CPU, {torch.get_num_threads()} threads"
    print(f"transfer_learning, budget {args.budget}, {name}, torch {torch.__version__}, "
          f"{args.probe_batches} probe batches per run")
    totals: dict[str, float] = {}
    for notebook, what, seconds in rows:
        totals[notebook] = totals.get(notebook, 0.0) + seconds
        print(f"  {notebook:<22} {seconds:8.1f} s  {what}")
    for notebook, seconds in totals.items():
        print(f"{notebook}: estimated {seconds:.0f} s ({seconds / 60:.1f} min)")
    total = sum(totals.values())
    print(f"both notebooks: estimated {total:.0f} s ({total / 60:.1f} min) under the {args.budget} budget")
    if args.json:
        args.json.write_text(json.dumps({"budget": args.budget, "device": name, "torch": torch.__version__,
                                         "parts_counts": counts, "rows": rows, "totals_s": totals,
                                         "total_s": total}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Training throughput of FCN-32s / FCN-8s at the grading resolution, and how far from peak it is.

Prints, per model: images/s of full training steps (all layers trained, batch of ``--batch`` crops
of ``--size`` px, bf16 autocast + channels-last on CUDA, fp32 on CPU), FLOPs per image
(forward + backward, counted by ``torch.utils.flop_counter.FlopCounterMode``), the achieved
TFLOP/s, the measured dense-matmul peak of the same device (bf16 on CUDA, fp32 on CPU), their
ratio, the peak GPU memory (CUDA only) and the time to reach the calibrated mIoU threshold (GPU
only, needs a measured ``autograder/assignments/fcn_segmentation/thresholds.json``; "n/a" otherwise).

Then it writes the figures (with date, device and versions) into ``docs/benchmarks.md``, in a
section per device that replaces the previous section for the same device.

    python benchmarks/bench_train.py                       # CUDA if present, else CPU (small)
    python benchmarks/bench_train.py --device cpu --size 128 --steps 2 --batch 1
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from assignment_lib.data import IGNORE_INDEX
from assignment_lib.train import _autocast
from autograder.assignment import get_assignment
from autograder.reference import load_reference

DOC = REPO / "docs" / "benchmarks.md"
#: The assignment whose models (FCN-32s, FCN-8s) this benchmark trains.
FCN = get_assignment("fcn_segmentation")
#: The issue's figure for FCN-8s at 512x512, forward + backward, per image.
ISSUE_FCN8S_512_TFLOP = 1.14


def device_label(dev: torch.device) -> str:
    if dev.type == "cuda":
        return f"CUDA: {torch.cuda.get_device_name(dev)}"
    return f"CPU: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"


def flops_per_image(model_cls, size: int) -> int:
    """Forward + backward FLOPs of one size x size image, all layers trained (the input needs no
    gradient). Counted by ``FlopCounterMode`` (convolutions, transposed convolutions, matmuls;
    element-wise ops are not counted) on the ``meta`` device: shapes only, no arithmetic."""
    from torch.utils.flop_counter import FlopCounterMode

    with torch.device("meta"):
        model = model_cls()
    x = torch.randn(1, 3, size, size, device="meta")
    model.train()
    counter = FlopCounterMode(display=False)
    with counter:
        model(x).float().sum().backward()
    return int(counter.get_total_flops())


def matmul_peak_tflops(dev, seconds: float = 2.0) -> float:
    """Measured dense matmul rate: bf16 8192^2 on CUDA, fp32 2048^2 on CPU."""
    n, dtype = (8192, torch.bfloat16) if dev.type == "cuda" else (2048, torch.float32)
    a = torch.randn(n, n, device=dev, dtype=dtype)
    b = torch.randn(n, n, device=dev, dtype=dtype)
    a @ b
    sync(dev)
    reps, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        a @ b
        reps += 1
        if dev.type == "cuda" and reps % 10:
            continue
        sync(dev)
    sync(dev)
    return 2 * n**3 * reps / (time.perf_counter() - t0) / 1e12


def sync(dev):
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def images_per_second(model, size, batch, steps, dev) -> float:
    cuda = dev.type == "cuda"
    if cuda:
        model.to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=1e-6, momentum=0.9)
    x = torch.randn(batch, 3, size, size, device=dev)
    if cuda:
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 12, (batch, size, size), device=dev)
    model.train()

    def step():
        with _autocast(dev, True):
            logits = model(x)
        loss = F.cross_entropy(logits.float(), y, ignore_index=IGNORE_INDEX)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    step()  # warm-up (kernel selection, allocator)
    sync(dev)
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    sync(dev)
    return batch * steps / (time.perf_counter() - t0)


def time_to_threshold(dev) -> str:
    """Train the GPU recipe with the reference FCN-8s and report when it first reaches the
    calibrated threshold (checked at every History row)."""
    if dev.type != "cuda":
        return "n/a (CPU)"
    doc = json.loads(FCN.thresholds.read_text())
    thr = doc.get("gpu", {}).get("FCN8s")
    if thr is None:
        return "n/a (GPU threshold not yet measured)"
    from assignment_lib.train import TrainConfig, fit, seed_everything
    from assignment_lib.weights import copy_vgg16_weights
    from autograder.recipes import load_data, load_recipes

    r = load_recipes(FCN.recipes)["gpu_fcn8s"]
    train, test = load_data(r.data)
    every = TrainConfig.from_dict({**r.config.to_dict(), "eval_every": 100})
    # the steps of assignment_lib.recipe.train_and_predict, with the test split as validation data
    seed_everything(every.seed)
    model = load_reference(FCN).FCN8s(n_classes=every.n_classes)
    copy_vgg16_weights(model)
    hist = fit(model, train, every, val_data=test, device=dev, progress=False)
    for s, m in zip(hist["seconds"], hist["val_mean_iou"]):
        if m >= thr:
            return f"{s:.0f} s (mIoU {m:.3f} >= {thr:.3f}; includes evaluation passes)"
    return f"not reached in {hist['seconds'][-1]:.0f} s (best {max(hist['val_mean_iou']):.3f} < {thr:.3f})"


def write_section(label: str, body: str) -> None:
    start, end = f"<!-- bench_train: {label} -->", f"<!-- /bench_train: {label} -->"
    text = DOC.read_text() if DOC.is_file() else (
        "# Benchmarks\n\nFigures printed by the scripts in `benchmarks/`. Each section is rewritten by "
        "its script; one section per device.\n")
    block = f"{start}\n{body.rstrip()}\n{end}"
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.DOTALL)
    text = pattern.sub(lambda _: block, text) if pattern.search(text) else text.rstrip() + "\n\n" + block + "\n"
    DOC.parent.mkdir(parents=True, exist_ok=True)
    DOC.write_text(text)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--size", type=int, default=None, help="crop side (default 512 on CUDA, 128 on CPU)")
    p.add_argument("--batch", type=int, default=None, help="default 8 on CUDA, 1 on CPU")
    p.add_argument("--steps", type=int, default=None, help="timed steps (default 20 on CUDA, 2 on CPU)")
    p.add_argument("--models", nargs="+", default=["FCN32s", "FCN8s"])
    p.add_argument("--no-write", action="store_true", help="print only; leave docs/benchmarks.md alone")
    p.add_argument("--skip-threshold", action="store_true", help="skip the time-to-threshold run")
    args = p.parse_args(argv)
    dev = torch.device(args.device)
    cuda = dev.type == "cuda"
    size = args.size or (512 if cuda else 128)
    batch = args.batch or (8 if cuda else 1)
    steps = args.steps or (20 if cuda else 2)
    ref = load_reference(FCN)

    label = device_label(dev)
    peak = matmul_peak_tflops(dev)
    precision = "bf16 autocast, channels-last" if cuda and torch.cuda.is_bf16_supported() else "fp32"
    rows = []
    print(f"{label} | torch {torch.__version__} | {precision} | size {size} batch {batch} steps {steps}")
    print(f"measured matmul peak: {peak:.2f} TFLOP/s ({'bf16' if cuda else 'fp32'})")
    for name in args.models:
        torch.manual_seed(0)
        fl = flops_per_image(getattr(ref, name), size)
        fl512 = flops_per_image(getattr(ref, name), 512)
        model = getattr(ref, name)().to(dev)
        if cuda:
            torch.cuda.reset_peak_memory_stats(dev)
        ips = images_per_second(model, size, batch, steps, dev)
        mem = f"{torch.cuda.max_memory_allocated(dev) / 2**30:.1f} GiB" if cuda else "n/a (CPU)"
        achieved = ips * fl / 1e12
        rows.append((name, ips, fl, fl512, achieved, achieved / peak, mem))
        line = (f"{name}: {ips:.2f} img/s | {fl / 1e12:.3f} TFLOP/img fwd+bwd at {size}px | "
                f"{fl512 / 1e12:.3f} TFLOP/img at 512px")
        if name == "FCN8s":
            line += f" (issue's figure: {ISSUE_FCN8S_512_TFLOP} TFLOP)"
        print(line + f" | {achieved:.3f} TFLOP/s = {100 * achieved / peak:.1f}% of peak | peak mem {mem}")
        del model
    ttt = "skipped" if args.skip_threshold else time_to_threshold(dev)
    print(f"time to threshold (gpu_fcn8s recipe): {ttt}")

    if not args.no_write:
        date = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
        kind = "GPU" if cuda else "CPU (NOT the GPU targets: a sanity run on the CI/dev box)"
        body = [f"## bench_train: {label}", "",
                (f"{kind}. `python benchmarks/bench_train.py --device {args.device} --size {size} "
                f"--batch {batch} --steps {steps}` on {date}; torch {torch.__version__}, Python "
                f"{platform.python_version()}; {precision}; all layers trained (SGD), synthetic input. "
                f"System load average (1 min) at the end: {os.getloadavg()[0]:.1f} on "
                f"{os.cpu_count()} cores (other jobs sharing the cores inflate every time)."), "",
                (f"Measured dense matmul peak of this device: **{peak:.2f} TFLOP/s** "
                f"({'bf16 8192²' if cuda else 'fp32 2048²'})."), "",
                (f"| model | images/s | TFLOP/img fwd+bwd at {size} px | TFLOP/img at 512 px | "
                "achieved TFLOP/s | of peak | peak GPU memory |"),
                "|---|---|---|---|---|---|---|"]
        for name, ips, fl, fl512, ach, frac, mem in rows:
            body.append(f"| {name} | {ips:.2f} | {fl / 1e12:.3f} | {fl512 / 1e12:.3f} | {ach:.3f} | "
                        f"{100 * frac:.1f}% | {mem} |")
        body += ["", (f"FCN-8s at 512 px: the issue quotes {ISSUE_FCN8S_512_TFLOP} TFLOP per image "
                 "(forward + backward); FlopCounterMode's count is in the table."), "",
                 f"Time to reach the calibrated FCN-8s threshold (gpu_fcn8s recipe): {ttt}."]
        write_section(label if cuda else "CPU", "\n".join(body))
        print(f"wrote {DOC.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

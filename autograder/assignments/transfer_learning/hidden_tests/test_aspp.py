"""Hidden tests of ``ASPP`` (cell ``aspp``): DeepLabv3's Atrous Spatial Pyramid Pooling.

The ASPP is built in the sandbox; the trusted side compares it with torchvision's
``torchvision.models.segmentation.deeplabv3.ASPP`` (built here, never in the sandbox) under the
same random weights, matched by order and shape, so that only ``test_aspp_layer_names`` depends on
the sub-modules' names.
"""

from __future__ import annotations

import pytest
import torch

from assignment_lib.byol_aspp_checks import randomize, torchvision_aspp
from autograder.sandbox import SandboxError

#: Seed of the random weights and inputs.
SEED = 20170617
IN_CHANNELS, OUT_CHANNELS = 16, 8
#: (in_channels, out_channels, rates) of the models compared; the second has another number of rates.
CONFIGS = ((IN_CHANNELS, OUT_CHANNELS, (6, 12, 18)), (IN_CHANNELS, 6, (1, 2)))
#: (N, C, H, W) inputs: a 1x1 map, odd and non-square sizes, a map smaller than the rates.
SHAPES = ((1, IN_CHANNELS, 1, 1), (2, IN_CHANNELS, 7, 11), (1, IN_CHANNELS, 33, 19), (2, IN_CHANNELS, 4, 4))

STRUCTURE = ("build the branches in torchvision's order (the 1x1 branch, one 3x3 atrous branch per rate, "
             "the image-pooling branch; each conv without bias, then BatchNorm2d and ReLU), then the "
             "projection (1x1 conv without bias from (len(rates) + 2) * out_channels, BatchNorm2d, "
             "ReLU, Dropout(0.5))")


def _inputs():
    g = torch.Generator().manual_seed(SEED)
    return [torch.randn(*s, generator=g) for s in SHAPES]


def _build(submission, handle, in_channels, out_channels, rates):
    submission.require("aspp")
    try:
        summary = submission.new(handle, "ASPP", in_channels, out_channels, rates=rates, seed=0)
    except SandboxError as err:
        pytest.fail(f"ASPP({in_channels}, {out_channels}, rates={rates}) could not be built:\n{err}")
    if not (isinstance(summary, dict) and "n_params" in summary):
        pytest.fail(f"ASPP({in_channels}, {out_channels}, rates={rates}) is not an nn.Module: define "
                    "`class ASPP(nn.Module)` and call super().__init__() first.")
    return summary


def test_aspp_output_shapes(submission, partial):
    problems, total = [], 0
    for i, (cin, cout, rates) in enumerate(CONFIGS):
        summary = _build(submission, f"aspp_shape{i}", cin, cout, rates)
        dilations = [m["attrs"].get("dilation") for m in summary.get("modules", []) if m.get("type") == "Conv2d"]
        if not any(d and max(d) > 1 for d in dilations):  # e.g. one 1x1 conv: right shapes, no pyramid
            pytest.fail(f"ASPP({cin}, {cout}, rates={rates}) has no atrous (dilated) convolution: the "
                        "output shapes only count once the 3x3 branches with dilation = rate exist")
        outs = submission.forward_handle(f"aspp_shape{i}", _inputs())
        for shape, out in zip(SHAPES, outs):
            total += 1
            want = [shape[0], cout, shape[2], shape[3]]
            if not out["ok"]:
                problems.append(f"ASPP({cin}, {cout}, rates={rates}) on {list(shape)} raised:\n"
                                f"{out['error'].strip().splitlines()[-1]}")
            elif out["output"] is None or list(out["output"].shape) != want:
                got = None if out["output"] is None else list(out["output"].shape)
                problems.append(f"ASPP({cin}, {cout}, rates={rates}) on {list(shape)} returned {got}, "
                                f"expected {want}")
    partial(1 - len(problems) / total)
    assert not problems, "\n".join(problems) + (
        "\nEach 3x3 atrous branch needs padding = dilation = rate to keep H x W (also at 1x1 and on "
        "maps smaller than the rate), and the pooled branch must be upsampled back to H x W.")


def test_aspp_param_count(submission):
    problems = []
    for i, (cin, cout, rates) in enumerate(CONFIGS):
        summary = _build(submission, f"aspp_count{i}", cin, cout, rates)
        want = sum(p.numel() for p in torchvision_aspp(cin, cout, rates).parameters())
        if summary["n_params"] != want:
            problems.append(f"ASPP({cin}, {cout}, rates={rates}) has {summary['n_params']} parameters, "
                            f"expected {want}")
    assert not problems, "\n".join(problems) + f": {STRUCTURE}; one atrous branch per rate."


def test_aspp_same_weights(submission, partial):
    problems, total, wrong = [], 0, 0
    for i, (cin, cout, rates) in enumerate(CONFIGS):
        handle = f"aspp_same{i}"
        _build(submission, handle, cin, cout, rates)
        ref = torchvision_aspp(cin, cout, rates)
        tensors = randomize(ref, seed=SEED + i)
        ref.load_state_dict(dict(tensors))
        ref.eval()
        inputs = _inputs()
        total += len(inputs)
        try:
            matched = submission.load(handle, tensors=tensors)
        except SandboxError as err:
            problems.append(f"ASPP({cin}, {cout}, rates={rates}): torchvision's weights do not fit "
                            f"yours ({err}): {STRUCTURE}")
            wrong += len(inputs)
            continue
        outs = submission.forward_handle(handle, inputs)
        with torch.no_grad():
            for x, out in zip(inputs, outs):
                want = ref(x)
                if not out["ok"] or out["output"] is None or out["output"].shape != want.shape:
                    wrong += 1
                    problems.append(f"ASPP({cin}, {cout}, rates={rates}) on {list(x.shape)} failed or "
                                    "returned the wrong shape")
                    continue
                err = (out["output"] - want).abs().max().item()
                if err > 1e-4:
                    wrong += 1
                    problems.append(f"ASPP({cin}, {cout}, rates={rates}) on {list(x.shape)}, weights "
                                    f"matched by {matched}: output differs from torchvision's by {err:.3g}")
    partial(1 - wrong / total)
    assert not problems, "\n".join(problems[:6]) + (
        "\nIn eval mode, with the same weights, check dilation = padding = rate, the pooling branch "
        "(AdaptiveAvgPool2d(1), 1x1 conv, BatchNorm2d, ReLU, then bilinear upsampling with "
        "align_corners=False), the concatenation order along dim=1 and the projection.")


def test_aspp_layer_names(submission):
    _build(submission, "aspp_names", IN_CHANNELS, OUT_CHANNELS, (6, 12, 18))
    ref = torchvision_aspp(IN_CHANNELS, OUT_CHANNELS)
    try:
        matched = submission.load("aspp_names", tensors=randomize(ref, seed=SEED))
    except SandboxError:
        matched = "neither"
    assert matched == "name", (
        f"torchvision's weights loaded by {matched}, not by name: name the sub-modules as torchvision "
        "does, `convs` (an nn.ModuleList of nn.Sequential branches) and `project` (an nn.Sequential), "
        "so that pretrained DeepLabv3 weights load into yours (state-dict names such as "
        "convs.0.0.weight, convs.4.1.running_mean, project.0.weight).")

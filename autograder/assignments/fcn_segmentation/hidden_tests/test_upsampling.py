"""Hidden tests of ``transposed_conv_padding`` (cell ``transposed_conv_padding``).

The trusted side builds ``nn.ConvTranspose2d`` from the returned ints and checks H_out == stride*H.
"""

from __future__ import annotations

import torch

from assignment_lib.checks import (
    PADDING_INVALID,
    PADDING_OTHER_STRIDES,
    PADDING_SIZES,
    PADDING_STRIDE2,
)

# The handout asks for every kernel_size >= 1 and stride >= 1 (kernels smaller than the stride
# included) and a ValueError below 1: these are the very cases of the visible check cell
# (assignment_lib.checks.check_transposed_conv_padding), so the two cannot disagree.
SIZES = PADDING_SIZES


def _outputs(kernel, stride, padding, output_padding):
    conv = torch.nn.ConvTranspose2d(1, 1, kernel, stride=stride, padding=padding,
                                    output_padding=output_padding)
    return [conv(torch.zeros(1, 1, h, h)).shape[-1] for h in SIZES]


def _check(submission, partial, cases):
    submission.require("transposed_conv_padding")
    calls = [{"args": [k, s]} for k, s in cases]
    res = submission.request("call", name="transposed_conv_padding", calls=calls)["results"]
    problems = []
    for (k, s), r in zip(cases, res):
        if not r["ok"]:
            problems.append(f"kernel_size={k}, stride={s}: raised {r['raised']}: {r['message']}")
            continue
        v = r["value"]
        if type(v) is not list or len(v) != 2 or any(type(x) is not int for x in v):
            problems.append(f"kernel_size={k}, stride={s}: returned {r['type']} {v!r}; return a "
                            "tuple of two ints (padding, output_padding)")
            continue
        p, op = v
        if p < 0 or not 0 <= op < s:
            problems.append(f"kernel_size={k}, stride={s}: ({p}, {op}) is not valid: padding >= 0 "
                            "and 0 <= output_padding < stride")
            continue
        got = _outputs(k, s, p, op)
        want = [s * h for h in SIZES]
        if got != want:
            problems.append(f"kernel_size={k}, stride={s}: ({p}, {op}) maps H={list(SIZES)} to "
                            f"{got}, not {want}: use H_out = (H-1)*stride - 2*padding + "
                            "kernel_size + output_padding")
    partial(1 - len(problems) / len(cases))
    assert not problems, "\n".join(problems)


def test_transposed_conv_padding_stride2(submission, partial):
    _check(submission, partial, list(PADDING_STRIDE2))


def test_transposed_conv_padding_other_strides(submission, partial):
    _check(submission, partial, list(PADDING_OTHER_STRIDES))


def test_transposed_conv_padding_invalid(submission):
    submission.require("transposed_conv_padding")
    res = submission.request("call", name="transposed_conv_padding",
                             calls=[{"args": [k, s]} for k, s in PADDING_INVALID])["results"]
    for (k, s), r in zip(PADDING_INVALID, res):
        assert not r["ok"] and r["raised"] == "ValueError", (
            f"transposed_conv_padding({k}, stride={s}) should raise ValueError (sizes must be >= 1) "
            "but it " + (f"returned {r['value']!r}" if r["ok"] else f"raised {r['raised']}"))

"""The FCN forward tests' input sizes (the FCN hidden tests' conftest.FCN_SIZES) catch wrong FCNs.

Each wrong FCN is the reference solution's source with one edit (a crop offset, a centre crop, a
swapped height/width, floor pooling, a wrong stride, ...). The hidden tests give a share of the
points per input size (1 - failing sizes / 3), so the sizes must make every wrong FCN fail at
least as many sizes as the sizes used before issue 10 did (OLD_SIZES, cost 36 % more per forward).
Only wrong FCNs whose failure can depend on the input size are listed (a missing skip fails at
every size). Thin copies (channels / 32, the same geometry: kernels, strides, padding, crops)
keep this fast;
outputs are compared as check_same_weights does (shape, then largest difference).
"""

from __future__ import annotations

import math
import types

import pytest
import torch
from torch import nn

from autograder import reference as R
from autograder.assignment import get_assignment
from autograder.assignments.fcn_segmentation.hidden_tests.conftest import FCN_SIZES

FCN = get_assignment("fcn_segmentation")

OLD_SIZES = ((64, 64), (97, 131), (33, 47))


class _ThinConv2d(nn.Conv2d):
    def __init__(self, cin, cout, *args, **kwargs):
        def thin(c):
            return c if c in (3, 12) else max(4, c // 32)
        super().__init__(thin(cin), thin(cout), *args, **kwargs)


def _thin_class(name: str, source: str):
    ns = {"__name__": "thin_fcn"}
    exec(R.cell_source("fcn_imports", FCN), ns)  # noqa: S102 - the trusted reference source
    ns["nn"] = types.SimpleNamespace(**{**vars(nn), "Conv2d": _ThinConv2d})
    exec(source, ns)  # noqa: S102 - the reference source, edited here
    return ns[name]


C32 = "h[:, :, 19:19 + x.size(2), 19:19 + x.size(3)]"
C8 = "h[:, :, 31:31 + x.size(2), 31:31 + x.size(3)]"
P4 = "score_pool4[:, :, 5:5 + upscore2.size(2), 5:5 + upscore2.size(3)]"
P3 = "score_pool3[:, :, 9:9 + upscore_pool4.size(2), 9:9 + upscore_pool4.size(3)]"


def _centre(t, ref):
    a, b = f"({t}.size(2) - {ref}.size(2)) // 2", f"({t}.size(3) - {ref}.size(3)) // 2"
    return f"{t}[:, :, {a}:{a} + {ref}.size(2), {b}:{b} + {ref}.size(3)]"


def _pools(kind):
    return {f"pool{i} floor": [(f"self.pool{i} = nn.MaxPool2d(2, stride=2, ceil_mode=True)",
                                f"self.pool{i} = nn.MaxPool2d(2, stride=2, ceil_mode=False)")]
            for i in range(1, 6)}


WRONG = {
    "FCN32s": {
        "crop 18": [("19:19 + x.size(2), 19:19 + x.size(3)", "18:18 + x.size(2), 18:18 + x.size(3)")],
        "crop 20 in W only": [("19:19 + x.size(3)", "20:20 + x.size(3)")],
        "centre crop": [(C32, _centre("h", "x"))],
        "crop from the end": [(C32, ("h[:, :, h.size(2) - x.size(2) - 19:h.size(2) - 19, "
                                     "h.size(3) - x.size(3) - 19:h.size(3) - 19]"))],
        "width used for the height": [("19:19 + x.size(2)", "19:19 + x.size(3)")],
        "height used for the width": [("19:19 + x.size(3)", "19:19 + x.size(2)")],
        "upscore stride 16": [("64, stride=32", "64, stride=16")],
        **_pools("32"),
    },
    "FCN8s": {
        "final crop 32": [("31:31 + x.size(2), 31:31 + x.size(3)", "32:32 + x.size(2), 32:32 + x.size(3)")],
        "final centre crop": [(C8, _centre("h", "x"))],
        "pool4 crop 4": [("5:5 + upscore2.size(2), 5:5 + upscore2.size(3)",
                          "4:4 + upscore2.size(2), 4:4 + upscore2.size(3)")],
        "pool4 centre crop": [(P4, _centre("score_pool4", "upscore2"))],
        "pool3 crop 10": [("9:9 + upscore_pool4.size(2), 9:9 + upscore_pool4.size(3)",
                           "10:10 + upscore_pool4.size(2), 10:10 + upscore_pool4.size(3)")],
        "pool3 centre crop": [(P3, _centre("score_pool3", "upscore_pool4"))],
        "pool4 crop: width for height": [("5:5 + upscore2.size(2)", "5:5 + upscore2.size(3)")],
        "pool3 crop: width for height": [("9:9 + upscore_pool4.size(2)", "9:9 + upscore_pool4.size(3)")],
        "final crop: width for height": [("31:31 + x.size(2)", "31:31 + x.size(3)")],
        "upscore2 stride 1": [("n_classes, 4, stride=2", "n_classes, 4, stride=1")],
        "upscore8 stride 4": [("16, stride=8", "16, stride=4")],
        **_pools("8"),
    },
}


@pytest.fixture(autouse=True)
def _one_thread():
    """Small convolutions: more threads only add waiting on a shared 2-core machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _outputs(cls, sizes):
    torch.manual_seed(0)
    model = cls(n_classes=12)
    g = torch.Generator().manual_seed(1)
    model.load_state_dict({k: torch.randn(v.shape, generator=g)
                           * (math.sqrt(2 / math.prod(v.shape[1:])) if v.dim() > 1 else 0.01)
                           for k, v in model.state_dict().items()})
    model.eval()
    gx = torch.Generator().manual_seed(2)
    out = []
    with torch.no_grad():
        for h, w in sizes:
            try:
                out.append(model(torch.randn(1, 3, h, w, generator=gx)))
            except Exception as err:  # noqa: BLE001 - a wrong FCN may raise: that size fails
                out.append(err)
    return out


def _failing(ref, got) -> int:
    n = 0
    for r, y in zip(ref, got):
        if (type(y) is not torch.Tensor or y.shape != r.shape
                or float((y - r).abs().max()) > 1e-4 * float(r.abs().max()) + 1e-6):
            n += 1
    return n


@pytest.mark.parametrize("name", ["FCN32s", "FCN8s"])
def test_every_wrong_fcn_fails_at_least_as_many_sizes_as_before(name):
    assert len(FCN_SIZES) == len(OLD_SIZES) == 3
    source = R.cell_source(name.lower(), FCN)
    right = _thin_class(name, source)
    refs = {s: _outputs(right, s) for s in (FCN_SIZES, OLD_SIZES)}
    assert all(type(y) is torch.Tensor and y.shape[2:] == hw for s, out in refs.items()
               for y, hw in zip(out, s))
    weaker = {}
    for wrong, edits in WRONG[name].items():
        text = source
        for old, new in edits:
            assert old in text, (wrong, old)
            text = text.replace(old, new)
        cls = _thin_class(name, text)
        now, before = (_failing(refs[s], _outputs(cls, s)) for s in (FCN_SIZES, OLD_SIZES))
        assert before > 0, f"{wrong}: not a wrong FCN at the old sizes either"
        if now < before:
            weaker[wrong] = (now, before)
    assert not weaker, f"fail at fewer sizes than before (now, before): {weaker}"

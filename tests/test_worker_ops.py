"""The generic worker operations (``new``, ``invoke``, ``describe``/``state``/``load``/``forward`` by
handle) through a real sandbox, via the hidden tests' :class:`SandboxHandle` wrappers."""

import pytest
import torch

from autograder.hidden_plugin import CallRaised, SandboxHandle, weight_spec
from autograder.sandbox import Sandbox, SandboxError

CELLS = r'''
import torch
from torch import nn

class Net(nn.Module):
    def __init__(self, n_in=4, n_out=3):
        super().__init__()
        self.body = nn.Linear(n_in, 5)
        self.norm = nn.BatchNorm1d(5)
        self.head = nn.Linear(5, n_out)

    def forward(self, x):
        return self.head(torch.relu(self.norm(self.body(x))))

class Mode(nn.Module):
    def forward(self, x):
        return torch.full_like(x, float(self.training)) + x.requires_grad

def freeze_body(model):
    for p in model.body.parameters():
        p.requires_grad_(False)
    return model

class Seg(Net):
    def __init__(self, n_classes=12):
        super().__init__(4, n_classes)

def half_detached(p, z, scale=1.0):
    return (p * z.detach()).sum() * scale

def picky(x):
    if x < 0:
        raise ValueError("x must be >= 0: check the sign")
    return [x, {"twice": 2 * x}]
'''


@pytest.fixture(scope="module")
def sub(tmp_path_factory):
    sb = Sandbox([{"grade_id": "cells", "source": CELLS}], tmp_path_factory.mktemp("ops") / "scratch",
                 slot=9, request_timeout=60, threads=1)
    sb.start()
    assert sb.cells["cells"]["ok"], sb.cells["cells"]["error"]
    yield SandboxHandle(sb, {}, None)
    sb.close()


def test_new_with_seed_matches_the_trusted_construction_and_describes(sub):
    summary = sub.new("net", "Net", 4, n_out=2, seed=3)
    assert summary["model_type"] == "Net"
    torch.manual_seed(3)  # the same seeded draws, layer by layer, as Net(4, n_out=2)
    body, _, head = torch.nn.Linear(4, 5), torch.nn.BatchNorm1d(5), torch.nn.Linear(5, 2)
    state = sub.state("net")
    assert [n for n, _, _ in state] == ["body.weight", "body.bias", "norm.weight", "norm.bias",
                                        "norm.running_mean", "norm.running_var",
                                        "norm.num_batches_tracked", "head.weight", "head.bias"]
    assert torch.equal(state[0][1], body.weight.detach()) and torch.equal(state[7][1], head.weight.detach())
    assert summary["n_params"] == summary["n_trainable"] == 4 * 5 + 5 + 10 + 5 * 2 + 2
    assert ["norm.running_mean", [5], False] in summary["params"]
    assert {m["name"]: m["type"] for m in summary["modules"]}["norm"] == "BatchNorm1d"


def test_dotted_paths_are_imported_inside_the_sandbox(sub):
    sub.new("lin", "torch.nn.Linear", 3, 2, seed=0)
    torch.manual_seed(0)
    ref = torch.nn.Linear(3, 2)
    (w, wt, w_grad), (b, bt, _) = sub.state("lin")
    assert (w, b, w_grad) == ("weight", "bias", True)
    assert torch.equal(wt, ref.weight.detach()) and torch.equal(bt, ref.bias.detach())
    assert sub.invoke("torch.tensor", [1.0, 2.0])["value"].tolist() == [1.0, 2.0]
    with pytest.raises(CallRaised, match="not defined"):  # only torch., torchvision., assignment_lib.
        sub.invoke("os.getcwd")


def test_invoke_on_a_handle_mutates_the_stored_object(sub):
    sub.new("frozen", "Net", seed=1)
    r = sub.invoke("freeze_body", sub.ref("frozen"), handle="same")
    assert r["type"] == "Net"
    d = sub.describe_handle("frozen")
    assert d["n_trainable"] == d["n_params"] - (4 * 5 + 5)
    assert ["body.weight", [5, 4], False] in d["params"] and ["head.bias", [3], True] in d["params"]
    assert sub.describe_handle("same")["n_trainable"] == d["n_trainable"]


def test_grad_reaches_only_the_inputs_the_function_differentiates(sub):
    p, z = torch.tensor([1.0, -2.0, 3.0]), torch.tensor([0.5, 4.0, -1.0])
    r = sub.invoke("half_detached", p, z, grad=[0, 1], scale=2.0)
    assert r["ok"] and r["requires_grad"] and torch.isclose(r["value"], (p * z).sum() * 2)
    assert torch.allclose(r["grads"][0], 2 * z) and r["grads"][1] is None
    r = sub.invoke("half_detached", p, z=z, grad=["z"])
    assert r["grads"] == {"z": None}


def test_a_raising_call_and_plain_values(sub):
    assert sub.invoke("picky", 3)["value"] == [3, {"twice": 6}]
    with pytest.raises(CallRaised, match="picky raised ValueError: x must be >= 0") as info:
        sub.invoke("picky", -1)
    assert info.value.raised == "ValueError"
    with pytest.raises(CallRaised, match="no object is stored under the handle 'nope'"):
        sub.invoke("picky", sub.ref("nope"))


def test_load_by_name_then_by_order_and_a_clear_error(sub):
    sub.new("a", "Net", seed=0)
    trusted = torch.nn.Sequential()
    trusted.body, trusted.norm, trusted.head = (torch.nn.Linear(4, 5), torch.nn.BatchNorm1d(5),
                                                torch.nn.Linear(5, 3))
    spec = weight_spec(trusted, seed=11)
    assert sub.load("a", weights=spec) == "name"
    renamed = [(f"x{i}", t + 1) for i, (_, t) in enumerate(trusted.state_dict().items())]
    assert sub.load("a", tensors=renamed) == "order"
    got = sub.state("a")
    assert all(torch.equal(t, r) for (_, t, _), (_, r) in zip(got, renamed))
    with pytest.raises(SandboxError, match="by name or by order and shape"):
        sub.load("a", tensors=renamed[:-1])


def test_forward_by_handle_is_eval_and_no_grad_unless_train(sub):
    sub.new("mode", "Mode")
    x = torch.zeros(2)
    (out,) = sub.forward_handle("mode", [x])
    assert out["ok"] and out["output"].tolist() == [0.0, 0.0]
    (out,) = sub.forward_handle("mode", [x], train=True)
    assert out["output"].tolist() == [1.0, 1.0]
    sub.new("net2", "Net", seed=0)
    outs = sub.forward_handle("net2", [torch.ones(3, 4), torch.ones(3, 7)])
    assert outs[0]["ok"] and list(outs[0]["output"].shape) == [3, 3]
    assert not outs[1]["ok"] and "shapes cannot be multiplied" in outs[1]["error"]


def test_the_fcn_form_of_the_old_ops_still_answers(sub):
    assert sub.request("call", name="picky", calls=[{"args": [2]}])["results"][0]["value"] == [2, {"twice": 4}]
    d = sub.request("describe", name="Seg", n_classes=3)
    assert d["model_type"] == "Seg" and d["params"][-1] == ["head.bias", [3]]
    r = sub.request("forward", name="Seg", n_classes=3, weights=None, inputs=[torch.ones(2, 4)])
    assert r["matched_by"] == "own" and list(r["outputs"][0]["output"].shape) == [2, 3]

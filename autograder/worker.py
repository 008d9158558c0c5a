"""The sandboxed worker: runs a submission's code and answers the trusted grader's requests.

This file runs INSIDE the sandbox (see :mod:`autograder.sandbox`) as a plain script; it imports only
the standard library, torch, numpy and assignment_lib, never ``autograder``. It decides nothing: it
executes cells, builds models, runs forward passes and returns plain data (tensors, numbers,
strings, lists, dicts). Every verdict is computed by the trusted grader process.

Protocol: the grader writes ``req_<n>.pt`` (``torch.save``) into the scratch folder and the line
``<n>`` to the control-in pipe; the worker writes ``resp_<n>.pt`` and the line ``done <n>`` to the
control-out pipe. While executing cells it writes ``cell <grade_id>`` first, so that a cell that
hangs or kills the process can be named and skipped on restart. Student output goes to the
worker's stdout/stderr (files on the grader side), never into the protocol.

Usage: ``python -I worker.py SCRATCH CTL_IN_FD CTL_OUT_FD [LIB_DIR]``.
"""

from __future__ import annotations

import os
import signal
import sys
import traceback

_SCRATCH, _CTL_IN, _CTL_OUT = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
if len(sys.argv) > 4 and sys.argv[4]:
    sys.path.insert(0, sys.argv[4])

import torch
from torch import nn

# Bind what the protocol needs before any student code can monkeypatch it.
_save, _load, _os_write, _os_replace = torch.save, torch.load, os.write, os.replace
_Tensor = torch.Tensor

NAMESPACE: dict = {"__name__": "__main__"}
_MODELS: dict = {}
#: Objects the grader refers to by a string handle (``{"$handle": H}`` in a request's arguments).
_HANDLES: dict = {}
#: Dotted paths a request may name besides the submission's own names (imported here, in the sandbox).
_IMPORTABLE = ("torch.", "torchvision.", "assignment_lib.")
#: Random weight tensors by (seed, position, shape, std) (see make_weights).
_WEIGHTS: dict = {}
_MAX_TRACEBACK = 4000


def _send(line: str) -> None:
    _os_write(_CTL_OUT, (line + "\n").encode())


def _tb(limit_to_cell: bool = True) -> str:
    """The traceback of the current exception, without the worker's own frames."""
    etype, value, tb = sys.exc_info()
    frames = traceback.extract_tb(tb)
    frames = [f for f in frames if not f.filename.endswith("worker.py")] if limit_to_cell else frames
    text = "".join(traceback.format_list(frames)) + "".join(
        traceback.format_exception_only(etype, value))
    if len(text) > _MAX_TRACEBACK:
        text = "..." + text[-_MAX_TRACEBACK:]
    return text


def _plain(x, depth=0):
    """Convert a value to plain data that the grader accepts (tensors detached to CPU)."""
    if depth > 20:
        return "<too deeply nested>"
    if isinstance(x, torch.Tensor):
        return x.detach().to("cpu").clone().as_subclass(_Tensor)
    if type(x) in (bool, int, float, str) or x is None:
        return x
    if isinstance(x, (list, tuple)):
        return [_plain(v, depth + 1) for v in x]
    if isinstance(x, dict):
        return {str(k): _plain(v, depth + 1) for k, v in x.items()}
    return {"__unsupported__": type(x).__name__, "repr": repr(x)[:200]}


# ------------------------------------------------------------------------------------- requests


def op_exec_cells(req):
    results = []
    for cell in req["cells"]:
        gid = cell["grade_id"]
        if gid in req.get("skip", []):
            results.append({"grade_id": gid, "ok": False, "skipped": True, "error": ""})
            continue
        _send(f"cell {gid}")
        try:
            code = compile(cell["source"], f"<cell {gid}>", "exec")
            exec(code, NAMESPACE)
            results.append({"grade_id": gid, "ok": True, "skipped": False, "error": ""})
        except BaseException:  # SystemExit and KeyboardInterrupt included: the next cell still runs
            results.append({"grade_id": gid, "ok": False, "skipped": False, "error": _tb()})
    return {"cells": results}


def _hyper(m: nn.Module) -> dict:
    attrs = {}
    for key in ("in_channels", "out_channels", "kernel_size", "stride", "padding", "output_padding",
                "dilation", "groups", "ceil_mode", "p", "inplace", "padding_mode"):
        if hasattr(m, key):
            v = getattr(m, key)
            if isinstance(v, (int, float, str, bool, tuple, list)) or v is None:
                attrs[key] = list(v) if isinstance(v, tuple) else v
    if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
        attrs["bias"] = m.bias is not None
    return attrs


def _defined(name):
    """The submission's ``name``, or a NameError that says which cell to look at."""
    fn = NAMESPACE.get(name)
    if fn is None:
        raise NameError(f"{name} is not defined (did its cell run without errors?)")
    return fn


def _construct(name, n_classes, default_init=True):
    """``name(n_classes=...)``. With ``default_init=False`` the conv and linear layers skip their
    random initialisation (``reset_parameters``), for a model whose every parameter is overwritten
    next; with ``default_init="zeros"`` they start at zero instead, for a model that is only
    described (the student's own initialisation, e.g. of the transposed convolutions, shows as it
    is, and a layer the student did not initialise shows zeros, never by chance a right value).
    Construction then costs milliseconds instead of a second (fc6 alone has 103 M weights).
    Everything else the constructor does (the student's own init, buffers) still runs."""
    cls = _defined(name)
    if default_init is True:
        return cls(n_classes=n_classes)
    saved = {c: c.reset_parameters for c in (nn.modules.conv._ConvNd, nn.Linear)}
    try:
        for c in saved:
            c.reset_parameters = _zero_params if default_init == "zeros" else _no_reset
        return cls(n_classes=n_classes)
    finally:
        for c, f in saved.items():
            c.reset_parameters = f


def _no_reset(self):
    pass


def _zero_params(self):
    with torch.no_grad():
        self.weight.zero_()
        if self.bias is not None:
            self.bias.zero_()


def _summary(model: nn.Module, trainable: bool = False) -> dict:
    """Layers (name, type, hyper-parameters; transposed convolutions with their weights), the
    state dict's names and shapes (with ``requires_grad`` when ``trainable``), parameter counts."""
    modules = []
    for mname, m in model.named_modules():
        if not mname:
            continue
        entry = {"name": mname, "type": type(m).__name__, "attrs": _hyper(m)}
        if isinstance(m, nn.ConvTranspose2d):
            entry["weight"] = m.weight
            entry["bias_tensor"] = m.bias if m.bias is not None else None
        modules.append(entry)
    out = {"modules": modules, "n_params": int(sum(p.numel() for p in model.parameters())),
           "model_type": type(model).__name__}
    if trainable:
        grads = {n: p.requires_grad for n, p in model.named_parameters()}
        out["params"] = [[n, list(t.shape), bool(grads.get(n, False))]
                         for n, t in model.state_dict().items()]
        out["n_trainable"] = int(sum(p.numel() for p in model.parameters() if p.requires_grad))
    else:
        out["params"] = [[n, list(p.shape)] for n, p in model.state_dict().items()]
    return out


def op_describe(req):
    """By handle (``{"handle": H}``: any stored module, with ``requires_grad`` per tensor and
    ``n_trainable``), or the FCN form ``{"name", "n_classes"}`` (builds ``name(n_classes=...)``)."""
    if req.get("handle") is not None:
        return _summary(_module(req["handle"]), trainable=True)
    return _summary(_construct(req["name"], req["n_classes"], default_init="zeros"))


def make_weights(spec) -> list:
    """Deterministic random tensors from a spec ``{"seed", "params": [[name, shape, std], ...]}``.

    The grader generates the same tensors with the same code (see ``autograder.hidden_plugin.make_weights``).
    Each tensor depends only on (seed, position, shape, std), so it is generated once per worker
    and reused (FCN-8s's spec repeats FCN-32s's VGG-16 part: about 1 s saved); the cached tensors
    are only ever copied into models (``load_state_dict``), never handed out.
    """
    out = []
    for i, (name, shape, std) in enumerate(spec["params"]):
        key = (int(spec["seed"]), i, tuple(shape), float(std))
        if key not in _WEIGHTS:
            g = torch.Generator().manual_seed(int(spec["seed"]) * 1_000_003 + i)
            _WEIGHTS[key] = torch.randn(tuple(shape), generator=g, dtype=torch.float32) * float(std)
        out.append((name, _WEIGHTS[key]))
    return out


def load_by_name_or_order(model: nn.Module, tensors: list) -> str:
    """Load ``[(name, tensor)]`` into ``model``: by name when names and shapes match, else by order and
    shape. Returns ``"name"`` or ``"order"``; raises ValueError when neither fits."""
    sd = model.state_dict()
    ref_names = [n for n, _ in tensors]
    if set(ref_names) == set(sd) and all(tuple(sd[n].shape) == tuple(t.shape) for n, t in tensors):
        model.load_state_dict(dict(tensors), strict=True)
        return "name"
    own = list(sd.items())
    if len(own) == len(tensors) and all(tuple(o.shape) == tuple(t.shape)
                                        for (_, o), (_, t) in zip(own, tensors)):
        model.load_state_dict({n: t for (n, _), (_, t) in zip(own, tensors)}, strict=True)
        return "order"
    raise ValueError(
        f"cannot match the model's {len(own)} parameter tensors with the {len(tensors)} expected "
        "ones by name or by order and shape: check the layers, their order and their sizes")


def _run_forward(model, inputs) -> list:
    outs = []
    for x in inputs:
        try:
            y = model(_unwrap(x))
            outs.append({"ok": True, "output": _plain(y) if isinstance(y, torch.Tensor) else None,
                         "type": type(y).__name__})
        except Exception:
            outs.append({"ok": False, "error": _tb()})
    return outs


def op_forward(req):
    """``{"handle": H, "inputs", "train": False}`` runs a stored module (eval mode and no gradients
    unless ``train``); the FCN form ``{"name", "n_classes", "weights", "inputs"}`` builds it."""
    if req.get("handle") is not None:
        model = _module(req["handle"])
        train = bool(req.get("train", False))
        model.train(train)
        with torch.set_grad_enabled(train):
            return {"outputs": _run_forward(model, req["inputs"])}
    spec = req.get("weights")
    key = (req["name"], req["n_classes"], None if spec is None else spec["seed"])
    if key not in _MODELS:
        _MODELS.clear()
        model = _construct(req["name"], req["n_classes"], default_init=spec is None)
        matched = "own" if spec is None else load_by_name_or_order(model, make_weights(spec))
        model.eval()
        _MODELS[key] = (model, matched)
    model, matched = _MODELS[key]
    with torch.no_grad():
        outs = _run_forward(model, req["inputs"])
    return {"matched_by": matched, "outputs": outs}


def op_call(req):
    fn = _defined(req["name"])
    results = []
    for args in req["calls"]:
        try:
            value = fn(*args.get("args", []), **args.get("kwargs", {}))
            results.append({"ok": True, "value": _plain(value), "type": type(value).__name__})
        except Exception as err:
            results.append({"ok": False, "raised": type(err).__name__, "message": str(err)[:500]})
    return {"results": results}


def op_loss_grad(req):
    fn = _defined(req["name"])
    out = []
    for case in req["cases"]:
        entry = {"ok": False}
        try:
            logits = case["logits"].clone().requires_grad_(True)
            loss = fn(logits, case["target"], **case.get("kwargs", {}))
            entry["loss"] = _plain(loss) if isinstance(loss, torch.Tensor) else None
            entry["type"] = type(loss).__name__
            if isinstance(loss, torch.Tensor) and loss.requires_grad:
                (grad,) = torch.autograd.grad(loss.sum(), logits)
                entry["grad"] = _plain(grad)
            entry["ok"] = True
            if case.get("gradcheck"):
                small = case["logits"].to(torch.float64).clone().requires_grad_(True)
                try:
                    entry["gradcheck"] = bool(torch.autograd.gradcheck(
                        lambda z: fn(z, case["target"], **case.get("kwargs", {})), (small,),
                        eps=1e-6, atol=1e-5, raise_exception=True))
                except Exception as err:
                    entry["gradcheck"] = False
                    entry["gradcheck_error"] = str(err)[:500]
        except Exception:
            entry["error"] = _tb()
        out.append(entry)
    return {"cases": out}


def op_train_predict(req):
    """Train ``req["name"]`` under the grading recipe ``req["recipe"]`` (``Recipe.to_dict()``) with
    :func:`assignment_lib.recipe.train_and_predict`, the function calibration runs on the reference,
    on the sent (image, target) pairs, and predict the sent test images; ``req["loss_fn"]`` names
    the loss a recipe trains with (a submission's name or a dotted path; ``None``: the recipe's
    default). The grader never sends the test labels and computes the mIoU itself."""
    from assignment_lib.recipe import train_and_predict

    recipe = req["recipe"]
    loss = _resolve(req["loss_fn"]) if req.get("loss_fn") else None
    out = train_and_predict(_defined(req["name"]), recipe,
                            [(img.numpy(), tgt.numpy()) for img, tgt in req["train"]],
                            [img.numpy() for img in req["test_images"]], device=req.get("device"),
                            vgg16_state_dict=req.get("vgg16"), loss_fn=loss)
    return {"predictions": [torch.as_tensor(p) for p in out["predictions"]]}


# ------------------------------------------------------------------ generic ops (by handle)


def _resolve(name):
    """A callable named by a request: ``{"$handle": H}`` (a stored object), a name the submission's
    cells define, or a dotted path under :data:`_IMPORTABLE` imported here, inside the sandbox."""
    if isinstance(name, dict):
        return _unwrap(name)
    if not isinstance(name, str):
        raise TypeError(f"expected a name or a handle, got {type(name).__name__}")
    if not name.startswith(_IMPORTABLE):
        return _defined(name)
    import importlib

    parts = name.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for attr in parts[i:]:
            obj = getattr(obj, attr)
        return obj
    raise NameError(f"{name} cannot be imported")


def _unwrap(x, depth=0):
    """``x`` with every ``{"$handle": H}`` replaced by the object stored under ``H``."""
    if depth > 20:
        return x
    if isinstance(x, dict):
        if set(x) == {"$handle"}:
            h = x["$handle"]
            if h not in _HANDLES:
                raise KeyError(f"no object is stored under the handle {h!r} (its construction "
                               "failed, or the worker restarted after an earlier failure)")
            return _HANDLES[h]
        return {k: _unwrap(v, depth + 1) for k, v in x.items()}
    if isinstance(x, list):
        return [_unwrap(v, depth + 1) for v in x]
    return x


def _module(handle) -> nn.Module:
    obj = _unwrap({"$handle": handle})
    if not isinstance(obj, nn.Module):
        raise TypeError(f"the object under handle {handle!r} is a {type(obj).__name__}, not an "
                        "nn.Module")
    return obj


def op_new(req):
    """Store ``factory(*args, **kwargs)`` under ``handle`` (after ``torch.manual_seed(seed)`` when a
    seed is given); returns the module's summary (as ``describe``) or the plain value."""
    factory = _resolve(req["factory"])
    args, kwargs = _unwrap(list(req.get("args", []))), _unwrap(dict(req.get("kwargs", {})))
    if req.get("seed") is not None:
        torch.manual_seed(int(req["seed"]))
    _HANDLES.pop(req["handle"], None)
    obj = factory(*args, **kwargs)
    _HANDLES[req["handle"]] = obj
    return _summary(obj, trainable=True) if isinstance(obj, nn.Module) else _plain(obj)


def op_invoke(req):
    """Call ``name(*args, **kwargs)``; store the result under ``handle`` when given. ``grad`` lists
    argument positions (int) or keyword names whose tensors get ``requires_grad=True``; the worker
    then backpropagates ``value.sum()`` and returns ``grads`` (None where no gradient arrived)."""
    try:
        fn = _resolve(req["name"])
        args, kwargs = _unwrap(list(req.get("args", []))), _unwrap(dict(req.get("kwargs", {})))
        leaves = {}
        for key in req.get("grad", []):
            box, k = (args, key) if isinstance(key, int) else (kwargs, key)
            if isinstance(box[k], torch.Tensor):
                box[k] = box[k].detach().clone().requires_grad_(True)
                leaves[key] = box[k]
        value = fn(*args, **kwargs)
        if req.get("handle") is not None:
            _HANDLES[req["handle"]] = value
        out = {"ok": True, "value": _plain(value), "type": type(value).__name__}
        if isinstance(value, torch.Tensor):
            out["requires_grad"] = bool(value.requires_grad)
        if "grad" in req:
            grads = {str(k): None for k in req["grad"]}
            if leaves and isinstance(value, torch.Tensor) and value.requires_grad:
                keys = list(leaves)
                got = torch.autograd.grad(value.sum(), [leaves[k] for k in keys], allow_unused=True)
                grads.update({str(k): g for k, g in zip(keys, got)})
            out["grads"] = grads
        return out
    except Exception as err:
        return {"ok": False, "raised": type(err).__name__, "message": str(err)[:500], "error": _tb()}


def op_state(req):
    """``{"tensors": [[name, tensor, requires_grad]]}`` of a stored module, in state-dict order."""
    model = _module(req["handle"])
    grads = {n: p.requires_grad for n, p in model.named_parameters()}
    return {"tensors": [[n, t, bool(grads.get(n, False))] for n, t in model.state_dict().items()]}


def op_load(req):
    """Load ``tensors`` (``[[name, tensor]]``) or the random ``weights`` spec into a stored module,
    by name, else by order and shape; returns ``{"matched_by": "name" | "order"}``."""
    model = _module(req["handle"])
    tensors = req.get("tensors")
    tensors = make_weights(req["weights"]) if tensors is None else [(n, t) for n, t in tensors]
    return {"matched_by": load_by_name_or_order(model, tensors)}


OPS = {"exec_cells": op_exec_cells, "describe": op_describe, "forward": op_forward,
       "call": op_call, "loss_grad": op_loss_grad, "train_predict": op_train_predict,
       "new": op_new, "invoke": op_invoke, "state": op_state, "load": op_load,
       "ping": lambda req: {"pong": True}}


def main():
    threads = int(os.environ.get("WORKER_THREADS", "1"))
    torch.set_num_threads(max(1, threads))
    if hasattr(signal, "SIGXFSZ"):
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a full output file gives EFBIG, not death
    ctl_in = os.fdopen(_CTL_IN, "r", buffering=1)
    for line in ctl_in:
        n = line.strip()
        if not n.isdigit():
            continue
        req = _load(os.path.join(_SCRATCH, f"req_{n}.pt"), weights_only=True)
        try:
            resp = {"ok": True, "result": _plain(OPS[req["op"]](req))}
        except BaseException:
            resp = {"ok": False, "error": _tb()}
        tmp = os.path.join(_SCRATCH, f".resp_{n}.tmp")
        _save(resp, tmp)
        _os_replace(tmp, os.path.join(_SCRATCH, f"resp_{n}.pt"))
        _send(f"done {n}")


if __name__ == "__main__":
    main()

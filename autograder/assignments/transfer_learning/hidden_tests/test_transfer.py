"""Hidden tests of ``replace_head`` and ``set_trainable`` (cell ``transfer_head``).

The student's functions run in the sandbox on models built there (torchvision's VGG-16 with the
student's head; :class:`assignment_lib.transfer.TinyVGG` where only the layout matters, so that a
mistake in ``replace_head`` costs only its own tests); the trusted side compares.
"""

from __future__ import annotations

import pytest
import torch

from assignment_lib.transfer import TinyVGG
from autograder.sandbox import SandboxError

N_CLASSES = 6
#: Parameters of VGG-16's 13 convolutions.
VGG16_FEATURES = 14_714_688
HEAD = 512 * 256 + 256 + 256 * N_CLASSES + N_CLASSES
MODES = ("feature_extractor", "fine_tune", "scratch")
SIZES = ((1, 32, 32), (2, 64, 80), (1, 97, 61))


def _inputs(seed=7):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(n, 3, h, w, generator=g) for n, h, w in SIZES]


def _vgg_with_head(submission, handle, shared=False):
    """VGG-16 (seeded random weights) in the sandbox, with the student's new head on it. ``shared``:
    built once for the tests that only read it (building VGG-16 costs seconds)."""
    submission.require("transfer_head")

    def build():
        submission.new(handle, "torchvision.models.vgg16", seed=0)
        return submission.invoke("replace_head", submission.ref(handle), N_CLASSES)

    if not shared:
        return build()
    if handle not in _BUILT:  # one pytest process per submission: this cache is per submission
        try:
            _BUILT[handle] = ("ok", build())
        except SandboxError as err:
            _BUILT[handle] = ("err", err)
    kind, value = _BUILT[handle]
    if kind == "err":
        raise value
    return value


_BUILT: dict = {}


def _tiny(submission, handle, seed):
    submission.require("transfer_head")
    return submission.new(handle, "assignment_lib.transfer.TinyVGG", seed=seed)


def _features_of(names):
    return [n for n in names if n.startswith("features.")]


def test_replace_head_output_shape(submission, partial):
    ret = _vgg_with_head(submission, "vgg_head", shared=True)
    problems = []
    if ret["type"] != "VGG":
        problems.append(f"replace_head returned {ret['type']}, not the model: change the model in "
                        "place and return it")
    outs = submission.forward_handle("vgg_head", _inputs())
    for (n, h, w), out in zip(SIZES, outs):
        if not out["ok"]:
            problems.append(f"an input ({n}, 3, {h}, {w}) raised: {out['error'][-300:]}")
        elif tuple(out["output"].shape) != (n, N_CLASSES):
            problems.append(f"an input ({n}, 3, {h}, {w}) gave {tuple(out['output'].shape)}, expected "
                            f"({n}, {N_CLASSES}) logits: check the global average pooling and the "
                            "last Linear's out_features (n_classes)")
    right = sum(out["ok"] and tuple(out["output"].shape) == (n, N_CLASSES) for (n, _, _), out in zip(SIZES, outs))
    # returning the (unchanged) model is credited only alongside a head that gives the new classes
    partial(0 if not right else 1 - len(problems) / (len(SIZES) + 1))
    assert not problems, "\n".join(problems)


def test_replace_head_param_count(submission):
    _vgg_with_head(submission, "vgg_head", shared=True)
    d = submission.describe_handle("vgg_head")
    want = VGG16_FEATURES + HEAD
    assert d["n_params"] == want, (
        f"VGG-16 with the new head has {d['n_params']:,} parameters, expected {want:,} "
        f"(the 13 convolutions {VGG16_FEATURES:,} plus Linear(512, 256) and Linear(256, {N_CLASSES})): "
        "check the head's layers, and that the old classifier is gone and the convolutions are kept")


def test_replace_head_same_weights(submission, reference):
    """The student's VGG-16 + head, its weights loaded into the reference's: the same logits."""
    _vgg_with_head(submission, "vgg_head", shared=True)
    state = submission.state("vgg_head")
    ref_model = reference.replace_head(torchvision_vgg16(), N_CLASSES).to_empty(device="cpu")
    ref_state = ref_model.state_dict()
    names = list(ref_state)
    shapes = [tuple(t.shape) for _, t, _ in state]
    want_shapes = [tuple(ref_state[n].shape) for n in names]
    if shapes != want_shapes:
        diff = next((i for i, (a, b) in enumerate(zip(shapes, want_shapes)) if a != b), None)
        where = (f"tensor {diff} ({state[diff][0]}) is {shapes[diff]}, expected {want_shapes[diff]}"
                 if diff is not None else f"{len(state)} tensors, expected {len(names)}")
        pytest.fail(f"the model's tensors differ from the reference's: {where}; check the head's "
                    "layers and their sizes")
    ref_model.load_state_dict({n: t for n, (_, t, _) in zip(names, state)})
    ref_model.eval()
    inputs = _inputs(11)
    outs = submission.forward_handle("vgg_head", inputs)
    with torch.no_grad():
        for x, out in zip(inputs, outs):
            assert out["ok"], f"the forward pass raised: {out['error'][-300:]}"
            want = ref_model(x)
            assert torch.allclose(out["output"], want, atol=1e-4, rtol=1e-4), (
                f"with the same weights the logits differ from the reference's (max difference "
                f"{(out['output'] - want).abs().max():.3g}): check the head's order (Linear, ReLU, "
                "Dropout, Linear) and the global AVERAGE pooling")


def torchvision_vgg16():
    """VGG-16 built on the meta device (no memory, no initialisation): every tensor is loaded next."""
    import torchvision

    with torch.device("meta"):
        return torchvision.models.vgg16()


def test_set_trainable_modes(submission, partial):
    """VGG-16 with the student's head: which parameters train in each mode, in the order
    feature_extractor, fine_tune, scratch; the last two get a model with every parameter frozen
    (they must unfreeze: a set_trainable that does nothing earns nothing here)."""
    _vgg_with_head(submission, "modes")
    problems = []
    for mode in MODES:
        if mode != "feature_extractor":  # start frozen whatever feature_extractor did: must unfreeze
            submission.invoke("torch.nn.Module.requires_grad_", submission.ref("modes"), False)
        try:
            submission.invoke("set_trainable", submission.ref("modes"), mode)
        except SandboxError as err:  # the call raised (or timed out): this mode's share is lost
            problems.append(f"set_trainable(model, {mode!r}) raised: {err}")
            continue
        params = submission.describe_handle("modes")["params"]
        flags = {n: g for n, _, g in params if n.endswith(("weight", "bias"))}
        if mode == "feature_extractor":
            wrong = [n for n, g in flags.items() if g == n.startswith("features.")]
            if wrong:
                problems.append(f"feature_extractor: wrong requires_grad for {wrong[:6]}{' ...' if len(wrong) > 6 else ''}: "
                                "freeze every parameter of model.features, train all the others")
        else:
            frozen = [n for n, g in flags.items() if not g]
            if frozen:
                problems.append(f"{mode}: these parameters are still frozen: {frozen[:6]}: every parameter "
                                "must be trainable, also on a model that arrives frozen (set requires_grad "
                                "True, e.g. after feature_extractor)")
    partial(1 - len(problems) / len(MODES))
    assert not problems, "\n".join(problems)


def test_set_trainable_unknown_mode(submission):
    _tiny(submission, "unknown", seed=0)
    try:
        submission.invoke("set_trainable", submission.ref("unknown"), "linear_probe")
    except SandboxError as err:
        raised = getattr(err, "raised", None)
        assert raised == "ValueError", (
            f"set_trainable(model, 'linear_probe') should raise ValueError, but {err}")
    else:
        pytest.fail("set_trainable(model, 'linear_probe') returned instead of raising ValueError: "
                    f"reject every mode outside {MODES}")


def test_frozen_weights_unchanged_after_step(submission, partial):
    """feature_extractor, then one SGD step with weight decay over ALL parameters
    (assignment_lib.transfer.optimizer_step): the backbone must not move, the classifier must."""
    _tiny(submission, "step", seed=3)
    submission.invoke("set_trainable", submission.ref("step"), "feature_extractor")
    before = {n: t for n, t, _ in submission.state("step")}
    g = torch.Generator().manual_seed(5)
    try:
        submission.invoke("assignment_lib.transfer.optimizer_step", submission.ref("step"),
                          torch.randn(4, 3, 16, 16, generator=g), torch.tensor([0, 1, 2, 3]))
    except SandboxError as err:
        pytest.fail(f"feature_extractor: an optimiser step failed ({err}); is anything left "
                    "trainable? The classifier must stay trainable")
    after = {n: t for n, t, _ in submission.state("step")}
    moved = [n for n in _features_of(before) if not torch.equal(before[n], after[n])]
    head = [n for n in before if not n.startswith("features.")]
    still = [n for n in head if n.endswith("weight") and torch.equal(before[n], after[n])]
    # a trainable head alone is what doing nothing gives: it counts only with the backbone frozen
    partial((not moved) * (0.5 + (not still) * 0.5))
    assert not moved, (f"feature_extractor: one optimiser step changed the frozen {moved}: set "
                       "requires_grad False on every parameter of model.features (model.eval() or "
                       "torch.no_grad() do not freeze anything)")
    assert not still, (f"feature_extractor: one optimiser step left {still} unchanged: the "
                       "classifier must stay trainable")


def test_scratch_reinitialises(submission, partial):
    """Known 'pretrained' weights loaded; scratch must replace every weight, the two other modes
    must keep them all."""
    g = torch.Generator().manual_seed(9)
    loaded = {n: torch.randn(t.shape, generator=g) for n, t in TinyVGG().state_dict().items()}
    problems, reinitialised = [], False
    for mode in MODES:
        handle = f"init_{mode}"
        _tiny(submission, handle, seed=4)
        submission.load(handle, tensors=list(loaded.items()))
        try:
            submission.invoke("set_trainable", submission.ref(handle), mode)
        except SandboxError as err:
            problems.append(f"set_trainable(model, {mode!r}) raised: {err}")
            continue
        now = {n: t for n, t, _ in submission.state(handle)}
        same = [n for n in loaded if n.endswith("weight") and torch.equal(now[n], loaded[n])]
        reinitialised = reinitialised or (mode == "scratch" and not same)
        if mode == "scratch" and same:
            problems.append(f"scratch: {same} still hold the pretrained weights: re-initialise every "
                            "layer (reset_parameters())")
        changed = [n for n in loaded if not torch.equal(now[n], loaded[n])]
        if mode != "scratch" and changed:
            problems.append(f"{mode}: the pretrained weights {changed} were changed: only scratch "
                            "re-initialises")
    # keeping the weights (the other two modes) is what doing nothing gives: it counts only when
    # scratch does re-initialise (not when it keeps the weights, nor when it raises)
    partial(1 - len(problems) / len(MODES) if reinitialised else 0)
    assert not problems, "\n".join(problems)

"""Hidden tests of FCN-32s and FCN-8s (cells ``fcn32s`` and ``fcn8s``).

Functional tests never hinge on layer names: weights are matched by name, else by order and shape,
and only the naming test fails for other names.
"""

from __future__ import annotations

import torch

from assignment_lib.layers import bilinear_kernel

from .conftest import (
    FCN_SIZES,
    disk_cached,
    fcn_inputs,
    make_weights,
    skip_default_init,
    weight_spec,
)

GID = {"FCN32s": "fcn32s", "FCN8s": "fcn8s"}
CROP_HINT = {"FCN32s": "the crop offset (19 for FCN-32s)",
             "FCN8s": "the crop offsets (5 for score_pool4, 9 for score_pool3, 31 at the end)"}
_REF_MODELS: dict = {}

HINTS = {
    ("conv1_1", "padding"): "conv1_1 needs padding=100: FCN pads the input so that small images "
                            "survive the five poolings and fc6's 7x7 kernel",
    ("pool", "ceil_mode"): "the pools are MaxPool2d(2, stride=2, ceil_mode=True) so odd sizes round up",
    ("fc6", None): "fc6 is VGG's first fully connected layer as a convolution: Conv2d(512, 4096, 7)",
    ("fc7", None): "fc7 is a 1x1 convolution: Conv2d(4096, 4096, 1)",
    ("drop", None): "dropout after fc6/fc7 is nn.Dropout2d (drops whole feature maps)",
    ("upscore", "bias"): "transposed convs in FCN have bias=False",
    ("score_pool", None): "score_pool3/score_pool4 are 1x1 convolutions to n_classes",
}


def ref_model(reference, name, weights=True):
    """``(model, spec)``: the reference ``name`` and its random-weight spec; with ``weights`` the
    spec's weights are loaded (only needed to compute outputs that are not cached yet)."""
    if name not in _REF_MODELS:
        with skip_default_init():
            m = getattr(reference, name)(n_classes=12).eval()
        _REF_MODELS[name] = [m, weight_spec(m), False]
    entry = _REF_MODELS[name]
    if weights and not entry[2]:
        entry[0].load_state_dict(make_weights(entry[1]))
        entry[2] = True
    return entry[0], entry[1]


def ref_description(reference, name):
    m, _ = ref_model(reference, name, weights=False)
    mods = []
    for mname, mod in m.named_modules():
        if mname:
            attrs = {k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(mod).items()
                     if k in ("in_channels", "out_channels", "kernel_size", "stride", "padding",
                              "output_padding", "ceil_mode", "p")}
            if isinstance(mod, (torch.nn.Conv2d, torch.nn.ConvTranspose2d)):
                attrs["bias"] = mod.bias is not None
            mods.append({"name": mname, "type": type(mod).__name__, "attrs": attrs})
    return mods


def ref_outputs(reference, grading, name):
    def compute():
        m, _ = ref_model(reference, name)
        with torch.no_grad():
            return [m(x) for x in fcn_inputs()]
    from pathlib import Path
    cache = Path(grading["cache_dir"]) if grading.get("cache_dir") else None
    return disk_cached(cache, f"fcn-out-{name}-{FCN_SIZES}", compute, grading["bundle"])


def sub_forward(submission, reference, name, same_weights=True):
    """The submission's outputs for :data:`FCN_SIZES`, with the reference's random weights."""
    _, spec = ref_model(reference, name, weights=False)

    def run():
        return submission.request("forward", name=name, n_classes=12,
                                  weights=spec if same_weights else None, inputs=fcn_inputs())
    return submission.cached(("forward", name, same_weights), run)


def _hint(name: str, attr: str | None) -> str:
    for (key, a), text in HINTS.items():
        if name.startswith(key) and (a is None or a == attr):
            return " (" + text + ")"
    return ""


KINDS = {"Conv2d": "conv", "ConvTranspose2d": "conv", "MaxPool2d": "pool",
         "Dropout2d": "drop", "Dropout": "drop"}


# ------------------------------------------------------------------------------------ checks


def check_layer_names(submission, reference, partial, name):
    submission.require(GID[name])
    desc = submission.describe(name)
    have = {n.rsplit(".", 1)[0] for n, _ in desc["params"]}
    expected = [d["name"] for d in ref_description(reference, name)
                if d["type"] in ("Conv2d", "ConvTranspose2d")]
    missing = [n for n in expected if n not in have]
    partial(1 - len(missing) / len(expected))
    assert not missing, (
        f"{name} has no layer(s) named {', '.join(missing)}. Use the layer names of Long et al. / "
        "wkentaro/pytorch-fcn (conv1_1 ... conv5_3, fc6, fc7, score_fr, upscore...) so that "
        "pretrained weights load by name; the other tests do not depend on names.")


def check_layer_types(submission, reference, partial, name):
    submission.require(GID[name])
    desc = submission.describe(name)
    ref = [d for d in ref_description(reference, name) if d["type"] in KINDS]
    sub = [d for d in desc["modules"] if d["type"] in KINDS]
    by_name = {d["name"]: d for d in sub}
    by_kind: dict[str, list] = {}
    for d in sub:
        by_kind.setdefault(KINDS[d["type"]], []).append(d)
    position: dict[str, int] = {}
    problems = []
    for r in ref:
        kind = KINDS[r["type"]]
        i = position.get(kind, 0)
        position[kind] = i + 1
        s = by_name.get(r["name"])
        if s is None:
            lst = by_kind.get(kind, [])
            s = lst[i] if i < len(lst) else None
        if s is None:
            problems.append(f"{r['name']}: no matching {r['type']} layer{_hint(r['name'], None)}")
            continue
        if s["type"] != r["type"]:
            problems.append(f"{r['name']}: is {s['type']}, expected {r['type']}"
                            f"{_hint(r['name'], None)}")
            continue
        for attr, want in r["attrs"].items():
            got = s["attrs"].get(attr)
            if got != want:
                problems.append(f"{r['name']}: {attr} is {got}, expected {want}"
                                f"{_hint(r['name'], attr)}")
    bad = {p.split(":")[0] for p in problems}
    partial(1 - len(bad) / len(ref))
    assert not problems, f"{name} layer types/hyperparameters:\n- " + "\n- ".join(problems[:12])


def check_param_count(submission, reference, name):
    submission.require(GID[name])
    desc = submission.describe(name)
    want = sum(p.numel() for p in ref_model(reference, name, weights=False)[0].parameters())
    got = desc["n_params"]
    assert type(got) is int and got == want, (
        f"{name}(n_classes=12) has {got:,} parameters, expected {want:,} (difference "
        f"{got - want:+,}): check the channel counts, kernel sizes (fc6 is 7x7), the 1x1 score "
        "layers and that transposed convolutions have no bias")


def check_output_size(submission, reference, partial, name):
    submission.require(GID[name])
    try:
        resp = sub_forward(submission, reference, name, same_weights=True)
    except Exception:
        resp = sub_forward(submission, reference, name, same_weights=False)
    problems = []
    for (h, w), out in zip(FCN_SIZES, resp["outputs"]):
        if not out["ok"]:
            problems.append(f"a {h}x{w} input raised an error:\n{out['error'].strip()}")
        elif out["output"] is None:
            problems.append(f"forward returned a {out['type']}, not a tensor")
        elif tuple(out["output"].shape) != (1, 12, h, w):
            shape = "x".join(map(str, out["output"].shape))
            problems.append(f"output is {shape} for a 1x3x{h}x{w} input: check "
                            f"{CROP_HINT[name]} and that you crop to the input's height and width")
    partial(1 - len(problems) / len(FCN_SIZES))
    assert not problems, f"{name}: " + "\n".join(problems)


def check_same_weights(submission, reference, grading, partial, name):
    submission.require(GID[name])
    resp = sub_forward(submission, reference, name, same_weights=True)
    refs = ref_outputs(reference, grading, name)
    problems = []
    for (h, w), out, ref in zip(FCN_SIZES, resp["outputs"], refs):
        y = out.get("output") if out["ok"] else None
        if y is None or tuple(y.shape) != tuple(ref.shape):
            problems.append(f"{h}x{w}: no output of the right size (see the output-size test)")
            continue
        tol = 1e-4 * float(ref.abs().max()) + 1e-6
        diff = float((y - ref).abs().max())
        if not diff <= tol:
            problems.append(f"{h}x{w}: largest difference {diff:.3g} (allowed {tol:.2g})")
    partial(1 - len(problems) / len(FCN_SIZES))
    assert not problems, (
        f"with the SAME weights as the reference (eval mode), {name}'s output differs:\n"
        + "\n".join(problems) + f"\nCheck {CROP_HINT[name]}, the order of the layers, the ReLUs "
        "and the skip additions.")


def check_upsampling_init(submission, name, n_expected):
    submission.require(GID[name])
    desc = submission.describe(name)
    ups = [d for d in desc["modules"] if d["type"] == "ConvTranspose2d"]
    assert len(ups) == n_expected, (
        f"{name} has {len(ups)} nn.ConvTranspose2d layer(s), expected {n_expected}")
    problems = []
    for d in ups:
        if d["attrs"].get("bias"):
            problems.append(f"{d['name']} has a bias: transposed convs in FCN have bias=False")
        w = d.get("weight")
        if type(w) is not torch.Tensor or w.dim() != 4:
            problems.append(f"{d['name']}: weight not available")
            continue
        k = w.shape[-1]
        want = bilinear_kernel(w.shape[0], w.shape[1], k)
        if w.shape != want.shape or not torch.allclose(w, want, atol=1e-6):
            problems.append(f"{d['name']}: weights are not the bilinear kernel; initialise them "
                            f"with bilinear_kernel({w.shape[0]}, {w.shape[1]}, {k})")
    assert not problems, "\n".join(problems)


# ------------------------------------------------------------------------------------- tests


def test_fcn32s_layer_names(submission, reference, partial):
    check_layer_names(submission, reference, partial, "FCN32s")


def test_fcn32s_layers(submission, reference, partial):
    check_layer_types(submission, reference, partial, "FCN32s")


def test_fcn32s_param_count(submission, reference):
    check_param_count(submission, reference, "FCN32s")


def test_fcn32s_output_size(submission, reference, partial):
    check_output_size(submission, reference, partial, "FCN32s")


def test_fcn32s_same_weights(submission, reference, grading, partial):
    check_same_weights(submission, reference, grading, partial, "FCN32s")


def test_fcn32s_upsampling_init(submission):
    check_upsampling_init(submission, "FCN32s", 1)


def test_fcn8s_layer_names(submission, reference, partial):
    check_layer_names(submission, reference, partial, "FCN8s")


def test_fcn8s_layers(submission, reference, partial):
    check_layer_types(submission, reference, partial, "FCN8s")


def test_fcn8s_param_count(submission, reference):
    check_param_count(submission, reference, "FCN8s")


def test_fcn8s_output_size(submission, reference, partial):
    check_output_size(submission, reference, partial, "FCN8s")


def test_fcn8s_same_weights(submission, reference, grading, partial):
    check_same_weights(submission, reference, grading, partial, "FCN8s")


def test_fcn8s_upsampling_init(submission):
    check_upsampling_init(submission, "FCN8s", 3)



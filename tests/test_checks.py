"""The visible self-checks pass on the reference solutions and fail, with a teaching message, on
typical mistakes (each mistake is made by editing the reference solution's source text)."""

from __future__ import annotations

import nbformat
import pytest
import torch

from assignment_lib import checks

FCN_NB = "notebooks/fcn_segmentation/fcn_segmentation.ipynb"
UP_NB = "notebooks/fcn_segmentation/upsampling_and_iou.ipynb"


def _cells(repo_root, nb_path) -> dict[str, str]:
    nb = nbformat.read(repo_root / nb_path, as_version=4)
    return {c.metadata["nbgrader"]["grade_id"]: c.source for c in nb.cells
            if c.cell_type == "code" and "nbgrader" in c.metadata}


def _define(cells: dict[str, str], imports: str, answer: str, name: str, edits=()):
    """Execute the imports cell and the (edited) answer cell; return the object ``name``."""
    src = cells[answer]
    for old, new in edits:
        assert src.count(old) >= 1, f"mutation target {old!r} not in the reference cell"
        src = src.replace(old, new)
    ns: dict = {}
    exec(cells[imports], ns)  # noqa: S102 (the trusted reference solution)
    exec(src, ns)  # noqa: S102
    return ns[name]


@pytest.fixture(scope="module")
def fcn_cells(repo_root):
    return _cells(repo_root, FCN_NB)


@pytest.fixture(scope="module")
def up_cells(repo_root):
    return _cells(repo_root, UP_NB)


def fcn(cells, name, *edits):
    return _define(cells, "fcn_imports", name.lower(), name, edits)


def up(cells, name, *edits):
    return _define(cells, "upsampling_imports", name, name, edits)


# ---------------------------------------------------------------- reference passes

def test_fcn32s_reference_passes(fcn_cells, capsys):
    checks.check_fcn32s(fcn(fcn_cells, "FCN32s"))
    out = capsys.readouterr().out
    assert out.count("\u2713") >= 5 and "parameters" in out


def test_fcn8s_reference_passes(fcn_cells, capsys):
    checks.check_fcn8s(fcn(fcn_cells, "FCN8s"))
    out = capsys.readouterr().out
    assert out.count("\u2713") >= 7 and "parameters" in out


def test_padding_and_loss_reference_pass(up_cells, capsys):
    checks.check_transposed_conv_padding(up(up_cells, "transposed_conv_padding"))
    checks.check_soft_iou_loss(up(up_cells, "soft_iou_loss"))
    assert capsys.readouterr().out.count("\u2713") == 10


# ---------------------------------------------------------------- FCN mistakes

@pytest.fixture
def one_small_size(monkeypatch):
    """Mistakes caught by the forward pass: one small odd input is enough (and faster)."""
    monkeypatch.setattr(checks, "_SIZES", ((1, 21, 29),))


def test_fcn32s_wrong_crop_offset(fcn_cells, one_small_size):
    bad = fcn(fcn_cells, "FCN32s", ("19:19 + x.size(2), 19:19 + x.size(3)",
                                    "0:0 + x.size(2), 0:0 + x.size(3)"))
    with pytest.raises(AssertionError, match=r"cropped at offset \(0, 0\).*line the result up"):
        checks.check_fcn32s(bad)


def test_fcn32s_no_crop(fcn_cells, one_small_size):
    bad = fcn(fcn_cells, "FCN32s", ("return h[:, :, 19:19 + x.size(2), 19:19 + x.size(3)]",
                                    "return h[:, :, :, :]"))
    with pytest.raises(AssertionError, match=r"output is 1x12x\d+x\d+ for a 21x29 input.*crop offset"):
        checks.check_fcn32s(bad)


def test_fcn32s_missing_padding_100(fcn_cells):
    bad = fcn(fcn_cells, "FCN32s", ("nn.Conv2d(3, 64, 3, padding=100)", "nn.Conv2d(3, 64, 3, padding=1)"))
    with pytest.raises(AssertionError, match=r"conv1_1 has padding .*expected 100"):
        checks.check_fcn32s(bad)


def test_fcn32s_upscore_with_bias(fcn_cells):
    bad = fcn(fcn_cells, "FCN32s", ("stride=32, bias=False", "stride=32, bias=True"))
    with pytest.raises(AssertionError, match=r"upscore must be created with bias=False"):
        checks.check_fcn32s(bad)


def test_fcn32s_not_bilinear(fcn_cells):
    bad = fcn(fcn_cells, "FCN32s", ("self.upscore.weight.copy_(bilinear_kernel(n_classes, n_classes, 64))",
                                    "pass"))
    with pytest.raises(AssertionError, match=r"upscore.weight is not the bilinear kernel"):
        checks.check_fcn32s(bad)


def test_fcn32s_floor_pooling(fcn_cells):
    bad = fcn(fcn_cells, "FCN32s", ("ceil_mode=True", "ceil_mode=False"))
    with pytest.raises(AssertionError, match=r"pool1 needs ceil_mode=True"):
        checks.check_fcn32s(bad)


def test_fcn32s_wrong_layer_name(fcn_cells):
    bad = fcn(fcn_cells, "FCN32s", ("self.score_fr", "self.score"))
    with pytest.raises(AssertionError, match=r"no attribute 'score_fr'"):
        checks.check_fcn32s(bad)


def test_fcn8s_wrong_skip_crop(fcn_cells, one_small_size):
    bad = fcn(fcn_cells, "FCN8s", ("score_pool4[:, :, 5:5 + upscore2.size(2), 5:5 + upscore2.size(3)]",
                                   "score_pool4[:, :, 0:0 + upscore2.size(2), 0:0 + upscore2.size(3)]"))
    with pytest.raises(AssertionError, match=r"pool4 skip .*cropped at offset \(0, 0\)"):
        checks.check_fcn8s(bad)


def test_fcn8s_upscore8_with_bias(fcn_cells):
    bad = fcn(fcn_cells, "FCN8s", ("16, stride=8, bias=False", "16, stride=8, bias=True"))
    with pytest.raises(AssertionError, match=r"upscore8 must be created with bias=False"):
        checks.check_fcn8s(bad)


def test_fcn8s_wrong_skip_channels(fcn_cells):
    bad = fcn(fcn_cells, "FCN8s", ("nn.Conv2d(256, n_classes, 1)", "nn.Conv2d(512, n_classes, 1)"))
    with pytest.raises(AssertionError, match=r"score_pool3 maps 512 -> 12 .*expected 256 -> 12"):
        checks.check_fcn8s(bad)


def test_fcn8s_inheriting_upscore_is_named(fcn_cells):
    """class FCN8s(FCN32s) carries FCN-32s's upscore: the check names it (not a bare count)."""
    fcn32s = fcn(fcn_cells, "FCN32s")
    ns = {"FCN32s": fcn32s}
    exec(fcn_cells["fcn_imports"], ns)  # noqa: S102
    src = fcn_cells["fcn8s"].replace("class FCN8s(nn.Module):", "class FCN8s(FCN32s):")
    exec(src, ns)  # noqa: S102
    with pytest.raises(AssertionError, match=r"'upscore' with 589,824 parameters.*subclasses FCN32s"):
        checks.check_fcn8s(ns["FCN8s"])


def test_fcn8s_copied_upscore_is_named(fcn_cells):
    extra = "        self.upscore = nn.ConvTranspose2d(n_classes, n_classes, 64, stride=32, bias=False)\n"
    bad = fcn(fcn_cells, "FCN8s", ("        self.score_pool3 = nn.Conv2d(",
                                   extra + "        self.score_pool3 = nn.Conv2d("))
    with pytest.raises(AssertionError, match=r"'upscore' .*FCN-32s's"):
        checks.check_fcn8s(bad)


def test_fcn32s_extra_layer_is_named(fcn_cells):
    bad = fcn(fcn_cells, "FCN32s", ("        self.score_fr = nn.Conv2d(",
                                    "        self.spare = nn.Linear(3, 4)\n        self.score_fr = nn.Conv2d("))
    with pytest.raises(AssertionError, match=r"outside the layers the notebook names: spare \(16 parameters\)"):
        checks.check_fcn32s(bad)


def test_fcn32s_wrong_vgg_channels_without_the_table(fcn_cells):
    bad = fcn(fcn_cells, "FCN32s", ("nn.Conv2d(128, 256, 3, padding=1)", "nn.Conv2d(128, 192, 3, padding=1)"))
    with pytest.raises(AssertionError, match=r"conv3_1 maps 128 -> 192 .*not VGG-16's conv3_1") as err:
        checks.check_fcn32s(bad)
    assert "256" not in str(err.value)  # says what is wrong, not the answer


def test_fcn32s_wrong_crop_does_not_tell_the_offset(fcn_cells, one_small_size):
    bad = fcn(fcn_cells, "FCN32s", ("19:19 + x.size(2), 19:19 + x.size(3)",
                                    "18:18 + x.size(2), 18:18 + x.size(3)"))
    with pytest.raises(AssertionError, match=r"offset \(18, 18\)") as err:
        checks.check_fcn32s(bad)
    assert "19" not in str(err.value)


def test_fcn8s_wrong_output_crop(fcn_cells, one_small_size):
    bad = fcn(fcn_cells, "FCN8s", ("h[:, :, 31:31 + x.size(2), 31:31 + x.size(3)]",
                                   "h[:, :, 32:32 + x.size(2), 32:32 + x.size(3)]"))
    with pytest.raises(AssertionError, match=r"output is upscore8's output cropped at offset \(32, 32\)"):
        checks.check_fcn8s(bad)


def test_require_names_the_unfinished_section():
    checks.require({"a": 1}, ["a"], {"a": "section 1"})  # present: no error
    with pytest.raises(checks.UnfinishedExercise, match=r"'b'.*finish section 2 \(FCN8s\) first"):
        checks.require({"a": 1}, ["a", "b"], {"a": "section 1", "b": "section 2 (FCN8s)"})


# ---------------------------------------------------------------- padding mistakes

def test_padding_wrong_formula(up_cells):
    # padding = (k - s) // 2 without output_padding: wrong for odd k - s
    bad = up(up_cells, "transposed_conv_padding",
             ("output_padding = 2 * padding - (kernel_size - stride)", "output_padding = 0"))
    with pytest.raises(AssertionError, match=r"H_out = \(H_in - 1\)\*stride - 2\*padding"):
        checks.check_transposed_conv_padding(bad)


def test_padding_returns_floats():
    with pytest.raises(AssertionError, match=r"must be ints"):
        checks.check_transposed_conv_padding(lambda k, stride=2: ((k - stride) / 2, 0))


def test_padding_not_a_tuple():
    with pytest.raises(AssertionError, match=r"return a tuple"):
        checks.check_transposed_conv_padding(lambda k, stride=2: k)


# ---------------------------------------------------------------- loss mistakes

def test_loss_without_softmax(up_cells):
    bad = up(up_cells, "soft_iou_loss", ("probs = logits.softmax(dim=1)", "probs = logits"))
    with pytest.raises(AssertionError, match=r"without softmax|\[0, 1\]|perfect"):
        checks.check_soft_iou_loss(bad)


def test_loss_without_softmax_on_hand_case():
    """A loss that skips softmax but clamps to [0, 1] still fails on the hand-computed case."""
    def no_softmax(logits, target, smooth=1e-6, ignore_index=None):
        p = logits.sigmoid() * (logits.abs() > 1e-9)  # 0 for zero logits, ~1 for confident ones
        y = torch.nn.functional.one_hot(target, logits.shape[1]).permute(0, 3, 1, 2).float()
        inter = (p * y).sum((0, 2, 3))
        union = (p + y - p * y).sum((0, 2, 3))
        return 1 - ((inter + smooth) / (union + smooth)).mean()

    with pytest.raises(AssertionError, match=r"used without softmax"):
        checks.check_soft_iou_loss(no_softmax)


def test_loss_softmax_wrong_dim(up_cells):
    bad = up(up_cells, "soft_iou_loss", ("probs = logits.softmax(dim=1)", "probs = logits.softmax(dim=0)"))
    with pytest.raises(AssertionError, match=r"wrong dimension"):
        checks.check_soft_iou_loss(bad)


def test_loss_ignores_ignore_index(up_cells):
    # mask only the one-hot target, not the probabilities: ignored pixels still enter the union
    bad = up(up_cells, "soft_iou_loss", ("probs = probs * mask", "pass"))
    with pytest.raises(AssertionError, match=r"ignore_index changed the loss"):
        checks.check_soft_iou_loss(bad)


def test_loss_binary_averages_both_classes(up_cells):
    bad = up(up_cells, "soft_iou_loss", ("if n_classes == 2:", "if False:"))
    with pytest.raises(AssertionError, match=r"foreground channel .*You averaged both classes"):
        checks.check_soft_iou_loss(bad)


def test_loss_detached(up_cells):
    bad = up(up_cells, "soft_iou_loss", ("probs = logits.softmax(dim=1)",
                                         "probs = logits.detach().softmax(dim=1)"))
    with pytest.raises(AssertionError, match=r"not connected to the logits"):
        checks.check_soft_iou_loss(bad)


def test_checks_hold_no_solution_code(repo_root, fcn_cells, up_cells):
    """The self-checks ship to students: no line of a reference solution may appear in them."""
    text = (repo_root / "assignment_lib" / "checks.py").read_text()
    for cells in (fcn_cells, up_cells):
        for src in cells.values():
            if "### BEGIN SOLUTION" not in src:
                continue
            body = src.split("### BEGIN SOLUTION", 1)[1]
            for line in body.splitlines():
                line = line.strip()
                if len(line) > 30 and not line.startswith(("#", "super()", "h = self.relu")):
                    assert line not in text, f"solution line in checks.py: {line}"


# ---------------------------------------------------------------- hashed expectations

def derived_expectations(fcn32s_cls, fcn8s_cls) -> dict[str, str]:
    """Every digest of ``checks._EXPECTED``, derived from the reference models themselves: layer
    shapes and paddings of the VGG-16 convolutions, parameter counts, and the crop offsets found
    by locating the output (and each skip) inside the layer it was cropped from."""
    torch.manual_seed(0)
    m32, m8 = fcn32s_cls(n_classes=12).eval(), fcn8s_cls(n_classes=12).eval()
    out = {}
    for name in checks._VGG_CONVS:
        conv = getattr(m8, name)
        out[f"{name}.shape"] = checks._digest(f"{name}.shape", (conv.in_channels, conv.out_channels,
                                                                *conv.kernel_size))
        out[f"{name}.padding"] = checks._digest(f"{name}.padding", conv.padding[0])
    for key, model in (("fcn32s.params", m32), ("fcn8s.params", m8)):
        out[key] = checks._digest(key, sum(p.numel() for p in model.parameters()))
    x = torch.randn(1, 3, 37, 45)

    def offset(big, small):
        (found,) = checks._find_crops(big, small)
        assert found[0] == found[1]
        return found[0]

    y, outs, _ = checks._run_with_hooks(m32, ["upscore"], x)
    out["fcn32s.crop"] = checks._digest("fcn32s.crop", offset(outs["upscore"], y))
    names = ["score_pool4", "upscore2", "upscore_pool4", "score_pool3", "upscore8"]
    y, outs, ins = checks._run_with_hooks(m8, names, x)
    out["fcn8s.crop_pool4"] = checks._digest(
        "fcn8s.crop_pool4", offset(outs["score_pool4"], ins["upscore_pool4"] - outs["upscore2"]))
    out["fcn8s.crop_pool3"] = checks._digest(
        "fcn8s.crop_pool3", offset(outs["score_pool3"], ins["upscore8"] - outs["upscore_pool4"]))
    out["fcn8s.crop"] = checks._digest("fcn8s.crop", offset(outs["upscore8"], y))
    return out


def test_hashed_expectations_match_the_reference(fcn_cells):
    """The shipped digests are exactly those derived from the reference solution (if the solution
    changes, paste the printed dict into checks._EXPECTED)."""
    derived = derived_expectations(fcn(fcn_cells, "FCN32s"), fcn(fcn_cells, "FCN8s"))
    assert checks._EXPECTED == derived, f"update checks._EXPECTED to {derived!r}"


def test_checks_do_not_state_the_answers(repo_root, fcn_cells):
    """checks.py ships to students: no crop offset, parameter count or VGG-16 channel table in
    its text (only their digests), and the digests are not those of trivial values."""
    import re

    text = (repo_root / "assignment_lib" / "checks.py").read_text()
    code = "\n".join(line.split("#", 1)[0] for line in text.splitlines())
    numbers = {int(n) for n in re.findall(r"(?<![\w.-])\d+(?![\w.])", code)}
    assert not numbers & {19, 31, 9}, numbers & {19, 31, 9}   # crop offsets (5 is an input size)
    assert not re.search(r"[:\[]\s*5\s*:", code)                # no 5:5+... slice
    m32, m8 = fcn(fcn_cells, "FCN32s")(12), fcn(fcn_cells, "FCN8s")(12)
    for model in (m32, m8):
        count = sum(p.numel() for p in model.parameters())
        assert str(count) not in text and f"{count:,}" not in text and f"{count:_}" not in text
    for channels in (128, 256):  # VGG-16's middle blocks: not stated anywhere in checks.py
        assert channels not in numbers, channels


def test_check_and_hidden_tests_agree_on_the_padding_rule():
    """Issue 11 item 4: the visible check and the hidden tests try the same cases, so a formula
    without max(0, ...) fails both (it used to pass every hidden test and fail only the check)."""
    from autograder.assignments.fcn_segmentation.hidden_tests import test_upsampling as hidden

    assert hidden.SIZES == checks.PADDING_SIZES
    src = __import__("inspect").getsource(hidden)
    for name in ("PADDING_STRIDE2", "PADDING_OTHER_STRIDES", "PADDING_INVALID"):
        assert f"list({name})" in src or f"in {name}" in src, name

    def no_clamp(kernel_size, stride=2):
        if kernel_size < 1 or stride < 1:
            raise ValueError("sizes must be >= 1")
        padding = -(-(kernel_size - stride) // 2)  # ceil((k - s) / 2), negative when k < s
        return padding, 2 * padding - (kernel_size - stride)

    with pytest.raises(AssertionError, match=r"\(1, stride=3\).*smaller than the stride"):
        checks.check_transposed_conv_padding(no_clamp)
    hidden_failures = [(k, s) for k, s in checks.PADDING_OTHER_STRIDES if no_clamp(k, s)[0] < 0]
    assert hidden_failures, "the hidden cases must include a kernel smaller than the stride"


def test_loss_ignoring_smooth_is_caught(up_cells):
    """The hidden tests try smooth=1.0 and 0.5: a hard-coded smoothing term must fail the check too."""
    bad = up(up_cells, "soft_iou_loss", ("iou = (intersection + smooth) / (union + smooth)",
                                         "iou = (intersection + 1e-6) / (union + 1e-6)"))
    with pytest.raises(AssertionError, match=r"smooth=1.0 .*use the smooth argument"):
        checks.check_soft_iou_loss(bad)


def test_loss_with_a_hard_coded_ignore_value_is_caught(up_cells):
    """The hidden tests use ignore_index=-1 as well as 255."""
    bad = up(up_cells, "soft_iou_loss", ("else target != ignore_index", "else target != 255"))
    with pytest.raises(AssertionError, match=r"ignore_index=-1"):
        checks.check_soft_iou_loss(bad)

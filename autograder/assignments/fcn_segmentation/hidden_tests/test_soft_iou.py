"""Hidden tests of ``soft_iou_loss`` (cell ``soft_iou_loss``).

Values and gradients are compared in float64 with the reference computed HERE (autograd of the
trusted reference); the worker also runs ``torch.autograd.gradcheck`` on the student's own
function, which catches a hand-written backward that disagrees with its forward.
"""

from __future__ import annotations

import torch

IGNORE = 255


def _cases(seed=7):
    g = torch.Generator().manual_seed(seed)
    out = []
    for n, c, h, w, smooth in ((2, 12, 8, 9, 1e-6), (1, 2, 5, 7, 1e-6), (3, 12, 4, 4, 1.0),
                               (2, 2, 6, 3, 0.5)):
        logits = torch.randn(n, c, h, w, generator=g, dtype=torch.float64) * 2
        target = torch.randint(0, c, (n, h, w), generator=g)
        out.append({"logits": logits, "target": target, "kwargs": {"smooth": smooth}})
    return out


def _ref(reference, case):
    logits = case["logits"].clone().requires_grad_(True)
    loss = reference.soft_iou_loss(logits, case["target"], **case["kwargs"])
    (grad,) = torch.autograd.grad(loss, logits)
    return loss.detach(), grad


def _describe(case):
    shape = "x".join(map(str, case["logits"].shape))
    return f"logits {shape}, smooth={case['kwargs'].get('smooth')}" + (
        f", ignore_index={case['kwargs']['ignore_index']}" if "ignore_index" in case["kwargs"] else "")


def _scalar(entry):
    v = entry.get("loss")
    if type(v) is not torch.Tensor or v.numel() != 1:
        return None
    return v.reshape(()).to(torch.float64)


def _answers(submission, cases):
    """Run the submission's loss on ``cases``: ``(problems for the cases that raised, [(case,
    answer) for the others]``."""
    res = submission.request("loss_grad", name="soft_iou_loss", cases=cases)["cases"]
    problems = [f"{_describe(case)}: raised an error:\n{r.get('error', '').strip()}"
                for case, r in zip(cases, res) if not r["ok"]]
    return problems, [(case, r) for case, r in zip(cases, res) if r["ok"]]


def _value_problems(submission, reference, cases):
    problems, answered = _answers(submission, cases)
    for case, r in answered:
        got = _scalar(r)
        want, _ = _ref(reference, case)
        if got is None:
            problems.append(f"{_describe(case)}: returned {r['type']}, not a scalar tensor")
        elif not torch.allclose(got, want, rtol=1e-5, atol=1e-6):
            problems.append(f"{_describe(case)}: loss {float(got):.6g}, expected {float(want):.6g}")
    return problems


def test_soft_iou_loss_values(submission, reference, partial):
    submission.require("soft_iou_loss")
    cases = _cases()
    problems = _value_problems(submission, reference, cases)
    partial(1 - len(problems) / len(cases))
    assert not problems, ("\n".join(problems) + "\nCheck: softmax over the class dimension, "
                          "intersection sum(p*y) and union sum(p + y - p*y) over batch and pixels "
                          "per class, smooth added to both, mean over classes (C == 2: class 1 only).")


def test_soft_iou_loss_gradient(submission, reference, partial):
    submission.require("soft_iou_loss")
    cases = _cases(seed=11)[:3]
    g = torch.Generator().manual_seed(13)  # gradcheck perturbs every input: keep its case tiny
    cases.append({"logits": torch.randn(1, 12, 2, 3, generator=g, dtype=torch.float64),
                  "target": torch.randint(0, 12, (1, 2, 3), generator=g),
                  "kwargs": {"smooth": 1e-6}, "gradcheck": True})
    problems, answered = _answers(submission, cases)
    for case, r in answered:
        grad = r.get("grad")
        _, want = _ref(reference, case)
        if type(grad) is not torch.Tensor:
            problems.append(f"{_describe(case)}: the loss has no gradient w.r.t. the logits (is "
                            "it computed with torch operations from the logits, without .detach(), "
                            ".item() or numpy?)")
        elif grad.shape != want.shape or not torch.allclose(grad.to(torch.float64), want,
                                                            rtol=1e-4, atol=1e-7):
            problems.append(f"{_describe(case)}: the gradient w.r.t. the logits differs from the "
                            "reference's")
        elif case.get("gradcheck") and r.get("gradcheck") is not True:
            problems.append(f"{_describe(case)}: torch.autograd.gradcheck fails on your function: "
                            f"{r.get('gradcheck_error', '')[:300]}")
    partial(1 - len(problems) / len(cases))
    assert not problems, "\n".join(problems)


def test_soft_iou_loss_limits(submission, partial):
    submission.require("soft_iou_loss")
    g = torch.Generator().manual_seed(3)
    cases = []
    for c in (2, 12):
        target = torch.randint(0, c, (2, 6, 5), generator=g)
        perfect = torch.nn.functional.one_hot(target, c).permute(0, 3, 1, 2).double() * 60.0
        cases.append({"logits": perfect, "target": target, "kwargs": {}})
        cases.append({"logits": -perfect, "target": target, "kwargs": {}})
        cases.append({"logits": torch.randn(2, c, 6, 5, generator=g, dtype=torch.float64) * 10,
                      "target": target, "kwargs": {}})
    res = submission.request("loss_grad", name="soft_iou_loss", cases=cases)["cases"]
    problems = []
    for i, (case, r) in enumerate(zip(cases, res)):
        v = _scalar(r) if r["ok"] else None
        if v is None:
            problems.append(f"{_describe(case)}: no scalar loss")
        elif i % 3 == 0 and not float(v) < 1e-3:
            problems.append(f"{_describe(case)}: a perfect, confident prediction gives {float(v):.4g}, "
                            "expected about 0")
        elif not -1e-9 <= float(v) <= 1 + 1e-9:
            problems.append(f"{_describe(case)}: loss {float(v):.4g} is outside [0, 1]")
    partial(1 - len(problems) / len(cases))
    assert not problems, "\n".join(problems)


def test_soft_iou_loss_ignore_index(submission, reference, partial):
    submission.require("soft_iou_loss")
    g = torch.Generator().manual_seed(5)
    cases = []
    for c, ii in ((12, IGNORE), (2, IGNORE), (12, -1)):
        logits = torch.randn(2, c, 7, 6, generator=g, dtype=torch.float64)
        target = torch.randint(0, c, (2, 7, 6), generator=g)
        target[:, :3, :2] = ii
        cases.append({"logits": logits, "target": target, "kwargs": {"ignore_index": ii}})
    problems = _value_problems(submission, reference, cases)
    partial(1 - len(problems) / len(cases))
    assert not problems, ("\n".join(problems) + "\nPixels whose target is ignore_index must be "
                          "left out of both intersection and union (mask the probabilities too).")

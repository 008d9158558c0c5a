"""Hidden tests of ``extract_features`` (cell ``extract_features``).

Models are :class:`assignment_lib.transfer.TinyVGG` (VGG's layout, built in the sandbox from a seed),
so these tests do not depend on the student's ``replace_head``; 70 images, more than one batch of
the default 64. The trusted side loads the sandbox model's weights into its own copy and runs the
reference ``extract_features`` on it.
"""

from __future__ import annotations

import pytest
import torch

from assignment_lib.transfer import TinyVGG
from autograder.sandbox import SandboxError

#: (width, hidden) of the two models tried: D = hidden (12, then 7: nothing may assume 256).
MODELS = ((8, 12), (4, 7))
N_IMAGES = 70


def _images(seed=21):
    return torch.randn(N_IMAGES, 3, 20, 24, generator=torch.Generator().manual_seed(seed))


def _model(submission, handle, width=8, hidden=12, seed=0, train=True):
    submission.require("extract_features")
    submission.new(handle, "assignment_lib.transfer.TinyVGG", n_classes=5, width=width, hidden=hidden,
                   seed=seed)
    submission.invoke("torch.nn.Module.train", submission.ref(handle), train)


def _features(submission, handle, images, **kw):
    try:
        return submission.invoke("extract_features", submission.ref(handle), images, **kw)
    except SandboxError as err:
        pytest.fail(f"extract_features(model, images) failed: {err}")


def _require_model_features(submission):
    """Fail unless extract_features runs the model: a function that returns the same row for every
    image (e.g. zeros) is trivially deterministic, graph-free and mode-preserving, which earns nothing."""
    _model(submission, "runs_model", train=False)
    value = _features(submission, "runs_model", _images(5)[:4])["value"]
    if isinstance(value, torch.Tensor) and value.dim() >= 1 and len(value) > 1 and all(
            torch.equal(value[0], row) for row in value[1:]):
        pytest.fail("extract_features returned the same features for four different images: run "
                    "the model on the images (this test only counts once the features come from it)")


def test_features_shape(submission, partial):
    _require_model_features(submission)
    _model(submission, "shape")
    r = _features(submission, "shape", _images())
    value = r["value"]
    assert isinstance(value, torch.Tensor), f"extract_features returned {r['type']}, not a tensor"
    ok_shape = tuple(value.shape) == (N_IMAGES, 12)
    ok_dtype = value.dtype == torch.float32
    partial(0.7 * ok_shape + 0.3 * ok_dtype)
    assert ok_shape, (f"features of {N_IMAGES} images have shape {tuple(value.shape)}, expected "
                      f"({N_IMAGES}, 12): one row per image (all batches concatenated), D = the "
                      "in_features of the classifier's last layer")
    assert ok_dtype, f"features are {value.dtype}; return float32"


def test_features_deterministic_dropout_off(submission):
    _require_model_features(submission)
    _model(submission, "determinism", train=True)
    images = _images()
    first = _features(submission, "determinism", images)["value"]
    second = _features(submission, "determinism", images)["value"]
    assert torch.equal(first, second), (
        "two calls on a model in train mode gave different features: dropout was on. Switch the "
        "model to eval mode while extracting")


def test_features_restore_mode(submission, partial):
    _require_model_features(submission)
    results = []
    for train in (True, False):
        _model(submission, f"mode_{train}", train=train)
        _features(submission, f"mode_{train}", _images()[:3])
        flags = submission.invoke("assignment_lib.transfer.training_flags",
                                  submission.ref(f"mode_{train}"))["value"]
        results.append(all(f == train for f in flags))
    partial(sum(results) / 2)
    assert all(results), (
        "after extract_features the model is not in the train/eval mode it was in before: "
        + ("a model in train mode must go back to train mode (remember model.training and call "
           "model.train(was_training) at the end)" if not results[0] else
           "a model in eval mode must stay in eval mode"))


def test_features_no_autograd_graph(submission):
    _require_model_features(submission)
    _model(submission, "graph")
    r = _features(submission, "graph", _images(), grad=[1])
    assert not r.get("requires_grad", False) and r["grads"].get(1) is None, (
        "the features carry an autograd graph back to the images: compute them under "
        "torch.no_grad() (no graph, less memory)")


def test_features_match_reference(submission, reference, partial):
    """Same weights, same images: the reference's features (the input of the last layer)."""
    images = _images(33)
    problems = []
    for i, (width, hidden) in enumerate(MODELS):
        handle = f"ref_{i}"
        _model(submission, handle, width=width, hidden=hidden, seed=10 + i)
        got = _features(submission, handle, images)["value"]
        model = TinyVGG(n_classes=5, width=width, hidden=hidden)
        model.load_state_dict({n: t for n, t, _ in submission.state(handle)})
        want = reference.extract_features(model.train(), images)
        if not isinstance(got, torch.Tensor) or got.shape != want.shape:
            problems.append(f"a model with {hidden} hidden units: features of shape "
                            f"{tuple(getattr(got, 'shape', ()))}, expected {tuple(want.shape)}")
        elif not torch.allclose(got, want, atol=1e-5, rtol=1e-4):
            problems.append(f"a model with {hidden} hidden units: the features differ from the "
                            f"reference's (max difference {(got - want).abs().max():.3g}): return what "
                            "enters the last classifier layer, after the hidden Linear and its ReLU, "
                            "in eval mode")
    partial(1 - len(problems) / len(MODELS))
    assert not problems, "\n".join(problems)

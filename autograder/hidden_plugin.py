"""The hidden tests' pytest plugin, for EVERY assignment; runs in the TRUSTED grader process.

``pytest <bundle>/hidden_tests -p autograder.hidden_plugin --submission-config CFG.json`` (see
:func:`autograder.job.pytest_command`): the config holds the submission's cells (parsed once, by the
job), the cells that could not be graded and why, the run's
:class:`~autograder.settings.GradingSettings` (``settings``), the bundle's paths, and where to write
the raw outcomes (``results``). Fixtures every assignment's hidden tests get:

- ``submission``: a :class:`SandboxHandle` on this submission's sandboxed worker;
- ``reference``: the trusted reference (:func:`autograder.reference.load_reference`): every name
  the assignment's locked and answer cells define, executed from the source notebooks;
- ``assignment``: the bundle's :class:`~autograder.assignment.Assignment`;
- ``partial``: record a partial-credit fraction for the current test;
- ``grading``: the parsed config.

The hooks record each test's outcome, message and fraction for :func:`autograder.rubric.to_result`.
Student code runs only in the worker; every comparison happens here. An assignment's own
``hidden_tests/conftest.py`` holds only its helpers.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from autograder import reference as reference_mod
from autograder.assignment import Assignment
from autograder.hidden_run import sandbox_from_config
from autograder.sandbox import Sandbox, SandboxError, SandboxUnavailable
from autograder.settings import HEAVY_REQUESTS

#: Default seed of the random weights :func:`weight_spec` describes.
WEIGHT_SEED = 20150607


def pytest_addoption(parser):
    parser.addoption("--submission-config", default=None, help="JSON config of the submission")


def pytest_configure(config):
    config.addinivalue_line("markers", "gpu: needs a CUDA device")
    config._grading_outcomes = {}


# ---------------------------------------------------------------------------------- outcomes


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    store = item.config._grading_outcomes
    name = item.originalname or item.name
    frac = dict(item.user_properties).get("fraction")
    if rep.when == "setup" and rep.skipped:
        store[name] = {"outcome": "skipped", "message": _skip_reason(rep), "fraction": None}
    elif rep.when == "setup" and rep.failed:
        store[name] = {"outcome": "error", "message": _message(call), "fraction": None}
    elif rep.when == "call":
        if rep.skipped:
            store[name] = {"outcome": "skipped", "message": _skip_reason(rep), "fraction": None}
        elif rep.passed:
            store[name] = {"outcome": "passed", "message": dict(item.user_properties).get(
                "message", ""), "fraction": 1.0 if frac is None else frac}
        else:
            exc = call.excinfo.value if call.excinfo else None
            kind = "failed" if isinstance(exc, (AssertionError, pytest.fail.Exception,
                                                SandboxError)) else "error"
            store[name] = {"outcome": kind, "message": _message(call), "fraction": frac}


def _skip_reason(rep) -> str:
    lr = rep.longrepr
    if isinstance(lr, tuple) and len(lr) == 3:
        return str(lr[2]).removeprefix("Skipped: ")
    return str(lr)


def _message(call) -> str:
    if call.excinfo is None:
        return ""
    exc = call.excinfo.value
    if isinstance(exc, (AssertionError, pytest.fail.Exception, SandboxError)):
        return str(exc.msg if hasattr(exc, "msg") else exc)
    return f"the grader hit an unexpected error in this test ({type(exc).__name__}: {exc})"


def pytest_sessionfinish(session):
    path = session.config.getoption("--submission-config")
    if not path:
        return
    cfg = json.loads(Path(path).read_text())
    out = {"outcomes": session.config._grading_outcomes,
           "events": getattr(session.config, "_grading_events", []),
           "isolation": getattr(session.config, "_grading_isolation", ""),
           "infrastructure": getattr(session.config, "_grading_infrastructure", "")}
    Path(cfg["results"]).write_text(json.dumps(out, indent=1))


# ---------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def grading(pytestconfig) -> dict:
    path = pytestconfig.getoption("--submission-config")
    if not path:
        pytest.skip("hidden tests need --submission-config (run them through autograder.job)")
    return json.loads(Path(path).read_text())


@pytest.fixture(scope="session")
def assignment(grading) -> Assignment:
    """The assignment of the bundle being graded (its notebooks in the bundle's folder)."""
    return Assignment.load(grading["bundle"]["assignment"], grading["bundle"]["notebooks"])


@pytest.fixture(scope="session")
def reference(assignment):
    return reference_mod.load_reference(assignment)


@pytest.fixture
def partial(request):
    """``partial(fraction, message="")``: the share of this test's points earned (0..1)."""

    def record(fraction: float, message: str = ""):
        request.node.user_properties.append(("fraction", max(0.0, min(1.0, float(fraction)))))
        if message:
            request.node.user_properties.append(("message", message))

    return record


class SandboxHandle:
    """Handle on one submission's sandbox: cached, typed requests for the hidden tests."""

    def __init__(self, sandbox: Sandbox, missing: dict[str, str], cache_dir: Path | None):
        self.sandbox = sandbox
        self.missing = missing  # grade_id -> why the cell is absent
        self.cache_dir = cache_dir
        self._cache: dict = {}

    def require(self, grade_id: str) -> None:
        """Fail the current test with a teaching message unless cell ``grade_id`` ran cleanly."""
        if grade_id in self.missing:
            pytest.fail(self.missing[grade_id])
        status = self.sandbox.cells.get(grade_id)
        if status is None:
            pytest.fail(f"cell '{grade_id}' was not run")
        if not status["ok"]:
            pytest.fail(f"cell '{grade_id}' failed when it was run:\n{status['error'].strip()}")

    def request(self, op, timeout=None, **payload):
        if timeout is None and op in HEAVY_REQUESTS:
            timeout = HEAVY_REQUESTS[op] * self.sandbox.request_timeout
        return self.sandbox.request(op, timeout=timeout, **payload)

    def cached(self, key, fn):
        if key not in self._cache:
            try:
                self._cache[key] = ("ok", fn())
            except SandboxError as err:
                self._cache[key] = ("err", err)
        kind, value = self._cache[key]
        if kind == "err":
            raise type(value)(str(value))
        return value

    def describe(self, name: str, n_classes: int = 12) -> dict:
        def run():
            r = self.request("describe", name=name, n_classes=n_classes)
            return r
        return self.cached(("describe", name, n_classes), run)

    # Generic requests: objects live in the sandbox under string handles; ``ref(H)`` names one
    # inside the arguments. A name is one the submission's cells define, or a dotted path under
    # ``torch.``, ``torchvision.`` or ``assignment_lib.`` (imported inside the sandbox).

    @staticmethod
    def ref(handle: str) -> dict:
        """The marker that stands for the object stored under ``handle`` in a request's arguments."""
        return {"$handle": handle}

    def new(self, handle: str, factory: str, *args, seed: int | None = None, **kwargs):
        """Store ``factory(*args, **kwargs)`` under ``handle`` in the sandbox (``torch.manual_seed(seed)``
        first when ``seed`` is given).

        Returns:
            for an ``nn.Module``, its summary (as :meth:`describe_handle`); else the plain value.

        Raises:
            SandboxError: the construction failed (the worker's traceback in the message).
        """
        return self.request("new", handle=handle, factory=factory, args=list(args), kwargs=kwargs,
                            seed=seed)

    def invoke(self, name: str, *args, handle: str | None = None, grad=(), **kwargs) -> dict:
        """Call ``name(*args, **kwargs)`` in the sandbox; store the result under ``handle`` if given.

        ``grad``: argument positions (int) or keyword names whose tensors are sent with
        ``requires_grad=True``; the worker backpropagates ``value.sum()``.

        Returns:
            ``{"ok": True, "value": plain data, "type": type name}``, plus ``"requires_grad"`` for a
            tensor value and, with ``grad``, ``"grads": {position or name: tensor or None}`` (None: no
            gradient reached it).

        Raises:
            CallRaised: the call raised (``.raised``: the exception's type name, ``.message``).
            SandboxError: the request itself failed (timeout, crash).
        """
        r = self.request("invoke", name=name, args=list(args), kwargs=kwargs, handle=handle,
                         grad=list(grad))
        if not r.get("ok"):
            raise CallRaised(name, r.get("raised", ""), r.get("message", ""))
        if "grads" in r:
            r["grads"] = {int(k) if k.isdigit() else k: v for k, v in r["grads"].items()}
        return r

    def describe_handle(self, handle: str) -> dict:
        """``{"modules": [{name, type, attrs}], "params": [[name, shape, requires_grad]],
        "n_params", "n_trainable", "model_type"}`` of the module stored under ``handle``."""
        return self.request("describe", handle=handle)

    def state(self, handle: str) -> list:
        """``[[name, tensor, requires_grad]]`` of the stored module's state dict, in its order."""
        return self.request("state", handle=handle)["tensors"]

    def load(self, handle: str, tensors=None, weights: dict | None = None) -> str:
        """Load ``tensors`` (``[(name, tensor)]``) or a :func:`weight_spec` into the stored module, by
        name, else by order and shape. Returns ``"name"`` or ``"order"``.

        Raises:
            SandboxError: neither matches (the message says to check the layers' order and sizes).
        """
        if (tensors is None) == (weights is None):
            raise ValueError("give exactly one of tensors= or weights=")
        payload = {"weights": weights} if tensors is None else {
            "tensors": [[str(n), t.detach().cpu().contiguous()] for n, t in tensors]}
        return self.request("load", handle=handle, **payload)["matched_by"]

    def forward_handle(self, handle: str, inputs, train: bool = False) -> list[dict]:
        """Run the stored module on each input (eval mode, no gradients, unless ``train``).

        Returns:
            one ``{"ok": True, "output": tensor or None, "type"}`` or ``{"ok": False, "error"}`` per
            input.
        """
        return self.request("forward", handle=handle, inputs=list(inputs), train=train)["outputs"]


class CallRaised(SandboxError):
    """A call made with :meth:`SandboxHandle.invoke` raised inside the sandbox."""

    def __init__(self, name: str, raised: str, message: str):
        super().__init__(f"{name} raised {raised}: {message}")
        self.raised, self.message = raised, message


@pytest.fixture(scope="session")
def submission(grading, request):
    """Start the sandbox on the cells the grading job parsed (it only starts the sandbox); its
    worker process was usually spawned already, at the start of this process (autograder.hidden_run)."""
    cells = grading["cells"]
    sb = getattr(request.config, "_grading_sandbox", None) or sandbox_from_config(grading)
    request.config._grading_isolation = sb.isolation
    request.config._grading_events = sb.events
    try:
        sb.start()
    except SandboxError as err:
        if isinstance(err, SandboxUnavailable):  # the machine's fault: the job reports, never scores
            request.config._grading_infrastructure = str(err)
        sb.events.append(f"the sandbox could not start: {err}")
        for c in cells:
            sb.cells.setdefault(c["grade_id"], {"grade_id": c["grade_id"], "ok": False,
                                                "skipped": True, "error": str(err)})
    cache = Path(grading["cache_dir"]) if grading.get("cache_dir") else None
    yield SandboxHandle(sb, grading["missing"], cache)
    sb.close()


# ---------------------------------------------------------------------------- shared helpers


def weight_spec(model: torch.nn.Module, seed: int = WEIGHT_SEED) -> dict:
    """Random-weight spec for ``model``'s state dict: He-normal weights, small biases.

    The worker and :func:`make_weights` turn it into the same tensors.
    """
    params = []
    for name, t in model.state_dict().items():
        shape = list(t.shape)
        if len(shape) > 1:
            fan = math.prod(shape[1:])
            std = math.sqrt(2.0 / fan)
        else:
            std = 0.01
        params.append([name, shape, std])
    return {"seed": seed, "params": params}


def make_weights(spec) -> dict:
    """The trusted twin of ``worker.make_weights`` (same generator, same order)."""
    out = {}
    for i, (name, shape, std) in enumerate(spec["params"]):
        g = torch.Generator().manual_seed(int(spec["seed"]) * 1_000_003 + i)
        out[name] = torch.randn(tuple(shape), generator=g, dtype=torch.float32) * float(std)
    return out

"""Fixtures of the hidden tests; run by pytest in the TRUSTED grader process, never shipped.

``pytest <bundle>/hidden_tests --submission-config CFG.json`` (see :func:`autograder.job.grade_job`):
the config holds the submission's answer cells (parsed once, by the job), the cells that could not
be graded and why, the run's :class:`~autograder.settings.GradingSettings` (``settings``), the
bundle's paths, and where to write the raw outcomes (``results``). Fixtures:

- ``submission``: a :class:`SandboxHandle` on this submission's sandboxed worker;
- ``reference``: the trusted reference (:func:`autograder.reference.load_reference`);
- ``partial``: record a partial-credit fraction for the current test;
- ``grading``: the parsed config.

Student code runs only in the worker; every comparison happens here.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
from pathlib import Path

import pytest
import torch

from autograder import reference as reference_mod
from autograder.hidden_run import sandbox_from_config
from autograder.sandbox import Sandbox, SandboxError, SandboxUnavailable
from autograder.settings import HEAVY_REQUESTS

#: Seed of the random weights and inputs the FCN comparisons use.
WEIGHT_SEED = 20150607
#: Input (H, W) of the FCN forward tests. Each is padded by 100 pixels by conv1_1, so the cost
#: of a forward pass grows with (H + 198) * (W + 198): these cost 36 % less than the earlier
#: ((64, 64), (97, 131), (33, 47)) and catch every wrong FCN of tests/test_fcn_sizes.py at as many
#: sizes as those did (more for floor pooling and swapped crop dimensions): both orientations, a
#: square, odd and even sides, a 2x2 score map (so the upsampling strides show).
FCN_SIZES = ((6, 27), (27, 6), (27, 27))


def pytest_addoption(parser):
    parser.addoption("--submission-config", default=None, help="JSON config of the submission")


def pytest_configure(config):
    config.addinivalue_line("markers", "gpu: needs a CUDA device")
    config.addinivalue_line("markers", "miou_cpu: CPU mIoU tier (opt-in)")
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
def reference(grading):
    return reference_mod.load_reference(grading["bundle"]["notebooks"])


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


@contextlib.contextmanager
def skip_default_init():
    """Build models whose every parameter is overwritten next without their random conv/linear
    initialisation (``reset_parameters``): seconds saved per FCN. The trusted twin of the worker's
    ``_construct(..., default_init=False)``."""
    saved = {c: c.reset_parameters for c in (torch.nn.modules.conv._ConvNd, torch.nn.Linear)}
    try:
        for c in saved:
            c.reset_parameters = lambda self: None
        yield
    finally:
        for c, f in saved.items():
            c.reset_parameters = f


def make_weights(spec) -> dict:
    """The trusted twin of ``worker.make_weights`` (same generator, same order)."""
    out = {}
    for i, (name, shape, std) in enumerate(spec["params"]):
        g = torch.Generator().manual_seed(int(spec["seed"]) * 1_000_003 + i)
        out[name] = torch.randn(*shape, generator=g, dtype=torch.float32) * float(std)
    return out


def fcn_inputs(sizes=FCN_SIZES, seed=WEIGHT_SEED) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed + 1)
    return [torch.randn(1, 3, h, w, generator=g) for h, w in sizes]


def disk_cached(cache_dir: Path | None, key: str, fn, source_dir=None):
    """Cache trusted reference results on disk (the sandbox never sees ``cache_dir``)."""
    if cache_dir is None:
        return fn()
    src = "".join(reference_mod.cell_source(g, source_dir) for g in reference_mod.ANSWER_CELLS)
    digest = hashlib.sha256((src + key).encode()).hexdigest()[:24]
    path = cache_dir / f"ref_{digest}.pt"
    if path.is_file():
        try:
            return torch.load(path, weights_only=True)
        except Exception:
            path.unlink(missing_ok=True)
    value = fn()
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.{id(value)}.tmp")  # parallel graders share the cache
    torch.save(value, tmp)
    tmp.replace(path)
    return value

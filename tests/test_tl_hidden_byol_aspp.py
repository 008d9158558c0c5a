"""The hidden tests of ASPP, byol_loss and ema_update (autograder/assignments/transfer_learning/
hidden_tests/test_aspp.py, test_byol.py) run against one sandbox that holds the reference answers
of byol_and_aspp.ipynb and every mistake of tests/test_byol_aspp_checks.py (under renamed names):
the reference passes every test with full credit, each mistake loses points in its own part, and
the failure messages teach. (Graded end-to-end runs through the grading job: see the FCN suite.)"""

from __future__ import annotations

import importlib.util
import types

import pytest

from autograder.hidden_plugin import SandboxHandle
from autograder.sandbox import Sandbox, SandboxError
from tests.test_byol_aspp_checks import MISTAKES, _cells

HIDDEN = "autograder/assignments/transfer_learning/hidden_tests"
#: grade_id of the answer cell -> the name it defines.
ANSWERS = {"aspp": "ASPP", "byol_loss": "byol_loss", "ema_update": "ema_update"}
#: Mistakes the hidden tests cannot tell from the reference (none).
UNDETECTED: set[str] = set()


def _load(repo_root, name):
    spec = importlib.util.spec_from_file_location(f"tl_hidden_{name}", repo_root / HIDDEN / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _tests(module, part):
    prefix = {"aspp": "test_aspp_", "byol_loss": "test_byol_loss_", "ema_update": "test_ema_update_"}[part]
    return [getattr(module, n) for n in dir(module) if n.startswith(prefix)]


class Renamed:
    """The submission handle with some answer names mapped to a mutant's names."""

    def __init__(self, inner, names):
        self.inner, self.names = inner, names

    def __getattr__(self, attr):
        return getattr(self.inner, attr)

    def new(self, handle, factory, *args, **kwargs):
        return self.inner.new(handle, self.names.get(factory, factory), *args, **kwargs)

    def invoke(self, name, *args, **kwargs):
        return self.inner.invoke(self.names.get(name, name), *args, **kwargs)


def _run(test, submission, reference):
    """(passed, fraction or None, message) of one hidden test function."""
    recorded = []

    def partial(fraction, message=""):
        recorded.append(fraction)

    import inspect

    fixtures = {"submission": submission, "reference": reference, "partial": partial}
    kwargs = {k: fixtures[k] for k in inspect.signature(test).parameters}
    try:
        test(**kwargs)
    except (AssertionError, pytest.fail.Exception, SandboxError) as err:
        return False, (recorded[-1] if recorded else None), str(err)
    return True, (recorded[-1] if recorded else None), ""


@pytest.fixture(scope="module")
def env(repo_root, tmp_path_factory):
    cells = _cells(repo_root)
    mutants = []
    for mistake, (answer, name, edits, _) in sorted(MISTAKES.items()):
        src = cells[answer]
        for old, new in edits:
            src = src.replace(old, new)
        mutants.append(f"{src}\n{name}__{mistake} = {name}\n")
    sources = [("byol_imports", cells["byol_imports"]), ("mutants", "\n".join(mutants))]
    sources += [(gid, cells[gid]) for gid in ANSWERS]
    sb = Sandbox([{"grade_id": g, "source": s} for g, s in sources],
                 tmp_path_factory.mktemp("tl_b") / "scratch", slot=15, request_timeout=120, threads=1)
    sb.start()
    for gid, _ in sources:
        assert sb.cells[gid]["ok"], sb.cells[gid]["error"]
    reference = types.ModuleType("reference")
    exec(cells["byol_imports"], reference.__dict__)  # noqa: S102 (the trusted reference)
    for gid in ANSWERS:
        exec(cells[gid], reference.__dict__)  # noqa: S102
    modules = {"aspp": _load(repo_root, "test_aspp"), "byol_loss": _load(repo_root, "test_byol"),
               "ema_update": _load(repo_root, "test_byol")}
    yield SandboxHandle(sb, {}, None), reference, modules
    sb.close()


@pytest.mark.parametrize("part", sorted(ANSWERS))
def test_reference_gets_full_marks(env, part):
    handle, reference, modules = env
    tests = _tests(modules[part], part)
    assert len(tests) >= 3
    for test in tests:
        passed, fraction, message = _run(test, handle, reference)
        assert passed and fraction in (None, 1.0), f"{test.__name__}: {message}"


@pytest.mark.parametrize("mistake", sorted(MISTAKES))
def test_each_mistake_loses_points_in_its_part(env, mistake):
    handle, reference, modules = env
    answer, name, _, _ = MISTAKES[mistake]
    sub = Renamed(handle, {name: f"{name}__{mistake}"})
    failed = {}
    for test in _tests(modules[answer], answer):
        passed, fraction, message = _run(test, sub, reference)
        if not passed:
            failed[test.__name__] = (fraction, message)
    assert failed, f"no hidden test of part {answer} catches {mistake}"
    for test_name, (fraction, message) in failed.items():
        assert fraction is None or fraction < 1.0, test_name
        assert len(message) > 40, f"{test_name} fails {mistake} without a teaching message: {message!r}"


def test_every_hidden_test_has_a_rubric_entry_of_its_part(repo_root, env):
    from autograder.assignment import get_assignment
    from autograder.rubric import load_rubric

    rubric = load_rubric(get_assignment("transfer_learning").rubric)
    _, _, modules = env
    for part in ANSWERS:
        for test in _tests(modules[part], part):
            assert test.__name__ in rubric and rubric[test.__name__].part == part, test.__name__

"""The hidden tests' process (autograder.hidden_run): the sandbox spawned before pytest starts runs
the cells once, in that same worker; a bad config falls back to the fixture; timings are written;
the worker describes models with zeroed (never stale) default weights; Dask workers exit quickly."""

import gc
import json

import pytest

from autograder import hidden_run
from autograder.sandbox import Sandbox
from autograder.settings import GradingSettings

CELLS = [{"grade_id": "a", "source": (
    "import torch\nfrom torch import nn\n"
    "RUNS = globals().get('RUNS', 0) + 1\n"
    "def runs():\n    return RUNS\n"
    "class Up(nn.Module):\n"
    "    def __init__(self, n_classes=12):\n"
    "        super().__init__()\n"
    "        self.conv = nn.Conv2d(3, n_classes, 3)\n"
    "        self.up = nn.ConvTranspose2d(n_classes, n_classes, 4, stride=2, bias=False)\n")}]


def _config(tmp_path, **extra) -> dict:
    settings = GradingSettings(use_bwrap=False, request_timeout=60, scratch_root=str(tmp_path))
    return {"settings": settings.to_dict(), "cells": CELLS, "scratch": str(tmp_path / "sandbox"),
            "slot": 0, "threads": 1, "device": None, **extra}


def test_an_early_spawned_worker_runs_the_cells_once_and_is_the_one_used(tmp_path):
    sb = hidden_run.sandbox_from_config(_config(tmp_path))
    try:
        sb.spawn()
        pid = sb._proc.pid
        assert sb.cells == {}  # nothing of the submission has run yet
        sb.start()
        assert sb._proc.pid == pid and sb.cells["a"]["ok"]
        assert sb.request("call", name="runs", calls=[{}])["results"][0]["value"] == 1
        # a model is described with its default-initialised layers at zero, so a layer the student
        # did not initialise can never show a stale (right) value from reused memory
        desc = sb.request("describe", name="Up", n_classes=3)
        up = next(m for m in desc["modules"] if m["name"] == "up")
        assert up["weight"].shape == (3, 3, 4, 4) and not up["weight"].any()
        assert desc["n_params"] == 3 * 3 * 9 + 3 + 3 * 3 * 16
    finally:
        sb.close()
    assert not sb.alive


def test_spawn_early_falls_back_to_the_fixture_without_a_usable_config(tmp_path):
    assert hidden_run.spawn_early(["tests", "-q"]) is None
    bad = tmp_path / "config.json"
    bad.write_text(json.dumps({"settings": {"no_such_setting": 1}}))
    assert hidden_run.spawn_early(["tests", "--submission-config", str(bad)]) is None
    assert hidden_run._config_path([f"--submission-config={bad}"]) == str(bad)


def test_main_runs_pytest_writes_timings_and_closes_the_sandbox(tmp_path, monkeypatch):
    tests = tmp_path / "tests"
    tests.mkdir()
    (tests / "conftest.py").write_text(
        "def pytest_addoption(parser):\n    parser.addoption('--submission-config')\n\n"
        "import pytest\n\n@pytest.fixture\ndef early(pytestconfig):\n"
        "    return pytestconfig._grading_sandbox\n")
    (tests / "test_one.py").write_text("def test_it(early):\n    assert early is not None and early.alive\n")
    cfg = tmp_path / "work" / "config.json"
    cfg.parent.mkdir()
    cfg.write_text(json.dumps(_config(tmp_path)))
    seen, real = [], hidden_run.spawn_early
    monkeypatch.setattr(hidden_run, "spawn_early", lambda args: seen.append(real(args)) or seen[-1])
    status = hidden_run.main([str(tests), "-q", "-p", "no:cacheprovider", "--submission-config", str(cfg)])
    assert status == 0
    assert seen and seen[0] is not None and not seen[0].alive  # closed after the run
    timings = json.loads((cfg.parent / "timings.json").read_text())
    assert timings["tests"]["test_it"]["call"] >= 0 and timings["cpu_s"] > 0
    assert {"sandbox_spawned", "configured", "collected", "finished"} <= set(timings["phases"])


def test_quick_exit_freezes_the_collector_at_teardown():
    pytest.importorskip("distributed")
    from autograder.dask_exit import QuickExit

    gc.unfreeze()
    try:
        QuickExit().teardown(worker=None)
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()


def test_sandbox_spawn_then_start_of_a_dead_worker_spawns_a_new_one(tmp_path):
    sb = Sandbox(CELLS, tmp_path / "sb", use_bwrap=False, request_timeout=60)
    try:
        sb.spawn()
        first = sb._proc.pid
        sb._kill()
        sb.start()
        assert sb._proc.pid != first and sb.cells["a"]["ok"]
    finally:
        sb.close()

"""The hidden tests' process: ``python -m autograder.hidden_run <pytest arguments>``.

:func:`autograder.job.grade_job` starts this module instead of ``python -m pytest``; it is the same
pytest run (same arguments, same exit status, the same crash boundary), with one difference in
timing: the submission's sandboxed worker is spawned FIRST, from the ``--submission-config``, before
this process imports pytest, torch and the hidden tests. The worker's own start-up (bubblewrap, the
interpreter, ``import torch``: about 2 s) then overlaps this process's (about 3 s) instead of
following it. The worker runs no submission code until the ``submission`` fixture calls
:meth:`~autograder.sandbox.Sandbox.start`; it is one fresh sandbox per submission, exactly as when
the fixture spawns it (same class, same limits, same slot), and it is closed when the run ends.

If the early spawn fails for any reason, nothing is lost: the fixture builds and starts the sandbox
itself and reports the failure as it always did.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from autograder.sandbox import Sandbox
from autograder.settings import GradingSettings

CONFIG_OPTION = "--submission-config"


def sandbox_from_config(grading: dict) -> Sandbox:
    """The submission's :class:`~autograder.sandbox.Sandbox` (not started) from the hidden tests'
    config (``settings``, ``cells``, ``scratch``, ``slot``, ``threads``, ``device``: see
    :func:`autograder.job.grade_job`).

    Raises:
        KeyError: a config without those keys; ValueError: settings that do not validate.
    """
    s = GradingSettings.from_dict(grading["settings"])
    return Sandbox(grading["cells"], Path(grading["scratch"]), slot=grading["slot"],
                   request_timeout=s.request_timeout, total_budget=s.submission_budget,
                   memory_bytes=s.memory_bytes, threads=grading["threads"],
                   device=grading.get("device"), use_bwrap=s.use_bwrap,
                   start_timeout=s.start_timeout)


def _config_path(args: list[str]) -> str | None:
    for i, a in enumerate(args):
        if a == CONFIG_OPTION and i + 1 < len(args):
            return args[i + 1]
        if a.startswith(CONFIG_OPTION + "="):
            return a.split("=", 1)[1]
    return None


def spawn_early(args: list[str]) -> Sandbox | None:
    """The sandbox of the run's config, its worker process already spawned; ``None`` when there is
    no config or anything fails (the fixture then does it all, and reports what went wrong)."""
    path = _config_path(args)
    if not path:
        return None
    sb = None
    try:
        sb = sandbox_from_config(json.loads(Path(path).read_text()))
        sb.spawn()
    except Exception:  # noqa: BLE001 - the fixture retries and reports
        if sb is not None:
            sb.close()
        return None
    return sb


class EarlySandbox:
    """pytest plugin that hands the early-spawned sandbox to the ``submission`` fixture
    (``config._grading_sandbox``) and writes where this process's time went to ``timings.json``
    beside the config (read by ``benchmarks/bench_grade.py``; the grade never depends on it).

    ``timings.json``: ``{"phases": {name: seconds since this process started}, "tests": {test:
    {"setup", "call", "teardown"}: seconds}, "cpu_s": this process's CPU seconds (user + system;
    the sandboxed worker's are not included)}``.
    """

    def __init__(self, sandbox: Sandbox | None, config_path: str | None = None):
        self.sandbox = sandbox
        self.config_path = config_path
        self.phases = {"sandbox_spawned": _since_start()}
        self.tests: dict[str, dict[str, float]] = {}

    def pytest_configure(self, config):
        config._grading_sandbox = self.sandbox
        self.phases["configured"] = _since_start()  # pytest, the conftest (torch) imported

    def pytest_collection_finish(self, session):
        self.phases["collected"] = _since_start()

    def pytest_runtest_logreport(self, report):
        name = report.nodeid.rsplit("::", 1)[-1]
        self.tests.setdefault(name, {})[report.when] = round(report.duration, 3)

    def pytest_unconfigure(self, config):
        self.phases["finished"] = _since_start()
        if not self.config_path:
            return
        import resource

        from autograder.results import atomic_write_text

        ru = resource.getrusage(resource.RUSAGE_SELF)
        data = {"phases": {k: round(v, 3) for k, v in self.phases.items()}, "tests": self.tests,
                "cpu_s": round(ru.ru_utime + ru.ru_stime, 2)}
        try:
            atomic_write_text(Path(self.config_path).with_name("timings.json"), json.dumps(data, indent=1))
        except OSError:
            pass


def _since_start() -> float:
    """Seconds since this process started (Linux ``/proc/self/stat``; 0.0 where unknown)."""
    try:
        ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        return time.clock_gettime(time.CLOCK_BOOTTIME) - ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, AttributeError):
        return 0.0


def main(args: list[str] | None = None) -> int:
    """Run pytest with ``args`` (default: ``sys.argv[1:]``); returns its exit status."""
    args = list(sys.argv[1:] if args is None else args)
    sb = spawn_early(args)
    try:
        import pytest

        return int(pytest.main(args, plugins=[EarlySandbox(sb, _config_path(args))]))
    finally:
        if sb is not None:
            sb.close()  # (the fixture closed it already when it used it: closing twice is harmless)


if __name__ == "__main__":
    status = main()
    # Everything is written (outcomes, timings, the log) and the sandbox is closed: skip the
    # interpreter's teardown, whose garbage collection over torch's objects takes 1 to 2 s.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)

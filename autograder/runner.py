"""Grade one submission: run the hidden tests against its sandboxed code, map them through the rubric.

:func:`grade_submission` runs ``pytest autograder/hidden_tests`` in a fresh trusted subprocess (so it
is safe to call many times, from threads or processes, in one program); that process starts the
submission's sandbox (:mod:`autograder.sandbox`), whose worker executes the student's answer cells.
Every pytest outcome becomes a :class:`~autograder.results.TestResult` through
:mod:`autograder.rubric`; an unreadable notebook or a deleted cell zeroes only the tests that
need it, with a message.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

from autograder import reference as reference_mod
from autograder.notebook import SubmissionError, check_integrity, inline_answers, read_notebook
from autograder.results import SubmissionResult
from autograder.rubric import load_rubric, to_result

REPO = Path(__file__).resolve().parent.parent
HIDDEN_TESTS = Path(__file__).resolve().parent / "hidden_tests"
ASSIGNMENT = "fcn_segmentation"
MIOU_TIERS = ("none", "cpu", "gpu")


@dataclass
class RunnerConfig:
    """Settings of one grading run (shared by all submissions).

    Attributes:
        source_dir: the source notebooks (reference solutions); default ``<repo>/notebooks``.
        data_root: CMP Facade data for the mIoU tiers (``None``: :func:`assignment_lib.data.find_data_root`).
        scratch_root: where per-submission scratch folders, logs and the reference cache go.
        request_timeout: wall-clock seconds per request to the worker.
        total_budget: wall-clock seconds of worker time per submission.
        memory_bytes: address-space limit of the worker.
        threads: CPU threads of the worker.
        miou_tier: ``"none"``, ``"cpu"`` (opt-in short CPU training) or ``"gpu"``.
        gpu_lease: optional callable returning a context manager that yields a device string
            (e.g. ``"cuda:0"``) or ``None`` when no GPU is free.
        slot: sandbox slot (distinct per parallel grader: distinct unprivileged uid).
        use_bwrap: force bubblewrap on/off; ``None`` detects.
        keep_scratch: keep the scratch folder after grading (for debugging).
    """

    source_dir: Path = REPO / "notebooks"
    data_root: Path | None = None
    scratch_root: Path = Path("/tmp/fcn_grading")
    request_timeout: float = 120.0
    total_budget: float = 1200.0
    memory_bytes: int = 10 * 2**30
    threads: int = 1
    miou_tier: str = "none"
    gpu_lease: Callable | None = field(default=None, repr=False)
    slot: int = 0
    use_bwrap: bool | None = None
    keep_scratch: bool = False

    def __post_init__(self):
        if self.miou_tier not in MIOU_TIERS:
            raise ValueError(f"miou_tier must be one of {MIOU_TIERS}, got {self.miou_tier!r}")


def _notebook_key(name: str) -> str:
    return name if name.endswith(".ipynb") else f"{name}.ipynb"


def grade_submission(student: str, notebooks: dict[str, Path], config: RunnerConfig) -> SubmissionResult:
    """Grade one student's notebooks.

    Args:
        student: the student id (used for folder names; path separators are replaced).
        notebooks: ``{"fcn_segmentation.ipynb": path, "upsampling_and_iou.ipynb": path}`` (names
            with or without ``.ipynb``); a missing entry zeroes that notebook's tests.
        config: the run's :class:`RunnerConfig`.

    Returns:
        A :class:`SubmissionResult` with one TestResult per rubric entry (rubric order), the inline
        answers, the problems found and the isolation used.
    """
    t0 = time.monotonic()
    rubric = load_rubric()
    nbs = {_notebook_key(k): Path(v).resolve() for k, v in notebooks.items()}
    result = SubmissionResult(student=student, assignment=ASSIGNMENT)
    source_dir = Path(config.source_dir)

    for nb_name in reference_mod.REFERENCE_CELLS:
        path = nbs.get(nb_name)
        if path is None:
            result.problems.append(f"{nb_name} is missing from the submission; its tests score 0.")
            continue
        try:
            sub_nb = read_notebook(path)
        except SubmissionError as err:
            result.problems.append(f"{err} Its tests score 0.")
            continue
        src_nb = read_notebook(source_dir / nb_name)
        result.problems += [f"{nb_name}: {p}" for p in check_integrity(sub_nb, src_nb)]
        result.inline_answers += inline_answers(sub_nb, src_nb)

    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in student) or "student"
    # a fresh folder per call: two runs grading the same student at once never share one
    Path(config.scratch_root).mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f"{safe}.slot{config.slot}.", dir=config.scratch_root))
    cache_dir = Path(config.scratch_root) / "reference_cache"

    lease = config.gpu_lease() if (config.miou_tier == "gpu" and config.gpu_lease) else nullcontext(None)
    with lease as device:
        result.device = device or "cpu"
        cfg = {
            "student": student,
            "notebooks": {k: str(v) for k, v in nbs.items()},
            "source_dir": str(source_dir),
            "data_root": str(config.data_root) if config.data_root else None,
            "scratch": str(work / "sandbox"),
            "cache_dir": str(cache_dir),
            "slot": config.slot,
            "request_timeout": config.request_timeout,
            "total_budget": config.total_budget,
            "memory_bytes": config.memory_bytes,
            "threads": config.threads,
            "miou_tier": config.miou_tier,
            "device": device,
            "use_bwrap": config.use_bwrap,
            "results": str(work / "outcomes.json"),
        }
        cfg_path = work / "config.json"
        cfg_path.write_text(json.dumps(cfg, indent=1))
        cmd = [sys.executable, "-m", "pytest", str(HIDDEN_TESTS), "-q", "-p", "no:cacheprovider",
               "--assert=plain", "-o", "addopts=", "--rootdir", str(REPO),
               "--submission-config", str(cfg_path)]
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(REPO)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
        env.pop("PYTEST_ADDOPTS", None)
        with open(work / "pytest.log", "wb") as log:
            try:
                subprocess.run(cmd, cwd=str(work), env=env, stdout=log, stderr=subprocess.STDOUT,
                               timeout=config.total_budget + 600, check=False)  # outcomes.json tells
            except subprocess.TimeoutExpired:
                result.problems.append("grading stopped: the hidden tests ran past the total time budget")

    outcomes, extra = {}, {}
    try:
        extra = json.loads((work / "outcomes.json").read_text())
        outcomes = extra.get("outcomes", {})
    except (OSError, ValueError):
        result.problems.append("the grader could not finish this submission; see the grading log")
    result.isolation = extra.get("isolation", "")
    for p in extra.get("problems", []):
        if not any(p in q for q in result.problems):
            result.problems.append(p)
    result.problems += extra.get("events", [])
    result.tests = [to_result(entry, outcomes.get(name)) for name, entry in rubric.items()]
    if not config.keep_scratch:
        # the grading log stays only when it is needed to see why a submission could not finish
        shutil.rmtree(work / "sandbox" if not outcomes else work, ignore_errors=True)
    result.wall_s = round(time.monotonic() - t0, 2)
    return result

"""What ``run_autograder`` runs on Gradescope: grade ``$AUTOGRADER_ROOT/submission``, write ``results.json``.

``AUTOGRADER_ROOT`` defaults to ``/autograder``. Steps:

1. the settings come from ``gradescope.json`` next to this package (written by
   :mod:`autograder.gradescope`);
2. the submission is whatever the student uploaded to ``submission/``: the two notebooks (at any
   depth; ``.ipynb_checkpoints`` and ``__MACOSX`` ignored) or one zip made by
   ``python -m assignment_lib.submit`` (read with the same safety rules as ``grade``);
3. it is graded exactly as ``python -m autograder grade`` grades (:func:`autograder.grade.grade_all`,
   one job, in ``$AUTOGRADER_ROOT/grading/``), in the bubblewrap sandbox where it starts, else in a
   plain process with resource limits; then the student-visible ``output`` says so;
4. ``results/results.json`` is the grader's own Gradescope object
   (:func:`autograder.reports.gradescope_dict`: per-test score, max_score, status, output,
   visibility) with three changes: the GPU-tier tests (those the assignment's ``recipes.toml``
   puts on the ``gpu`` tier) say why they did not run on Gradescope, the full internal result is
   dropped from ``extra_data`` (it would repeat hidden tests' messages), and, with the CPU tier
   on, ``leaderboard`` holds each CPU-tier test's score (FCN's mIoU, the transfer probe's accuracy).

If the grader itself cannot run (an infrastructure failure, not the student's), no
``results.json`` is written and the exit code is 1: Gradescope then shows "autograder failed"
instead of a score, and the submission can be regraded once fixed. It is never a zero.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
import traceback
from pathlib import Path

from autograder import reports
from autograder.gradescope import SETTINGS_FILE, GradescopeSettings
from autograder.results import atomic_write_text
from autograder.submissions import Submission, SubmissionError, find_submissions

ROOT_ENV = "AUTOGRADER_ROOT"
DEFAULT_ROOT = "/autograder"
SOURCE = Path(__file__).resolve().parent.parent
#: The leaderboard's name for a CPU-tier test, by its recipe's trainer (autograder.recipes.TRAINERS).
LEADERBOARD_NAMES = {"segmentation": "CPU-tier mIoU", "classifier": "CPU-tier probe accuracy"}
#: The score a trained-model test prints in its message ("mIoU 0.041 (threshold ...)").
_SCORE = re.compile(r"(?:mIoU|accuracy) (\d+(?:\.\d+)?)")
GPU_NOT_RUN = ("not run: Gradescope has no GPU; the GPU-tier test runs only where the course grades "
               "on a GPU machine, and counts towards neither your score nor the maximum here.")
WEAKER_ISOLATION = ("Note: the sandbox (bubblewrap) could not start on Gradescope's machine, so your code "
                    "ran in a separate process with time and memory limits but without filesystem or "
                    "network isolation. This does not change how it is scored.")
IGNORED_PARTS = (".ipynb_checkpoints", "__MACOSX")


def student_id(root: Path) -> str:
    """A folder-safe id from ``submission_metadata.json`` (first user's sid, email or name), else ``submission``."""
    try:
        meta = json.loads((root / "submission_metadata.json").read_text(encoding="utf-8"))
        user = (meta.get("users") or [{}])[0]
        raw = str(user.get("sid") or user.get("email") or user.get("name") or "")
    except (OSError, ValueError, AttributeError, IndexError):
        raw = ""
    safe = re.sub(r"[^A-Za-z0-9._@+-]", "_", raw).lstrip("._-+@")[:100]
    return safe or "submission"


def find_upload(submission: Path, student: str, work: Path, assignment: str = "") -> Submission:
    """The student's upload as a :class:`~autograder.submissions.Submission` (see the module docstring).

    A missing or unusable upload gives a Submission whose ``error`` tells the student what to upload
    (the notebooks of ``assignment``).
    """
    from autograder.assignment import get_assignment

    names = " and ".join(get_assignment(assignment).notebook_files) if assignment else "your notebooks"
    if not submission.is_dir():
        return Submission(student, error=f"nothing was uploaded; upload {names}")
    notebooks: dict[str, Path] = {}
    for p in sorted(submission.rglob("*.ipynb")):
        rel = p.relative_to(submission).parts
        if not p.is_file() or any(x in rel for x in IGNORED_PARTS) or any(x.startswith(".") for x in rel):
            continue
        if p.stem in notebooks:
            return Submission(student, source=submission, error=(
                f"two notebooks named {p.name} were uploaded ({notebooks[p.stem].relative_to(submission)} "
                f"and {p.relative_to(submission)}); upload each notebook once"))
        notebooks[p.stem] = p
    if notebooks:
        return Submission(student, notebooks, source=submission)
    zips = sorted(p for p in submission.rglob("*.zip") if p.is_file())
    if len(zips) == 1:
        try:
            sub = find_submissions([zips[0]], work)[0]
        except SubmissionError as e:
            return Submission(student, source=zips[0], error=str(e))
        sub.student = student  # Gradescope knows who submitted; the manifest's name is only a hint
        return sub
    what = f"{len(zips)} zip files" if zips else "no notebook"
    return Submission(student, source=submission, error=(
        f"found {what} in the upload; upload {names}, or the one zip made by "
        "`python -m assignment_lib.submit`"))


def tier_recipes(assignment: str) -> dict[str, object]:
    """``{hidden test: Recipe}`` of the assignment's trained-model tests (its ``recipes.toml``)."""
    from autograder.bundle import Bundle
    from autograder.recipes import bundle_recipes

    return {r.test: r for r in bundle_recipes(Bundle.for_assignment(assignment)).values() if r.test}


def leaderboard_entry(payload: dict, recipes: dict) -> list[dict]:
    """``[{"name", "value", "order"}]``: one entry per CPU-tier test of ``recipes``
    (:func:`tier_recipes`), its printed score (0 when the test did not reach training)."""
    out = []
    for t in payload["tests"]:
        r = recipes.get(t["name"])
        if r is not None and r.tier == "cpu":
            m = _SCORE.search(t.get("output", ""))
            out.append({"name": LEADERBOARD_NAMES[r.trainer],
                        "value": round(float(m.group(1)), 4) if m else 0.0, "order": "desc"})
    return out


def to_gradescope(payload: dict, settings: GradescopeSettings) -> dict:
    """Adapt the grader's ``results.json`` object for Gradescope (see the module docstring)."""
    payload = dict(payload)
    recipes = tier_recipes(settings.assignment)
    tests = []
    for t in payload["tests"]:
        t = dict(t)
        gpu = getattr(recipes.get(t["name"]), "tier", None) == "gpu"
        if gpu and "status" not in t:  # not run: no status, 0 of 0 points
            t["output"] = GPU_NOT_RUN
        tests.append(t)
    payload["tests"] = tests
    extra = dict(payload.get("extra_data", {}))
    extra.pop("result", None)
    payload["extra_data"] = extra
    if "subprocess" in str(extra.get("isolation", "")):
        payload["output"] = f"{payload['output']}\n{WEAKER_ISOLATION}"
    if settings.miou == "cpu":
        payload["leaderboard"] = leaderboard_entry(payload, recipes)
    return payload


def run(root: Path, source: Path = SOURCE) -> Path:
    """Grade ``root/submission`` and write ``root/results/results.json``; returns its path.

    Raises whatever stops the grader itself (see the module docstring): no result is written then.
    """
    from autograder.bundle import Bundle
    from autograder.grade import GradeOptions, grade_all  # heavy: tqdm, the executors
    from autograder.settings import GradingSettings

    settings = GradescopeSettings.from_dict(json.loads((source / SETTINGS_FILE).read_text(encoding="utf-8")))
    student = student_id(root)
    work = root / "grading"
    shutil.rmtree(work, ignore_errors=True)
    sub = find_upload(root / "submission", student, work / "upload", settings.assignment)
    kw = {"miou": settings.miou}  # the package's own limits where it sets them, else grade's defaults
    if settings.request_timeout is not None:
        kw["request_timeout"] = settings.request_timeout
    if settings.submission_timeout is not None:
        kw["submission_budget"] = settings.submission_timeout
    options = GradeOptions(out=work / "graded", settings=GradingSettings(**kw), jobs=1, force=True,
                           progress=False, pdf=False, bundle=Bundle.for_assignment(settings.assignment))
    print(f"gradescope: grading {student}'s upload with {json.dumps(settings.to_dict())}", flush=True)
    grade_all([sub], options)
    result_path = options.out / sub.student / reports.RESULTS_JSON
    payload = json.loads(result_path.read_text(encoding="utf-8"))
    out = root / "results" / reports.RESULTS_JSON
    atomic_write_text(out, json.dumps(to_gradescope(payload, settings), indent=2))
    print(f"gradescope: score {payload['score']} / {payload['extra_data'].get('max_score')}; wrote {out}")
    return out


def main() -> int:
    root = Path(os.environ.get(ROOT_ENV) or DEFAULT_ROOT)
    try:
        run(root)
    except Exception:  # noqa: BLE001 - an infrastructure failure: say so, write no zero
        traceback.print_exc()
        print("gradescope: the autograder itself failed (not the submission); no results.json was "
              "written so that Gradescope shows an error instead of a score. Regrade once fixed.",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

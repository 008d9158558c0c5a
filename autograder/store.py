"""The results store: where each student's result lives in the output folder, apart from rendering.

``<out>/<student>/results.json`` (Gradescope's format, rendered by :mod:`autograder.reports`)
carries in its ``extra_data`` the full result and the result's *fingerprint*
(:func:`autograder.fingerprint.fingerprint`): a result is up to date when its fingerprint equals the
one the coordinator computes now and it is not an infrastructure error. Every write goes through
:func:`autograder.results.atomic_write_text`, and ``results.json`` is written last, so a killed
coordinator leaves either the old result or the new one, never half of one.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from autograder import reports
from autograder.results import SubmissionResult, atomic_write_text

SUBMISSION_DIR = "submission"


class ResultsStore:
    """The per-student results under one output folder.

    Args:
        out: the ``grade --out`` folder (created when written to).
    """

    def __init__(self, out: str | os.PathLike):
        self.out = Path(out)

    def path(self, student: str) -> Path:
        return self.out / student / reports.RESULTS_JSON

    def write(self, result: SubmissionResult, *, fingerprint: str, submission_sha256: str,
              notebooks: dict[str, bytes] | None = None) -> Path:
        """Write the student's graded notebooks (``<student>/submission/``, for formgrader),
        both feedback pages (student version before publication, instructor version) and then
        ``results.json``, each atomically; returns the results path."""
        student_dir = self.out / result.student
        if notebooks:
            self._write_notebooks(student_dir / SUBMISSION_DIR, notebooks)
        reports.write_feedback(result, student_dir)  # student and instructor versions
        payload = reports.gradescope_dict(result, submission_sha256, settings=None, run_id="")
        payload["extra_data"]["fingerprint"] = fingerprint
        payload["extra_data"]["infrastructure_error"] = result.infrastructure_error
        atomic_write_text(self.path(result.student), json.dumps(payload, indent=2))
        return self.path(result.student)

    @staticmethod
    def _write_notebooks(dest: Path, notebooks: dict[str, bytes]) -> None:
        names = set()
        for name, data in notebooks.items():
            name = Path(name if name.endswith(".ipynb") else f"{name}.ipynb").name
            names.add(name)
            atomic_write_text(dest / name, data.decode("utf-8", errors="replace"))
        for old in dest.glob("*.ipynb"):  # a notebook the student no longer submits
            if old.name not in names:
                old.unlink(missing_ok=True)

    def read(self, student: str) -> tuple[SubmissionResult, dict] | None:
        """``(result, extra_data)`` of ``student``, or ``None`` when absent or unreadable."""
        try:
            return reports.read_results_json(self.path(student))
        except (ValueError, FileNotFoundError):
            return None

    def is_up_to_date(self, student: str, fingerprint: str) -> bool:
        """True when the stored result was graded under exactly ``fingerprint`` and is a grade
        (not an infrastructure error)."""
        got = self.read(student)
        if got is None:
            return False
        result, extra = got
        return extra.get("fingerprint") == fingerprint and not result.infrastructure_error

    def load_all(self) -> list[SubmissionResult]:
        """Every stored result, sorted by student (unreadable files are skipped)."""
        out = []
        for p in sorted(self.out.glob(f"*/{reports.RESULTS_JSON}")):
            got = self.read(p.parent.name)
            if got is not None:
                out.append(got[0])
        return out

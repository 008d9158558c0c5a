"""The data model of a grading run: what one test and one submission produced.

Every other part of the autograder speaks these types: the hidden-test runner fills them,
the reports (``grades.csv``, Gradescope ``results.json``, ``feedback.html``) read them.
A result is plain data and round-trips through JSON (``to_json`` / ``from_json``).
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

#: Status of one test. ``not_run`` tests (e.g. "needs a GPU") count towards neither score nor maximum.
STATUSES = ("passed", "failed", "error", "not_run")
#: Gradescope visibilities.
VISIBILITIES = ("visible", "hidden", "after_due_date", "after_published")


class InfrastructureError(RuntimeError):
    """The grader could not grade a submission for reasons of its own (never the student's): such a
    result is reported and retried, never scored."""


@dataclass
class TestResult:
    """One hidden test's outcome.

    Attributes:
        name: the hidden test's function name, e.g. ``"test_fcn32s_output_size"``; the rubric key.
        part: the rubric part it belongs to, e.g. ``"fcn32s"``.
        score: points earned, ``0 <= score <= max_score``.
        max_score: points available.
        status: one of :data:`STATUSES`.
        output: the student-facing message (what is wrong and what to check); never hidden test code.
        visibility: one of :data:`VISIBILITIES`.
    """

    __test__ = False  # not a pytest test class

    name: str
    part: str
    score: float
    max_score: float
    status: str
    output: str = ""
    visibility: str = "visible"

    def __post_init__(self):
        if self.status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {self.status!r}")
        if not 0 <= self.score <= self.max_score + 1e-9:
            raise ValueError(f"score {self.score} outside [0, {self.max_score}] for {self.name}")


@dataclass
class InlineAnswer:
    """A free-text answer to an inline question, for manual grading."""

    grade_id: str
    question: str
    answer: str
    points: float


@dataclass
class SubmissionResult:
    """Everything grading one submission produced.

    Attributes:
        student: the student id (folder name or zip stem).
        assignment: the nbgrader assignment name.
        tests: one :class:`TestResult` per rubric entry, in rubric order.
        inline_answers: the student's inline answers, in notebook order.
        isolation: how the submission's code was isolated, e.g. ``"bubblewrap"`` or
            ``"subprocess (weaker: no filesystem or network isolation)"``.
        problems: submission-level messages (unreadable notebook, deleted cell, ...).
        wall_s: seconds spent grading this submission.
        device: where the GPU tests ran, or ``"cpu"``.
        intake: facts about the hand-in, for the reports (``autograder.submissions.Submission.intake``:
            submission time and its source, manifest facts, LMS, warnings, replaced duplicates,
            late verdict); ``{}`` when unknown.
        infrastructure_error: why the GRADER failed on this submission (never the student's
            fault), or ``""``. Such a result is not a grade: every test is ``not_run`` and the next
            run regrades it.
    """

    student: str
    assignment: str
    tests: list[TestResult] = field(default_factory=list)
    inline_answers: list[InlineAnswer] = field(default_factory=list)
    isolation: str = ""
    problems: list[str] = field(default_factory=list)
    wall_s: float = 0.0
    device: str = "cpu"
    intake: dict = field(default_factory=dict)
    infrastructure_error: str = ""

    @property
    def score(self) -> float:
        return sum(t.score for t in self.tests if t.status != "not_run")

    @property
    def max_score(self) -> float:
        return sum(t.max_score for t in self.tests if t.status != "not_run")

    def part_scores(self) -> dict[str, tuple[float, float]]:
        """``{part: (score, max_score)}`` over the tests that ran, in rubric order."""
        parts: dict[str, tuple[float, float]] = {}
        for t in self.tests:
            if t.status == "not_run":
                parts.setdefault(t.part, (0.0, 0.0))
                continue
            s, m = parts.get(t.part, (0.0, 0.0))
            parts[t.part] = (s + t.score, m + t.max_score)
        return parts

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_json(cls, text: str) -> SubmissionResult:
        d = json.loads(text)
        d["tests"] = [TestResult(**t) for t in d.get("tests", [])]
        d["inline_answers"] = [InlineAnswer(**a) for a in d.get("inline_answers", [])]
        return cls(**d)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file in the same folder and a rename.

    A reader (or a rerun after the grader was killed) sees either the old file or the new one,
    never half of one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise

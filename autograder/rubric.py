"""The rubric: points, part, visibility and teaching message of every hidden test.

Read from an assignment's ``rubric.toml`` (``autograder/assignments/<name>/rubric.toml``,
``[tests.<test function name>]`` tables). ``tests/`` checks that every hidden test has an entry and
every entry a test (:func:`hidden_test_names`).
"""

from __future__ import annotations

import ast
import tomllib
from dataclasses import dataclass
from pathlib import Path

from autograder.results import VISIBILITIES, TestResult


class RubricError(ValueError):
    """The rubric file is malformed; the message names the entry."""


@dataclass(frozen=True)
class RubricEntry:
    name: str
    part: str
    points: float
    visibility: str
    partial: bool
    message: str


def load_rubric(path) -> dict[str, RubricEntry]:
    """``{test name: RubricEntry}`` of the ``rubric.toml`` at ``path``, in file order.

    Raises:
        RubricError: a missing field, negative points or an unknown visibility.
    """
    path = Path(path)
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    out = {}
    for name, e in data.get("tests", {}).items():
        try:
            entry = RubricEntry(name, str(e["part"]), float(e["points"]), str(e["visibility"]),
                                bool(e.get("partial", False)), str(e.get("message", "")))
        except KeyError as err:
            raise RubricError(f"{path}: [tests.{name}] lacks {err}") from err
        if entry.visibility not in VISIBILITIES:
            raise RubricError(f"{path}: [tests.{name}] visibility {entry.visibility!r} not in "
                              f"{VISIBILITIES}")
        if entry.points < 0:
            raise RubricError(f"{path}: [tests.{name}] has negative points")
        out[name] = entry
    return out


def hidden_test_names(folder) -> list[str]:
    """Names of the ``test_*`` functions in ``<folder>/test_*.py`` (read with ``ast``)."""
    folder = Path(folder)
    names = []
    for f in sorted(folder.glob("test_*.py")):
        for node in ast.parse(f.read_text()).body:
            if isinstance(node, ast.FunctionDef) and node.name.startswith("test_"):
                names.append(node.name)
    return names


def to_result(entry: RubricEntry, outcome: dict | None) -> TestResult:
    """Map one raw pytest outcome (``{"outcome", "message", "fraction"}``) to a TestResult.

    passed -> full points (or the recorded fraction); failed -> the recorded fraction when the
    entry allows partial credit, else 0; error -> 0; skipped -> ``not_run``; missing -> error.
    """
    if outcome is None:
        return TestResult(entry.name, entry.part, 0.0, entry.points, "error",
                          "this test did not run (the grader stopped early)", entry.visibility)
    kind, msg, frac = outcome["outcome"], outcome.get("message", ""), outcome.get("fraction")
    if kind == "skipped":
        return TestResult(entry.name, entry.part, 0.0, entry.points, "not_run",
                          f"not run: {msg}" if not msg.startswith("not run") else msg,
                          entry.visibility)
    if kind == "passed":
        f = 1.0 if frac is None or not entry.partial else frac
        return TestResult(entry.name, entry.part, round(entry.points * f, 4), entry.points,
                          "passed", msg, entry.visibility)
    f = frac if (entry.partial and frac is not None and kind == "failed") else 0.0
    text = f"{entry.message}\n{msg}".strip()
    return TestResult(entry.name, entry.part, round(entry.points * f, 4), entry.points,
                      "failed" if kind == "failed" else "error", text, entry.visibility)

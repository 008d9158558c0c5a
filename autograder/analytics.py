"""Class analytics: ``python -m autograder analytics --results DIR`` writes ``DIR/analytics.html``.

Read from every ``DIR/<student>/results.json`` (:func:`autograder.reports.load_all_results`), the
page shows:

* the total and each rubric part as a histogram (``analytics_parts.png``) and a table;
* each hidden test's pass rate (``analytics_tests.png``): the share of the submissions where it ran
  that earned full points, and the mean fraction of its points;
* item discrimination, i.e. which tests separate strong from weak submissions: the corrected
  point-biserial correlation (Pearson's r between the test's fraction of points and the total of
  the *other* tests) and the upper-lower index D (mean fraction in the top 27 % by that rest score
  minus the bottom 27 %); a test everyone passes or everyone fails has no discrimination ("n/a");
* the ten most frequent failure messages (the rubric's fixed sentence removed, numbers folded),
  with how many submissions show each, the tests it came from and up to three example students;
* time per submission (``analytics_time.png``), its median, 90th percentile and the slowest five;
* infrastructure errors and timeouts: submissions whose grading failed before the sandbox,
  timeouts, worker restarts, sandbox failures, and how many ran with the weaker isolation.

The numbers are plain data (:func:`class_statistics`); the plots use matplotlib's object-oriented
API (``matplotlib.figure.Figure``, the Agg canvas: no display, no global pyplot state); the page
is rendered with Jinja2 with autoescaping, so student text cannot become markup. The PNGs are
written first and the HTML last, atomically (:func:`autograder.results.atomic_write_text`).
"""

from __future__ import annotations

import re
import statistics
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from autograder import reports
from autograder.results import SubmissionResult, atomic_write_text

ANALYTICS_HTML = "analytics.html"
PARTS_PNG = "analytics_parts.png"
TESTS_PNG = "analytics_tests.png"
TIME_PNG = "analytics_time.png"
#: Share of the class in each of the upper and lower groups of the upper-lower index.
UPPER_LOWER_SHARE = 0.27
#: Below this corrected point-biserial r a test is flagged as weakly discriminating.
LOW_DISCRIMINATION = 0.2
TOP_FAILURES = 10
EXAMPLE_STUDENTS = 3
#: Problem texts that mark a timeout, and those that mark a grader-side failure.
TIMEOUT_WORDS = ("time limit", "took longer", "time budget", "timed out", "timeout")
INFRA_WORDS = ("could not start", "restarted", "could not finish", "process died", "grader failed",
               "ended without")


@dataclass
class PartStats:
    """One rubric part (or ``total``): points of each submission where any of its tests ran."""

    name: str
    max_score: float
    scores: list[float]

    @property
    def mean(self) -> float:
        return statistics.fmean(self.scores) if self.scores else float("nan")

    @property
    def median(self) -> float:
        return statistics.median(self.scores) if self.scores else float("nan")

    @property
    def full_share(self) -> float:
        """Share of the submissions with full points (0..1)."""
        return sum(s >= self.max_score - 1e-9 for s in self.scores) / len(self.scores) if self.scores else 0.0


@dataclass
class TestStats:
    """One hidden test across the class.

    Attributes:
        n: submissions where it ran. pass_rate: share (0..1) of those with full points.
        mean_fraction: mean of score / max_score. point_biserial: corrected item-rest Pearson r,
        ``None`` where undefined. upper_lower: the D index in [-1, 1], ``None`` where undefined.
    """

    __test__ = False  # not a pytest test class

    name: str
    part: str
    max_score: float
    n: int = 0
    pass_rate: float = 0.0
    mean_fraction: float = 0.0
    point_biserial: float | None = None
    upper_lower: float | None = None

    @property
    def weak(self) -> bool:
        return self.point_biserial is not None and self.point_biserial < LOW_DISCRIMINATION


@dataclass
class FailureMessage:
    """A failure message (numbers folded) shown by ``students`` submissions in ``tests``."""

    text: str
    students: list[str] = field(default_factory=list)
    tests: list[str] = field(default_factory=list)


@dataclass
class Incident:
    """A grading incident: ``kind`` is ``infrastructure error``, ``grading failed``, ``timeout`` or
    ``grader/sandbox``."""

    student: str
    kind: str
    detail: str


@dataclass
class ClassStatistics:
    """Everything the page shows (see the module docstring); ``wall_s`` is in seconds."""

    n: int
    assignment: str
    parts: list[PartStats]
    tests: list[TestStats]
    failures: list[FailureMessage]
    wall_s: dict[str, float]
    incidents: list[Incident]
    isolation: dict[str, int]
    not_run: list[str]


# ----------------------------------------------------------------------------- numbers

def _fractions(results: list[SubmissionResult]) -> dict[str, dict[str, float]]:
    """``{test: {student: score / max_score}}`` over the tests that ran (max 0 counts as 1)."""
    out: dict[str, dict[str, float]] = {}
    for r in results:
        for t in r.tests:
            if t.status != "not_run":
                out.setdefault(t.name, {})[r.student] = t.score / t.max_score if t.max_score else 1.0
    return out


def discrimination(item: Iterable[float], rest: Iterable[float],
                   share: float = UPPER_LOWER_SHARE) -> tuple[float | None, float | None]:
    """``(point-biserial r, upper-lower D)`` of one test.

    Args:
        item: each submission's fraction of the test's points (0..1).
        rest: the same submissions' total over the *other* tests (points).
        share: size of the upper and lower groups, as a share of the class (at least 1 each).

    Returns:
        Pearson's r between ``item`` and ``rest`` (``None`` when either is constant or there are
        fewer than 3 submissions) and the mean ``item`` of the upper group minus that of the lower
        group, ranked by ``rest`` (``None`` when ``rest`` is constant or fewer than 2 submissions).
    """
    x, y = np.asarray(list(item), dtype=float), np.asarray(list(rest), dtype=float)
    if x.shape != y.shape:
        raise ValueError(f"item and rest differ in length: {x.shape} vs {y.shape}")
    r = None
    if len(x) >= 3 and np.ptp(x) > 0 and np.ptp(y) > 0:
        r = float(np.corrcoef(x, y)[0, 1])
    d = None
    if len(x) >= 2 and np.ptp(y) > 0:
        k = max(1, round(share * len(x)))
        order = np.argsort(y, kind="stable")
        d = float(x[order[-k:]].mean() - x[order[:k]].mean())
    return r, d


def _fold(text: str) -> str:
    """A message's grouping key: numbers folded to ``#``, whitespace collapsed."""
    return re.sub(r"\s+", " ", re.sub(r"\d+(\.\d+)?(e-?\d+)?", "#", text)).strip()


def _specific(output: str, rubric_message: str) -> str:
    """The part of a test's output that varies: the rubric's fixed sentence removed."""
    text = output.strip()
    if rubric_message and text.startswith(rubric_message):
        text = text[len(rubric_message):].strip() or rubric_message
    return text


def _rubric_messages(assignments) -> dict[str, str]:
    """``{test: rubric message}`` over the rubrics of the named assignments (unknown ones skipped)."""
    from autograder.assignment import get_assignment
    from autograder.rubric import load_rubric

    out = {}
    for name in sorted(set(assignments)):
        try:
            out.update({n: e.message for n, e in load_rubric(get_assignment(name).rubric).items()})
        except (OSError, ValueError):
            continue
    return out


def grading_failed(result: SubmissionResult) -> bool:
    """True when grading stopped before the sandbox ran (``job.failure_result``,
    ``job.infrastructure_result``)."""
    return result.isolation.startswith("not run")


def class_statistics(results: list[SubmissionResult]) -> ClassStatistics:
    """Compute every figure of the page from ``results`` (one per student; may be empty).

    A result that is an infrastructure error (the grader failed; the next run regrades it) is
    not a grade: it appears only among the incidents, never in the scores or pass rates.
    """
    everyone = sorted(results, key=lambda r: r.student)
    results = [r for r in everyone if not r.infrastructure_error]
    part_names = reports.part_names(results)
    parts = [PartStats("total", max((r.max_score for r in results), default=0.0),
                       [r.score for r in results])]
    for p in part_names:
        ran = [r for r in results if any(t.part == p and t.status != "not_run" for t in r.tests)]
        if not ran:
            continue  # e.g. the mIoU part when no tier was on: its tests are listed as not run
        maxima = [r.part_scores()[p][1] for r in ran]
        parts.append(PartStats(p, max(maxima, default=0.0), [r.part_scores()[p][0] for r in ran]))

    # which tests exist, in rubric order; which never ran
    order: dict[str, tuple[str, float]] = {}
    for r in results:
        for t in r.tests:
            order.setdefault(t.name, (t.part, t.max_score))
    fractions = _fractions(results)
    points = {r.student: {t.name: t.score for t in r.tests if t.status != "not_run"} for r in results}
    tests = []
    for name, (part, max_score) in order.items():
        ran = fractions.get(name, {})
        st = TestStats(name, part, max_score, n=len(ran))
        if ran:
            st.pass_rate = sum(f >= 1 - 1e-9 for f in ran.values()) / len(ran)
            st.mean_fraction = statistics.fmean(ran.values())
            students = sorted(ran)
            rest = [sum(points[s].values()) - points[s][name] for s in students]
            st.point_biserial, st.upper_lower = discrimination([ran[s] for s in students], rest)
        tests.append(st)
    not_run = [t.name for t in tests if t.n == 0]

    messages = _rubric_messages(r.assignment for r in results)
    groups: dict[str, FailureMessage] = {}
    for r in results:
        if grading_failed(r):
            continue  # reported once under incidents, not as 19 failure messages
        for t in r.tests:
            if t.status not in ("failed", "error") or not t.output.strip():
                continue
            text = _specific(t.output, messages.get(t.name, ""))
            g = groups.setdefault(_fold(text), FailureMessage(text=text))
            if r.student not in g.students:
                g.students.append(r.student)
            if t.name not in g.tests:
                g.tests.append(t.name)
    failures = sorted(groups.values(), key=lambda g: (-len(g.students), g.text))[:TOP_FAILURES]

    walls = sorted(r.wall_s for r in results)
    wall = {}
    if walls:
        wall = {"median": statistics.median(walls), "p90": float(np.percentile(walls, 90)),
                "max": walls[-1], "total": sum(walls)}

    incidents, isolation = [], {}
    for r in everyone:
        isolation[r.isolation or "unknown"] = isolation.get(r.isolation or "unknown", 0) + 1
        if r.infrastructure_error:
            incidents.append(Incident(r.student, "infrastructure error", r.infrastructure_error))
            continue
        if grading_failed(r):
            incidents.append(Incident(r.student, "grading failed", "; ".join(r.problems) or r.isolation))
            continue
        for p in r.problems:
            low = p.lower()
            if any(w in low for w in TIMEOUT_WORDS):
                incidents.append(Incident(r.student, "timeout", p))
            elif any(w in low for w in INFRA_WORDS):
                incidents.append(Incident(r.student, "grader/sandbox", p))
    return ClassStatistics(n=len(results), assignment=everyone[0].assignment if everyone else "",
                           parts=parts, tests=tests, failures=failures, wall_s=wall,
                           incidents=incidents, isolation=isolation, not_run=not_run)


# ----------------------------------------------------------------------------- plots

def _figure(width: float, height: float):
    from matplotlib.figure import Figure  # lazy: grading without the page never imports it

    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def plot_parts(parts: list[PartStats], path: Path) -> None:
    """One histogram per part (and the total): x = points, y = submissions."""
    cols = 3
    rows = -(-len(parts) // cols)
    fig = _figure(11, 2.6 * rows)
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax, part in zip(axes.flat, parts):
        top = max(part.max_score, max(part.scores, default=0.0), 1.0)
        bins = np.linspace(0, top, min(int(np.ceil(top)) + 1, 21) if top > 1 else 11)
        ax.hist(part.scores, bins=bins, color="#3b6ea5", edgecolor="white")
        ax.set_title(f"{part.name} (max {reports.fmt(part.max_score)}, n={len(part.scores)})", fontsize=10)
        ax.set_xlabel("points")
        ax.set_ylabel("submissions")
        ax.set_xlim(0, top)
        ax.yaxis.get_major_locator().set_params(integer=True)
    for ax in list(axes.flat)[len(parts):]:
        ax.set_visible(False)
    fig.savefig(path)


def plot_tests(tests: list[TestStats], path: Path) -> None:
    """Per test, side by side: pass rate (%) and corrected point-biserial r (rubric order, top down)."""
    ran = [t for t in tests if t.n]
    fig = _figure(11, 1.2 + 0.32 * max(len(ran), 1))
    ax_pass, ax_r = fig.subplots(1, 2, sharey=True, width_ratios=(3, 2))
    y = np.arange(len(ran))
    names = [t.name.removeprefix("test_") for t in ran]
    rates = [100 * t.pass_rate for t in ran]
    ax_pass.barh(y, rates, color="#3b6ea5")
    for yi, rate in zip(y, rates):
        ax_pass.text(rate + 1, yi, f"{rate:.0f}%", va="center", fontsize=8)
    ax_pass.set_yticks(y, names, fontsize=8)
    ax_pass.invert_yaxis()
    ax_pass.set_xlim(0, 112)  # room for the 100% label
    ax_pass.set_xticks(range(0, 101, 20))
    ax_pass.set_xlabel("pass rate (% of submissions with full points)")
    rs = [t.point_biserial if t.point_biserial is not None else 0.0 for t in ran]
    colours = ["#bbbbbb" if t.point_biserial is None else "#c0504d" if t.weak else "#4f9a57" for t in ran]
    ax_r.barh(y, rs, color=colours)
    ax_r.axvline(LOW_DISCRIMINATION, color="#777", linestyle="--", linewidth=1)
    ax_r.axvline(0, color="#333", linewidth=0.8)
    ax_r.set_xlim(-1, 1)
    ax_r.set_xlabel(f"discrimination r (red: < {LOW_DISCRIMINATION}; grey: n/a)")
    fig.savefig(path)


def plot_time(results: list[SubmissionResult], path: Path) -> None:
    """Histogram of the grading time per submission (seconds)."""
    fig = _figure(7, 2.8)
    ax = fig.subplots()
    ax.hist([r.wall_s for r in results], bins=20, color="#3b6ea5", edgecolor="white")
    ax.set_xlabel("grading time per submission (s)")
    ax.set_ylabel("submissions")
    ax.yaxis.get_major_locator().set_params(integer=True)
    fig.savefig(path)


# ----------------------------------------------------------------------------- page

def _render(stats: ClassStatistics, slowest: list[SubmissionResult]) -> str:
    import jinja2  # lazy, as in autograder.reports

    env = jinja2.Environment(loader=jinja2.PackageLoader("autograder", "templates"), autoescape=True,
                             undefined=jinja2.StrictUndefined)
    env.globals.update(fmt=reports.fmt)
    css = (Path(__file__).parent / "templates" / "_style.css").read_text(encoding="utf-8")
    return env.get_template("analytics.html.j2").render(
        s=stats, slowest=slowest, css=css, parts_png=PARTS_PNG, tests_png=TESTS_PNG, time_png=TIME_PNG,
        share=UPPER_LOWER_SHARE, low=LOW_DISCRIMINATION, examples=EXAMPLE_STUDENTS)


def write_analytics(results_dir: str | Path) -> Path:
    """Write ``analytics.html`` and its three PNGs into ``results_dir``; returns the HTML's path.

    Raises:
        FileNotFoundError: ``results_dir`` is not a folder.
        ValueError: a ``results.json`` that this grader did not write (the message names it).
    """
    out = Path(results_dir)
    if not out.is_dir():
        raise FileNotFoundError(f"{out}: no such results folder (the grade command's --out)")
    results = reports.load_all_results(out)
    stats = class_statistics(results)
    if results:
        plot_parts(stats.parts, out / PARTS_PNG)
        plot_tests(stats.tests, out / TESTS_PNG)
        plot_time(results, out / TIME_PNG)
    slowest = sorted(results, key=lambda r: -r.wall_s)[:5]
    atomic_write_text(out / ANALYTICS_HTML, _render(stats, slowest))
    return out / ANALYTICS_HTML


def analytics_step(results_dir: str | Path) -> dict[str, str]:
    """For ``grade``: write the page and return ``{"analytics": path or why not}``.

    The page is a convenience, like the PDF: a failure here is reported, never raised, so it can
    neither stop grading nor change a score.
    """
    try:
        return {"analytics": str(write_analytics(results_dir))}
    except Exception as e:  # noqa: BLE001 - the grades are already written; say why the page is not
        return {"analytics": f"analytics skipped: {type(e).__name__}: {e}"}


def main(argv: list[str] | None = None) -> int:
    import argparse
    import sys

    p = argparse.ArgumentParser(prog="python -m autograder analytics", description=(
        "Write DIR/analytics.html and its PNGs: score histograms per part, pass rate and discrimination "
        "per hidden test, the most frequent failure messages, time per submission, infrastructure errors."))
    p.add_argument("--results", required=True, help="the grade command's --out folder")
    args = p.parse_args(argv)
    try:
        path = write_analytics(args.results)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {path}")
    return 0

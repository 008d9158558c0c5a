"""Everything the grader writes, from :class:`~autograder.results.SubmissionResult` objects.

* ``<out>/<student>/results.json``: Gradescope's autograder format
  (https://gradescope-autograders.readthedocs.io/en/latest/specs/ : top-level ``score``,
  ``execution_time``, ``output``, ``visibility``, ``stdout_visibility``, ``extra_data`` and
  ``tests[]`` with ``name``, ``score``, ``max_score``, ``status`` ("passed"/"failed"), ``output``,
  ``tags``, ``visibility``). Our own fields live in ``extra_data``: isolation, problems, device,
  the submission's sha256, the grading settings and the full result (so that nothing is lost).
  A test that was not run (e.g. "needs a GPU") is written with ``max_score`` 0 so that Gradescope's
  total agrees with ours; its real maximum is in the test's ``extra_data``.
* ``<out>/<student>/feedback.html``: each test's verdict, points and message; never test code.
* ``<out>/grades.csv``: one row per student: each part's points, total, maximum.
* ``<out>/inline_answers.html`` (and ``.pdf`` when Chromium is installed): every student's answer,
  grouped by inline question, with an empty points field and comment box for the TA.

HTML is rendered with Jinja2 with autoescaping on: student text can never become markup.
"""

from __future__ import annotations

import csv
import io
import json
import math
import shutil
import subprocess
import tempfile
from dataclasses import asdict
from pathlib import Path

from autograder.results import SubmissionResult, atomic_write_text

RESULTS_JSON = "results.json"
FEEDBACK_HTML = "feedback.html"
GRADES_CSV = "grades.csv"
INLINE_HTML = "inline_answers.html"
INLINE_PDF = "inline_answers.pdf"

STATUS_WORDS = {"passed": "pass", "failed": "fail", "error": "fail (error)", "not_run": "not run"}
#: Flags for headless Chromium on a machine with no network and no display.
CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
)


def fmt(x: float) -> str:
    """Points for people: ``3`` not ``3.0``, ``2.5`` stays, at most 2 decimals."""
    return f"{x:.2f}".rstrip("0").rstrip(".") if not math.isnan(x) else "nan"


def _env():
    import jinja2  # lazy: only the report writers need it

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("autograder", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    env.globals.update(fmt=fmt, status_words=STATUS_WORDS)
    return env


def _css() -> str:
    return (Path(__file__).parent / "templates" / "_style.css").read_text(encoding="utf-8")


# ----------------------------------------------------------------------------- per student

def gradescope_dict(result: SubmissionResult, submission_sha256: str = "", settings: dict | None = None,
                    run_id: str = "") -> dict:
    """The Gradescope ``results.json`` object for ``result`` (see the module docstring)."""
    tests = []
    for t in result.tests:
        ran = t.status != "not_run"
        out = t.output if ran else (t.output or "not run")
        tests.append({
            "name": t.name,
            "score": t.score if ran else 0.0,
            "max_score": t.max_score if ran else 0.0,
            # Gradescope's status is passed/failed; a test that did not run is neither
            **({} if not ran else {"status": "passed" if t.status == "passed" else "failed"}),
            "output": out,
            "tags": [t.part],
            "visibility": t.visibility,
            "extra_data": {"part": t.part, "status": t.status, "max_score_if_run": t.max_score},
        })
    summary = [f"Autograded score: {fmt(result.score)} / {fmt(result.max_score)}.",
               f"Isolation: {result.isolation or 'unknown'}."]
    summary += [f"Problem: {p}" for p in result.problems]
    return {
        "score": result.score,
        "execution_time": round(result.wall_s, 3),
        "output": "\n".join(summary),
        "output_format": "text",
        "visibility": "visible",
        "stdout_visibility": "hidden",
        "tests": tests,
        "extra_data": {
            "student": result.student,
            "assignment": result.assignment,
            "max_score": result.max_score,
            "isolation": result.isolation,
            "problems": list(result.problems),
            "device": result.device,
            "submission_sha256": submission_sha256,
            "settings": settings or {},
            "run_id": run_id,
            "result": asdict(result),
        },
    }


def read_results_json(path: str | Path) -> tuple[SubmissionResult, dict]:
    """Read a ``results.json`` written by :func:`write_student_outputs`.

    Returns ``(result, extra_data)``. Raises ``ValueError`` naming the file if it is not ours.
    """
    path = Path(path)
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
        extra = d["extra_data"]
        result = SubmissionResult.from_json(json.dumps(extra["result"]))
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ValueError(f"{path}: not a results.json written by this grader ({e})") from None
    return result, extra


def feedback_html(result: SubmissionResult) -> str:
    """The student's ``feedback.html``: verdicts, points, messages, isolation; no test code."""
    return _env().get_template("feedback.html.j2").render(r=result, tests=result.tests, css=_css())


def write_student_outputs(result: SubmissionResult, student_dir: str | Path, *, submission_sha256: str = "",
                          settings: dict | None = None, run_id: str = "") -> Path:
    """Write ``feedback.html`` then ``results.json`` (each atomically) into ``student_dir``.

    ``results.json`` is written last: its presence (with the right hash) marks the student done.
    Returns the path of ``results.json``.
    """
    student_dir = Path(student_dir)
    atomic_write_text(student_dir / FEEDBACK_HTML, feedback_html(result))
    payload = gradescope_dict(result, submission_sha256, settings, run_id)
    atomic_write_text(student_dir / RESULTS_JSON, json.dumps(payload, indent=2))
    return student_dir / RESULTS_JSON


# ----------------------------------------------------------------------------- whole class

def load_all_results(out_dir: str | Path) -> list[SubmissionResult]:
    """Every ``<out_dir>/<student>/results.json``, sorted by student. Unreadable files raise."""
    results = []
    for p in sorted(Path(out_dir).glob(f"*/{RESULTS_JSON}")):
        results.append(read_results_json(p)[0])
    return results


def part_names(results: list[SubmissionResult]) -> list[str]:
    """The rubric parts over all results, in first-seen rubric order."""
    names: list[str] = []
    for r in results:
        for t in r.tests:
            if t.part not in names:
                names.append(t.part)
    return names


def _part_ran(result: SubmissionResult, part: str) -> bool:
    return any(t.part == part and t.status != "not_run" for t in result.tests)


def grades_csv(results: list[SubmissionResult]) -> str:
    """CSV text: ``student, <part>..., total, max`` (points over the tests that ran; a part none
    of whose tests ran, e.g. the GPU mIoU tier on a CPU runner, is left empty)."""
    parts = part_names(results)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["student", *parts, "total", "max"])
    for r in sorted(results, key=lambda r: r.student):
        ps = r.part_scores()
        cells = [fmt(ps[p][0]) if _part_ran(r, p) else "" for p in parts]
        w.writerow([r.student, *cells, fmt(r.score), fmt(r.max_score)])
    return buf.getvalue()


def score_table(results: list[SubmissionResult]) -> str:
    """A plain-text table: student, each part as score/max, total/max; one line per student."""
    parts = part_names(results)
    header = ["student", *parts, "total"]
    rows = []
    for r in sorted(results, key=lambda r: r.student):
        ps = r.part_scores()
        cells = [f"{fmt(ps[p][0])}/{fmt(ps[p][1])}" if _part_ran(r, p) else "not run" for p in parts]
        rows.append([r.student, *cells, f"{fmt(r.score)}/{fmt(r.max_score)}"])
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    line = lambda cells: "  ".join(str(c).ljust(w) for c, w in zip(cells, widths)).rstrip()
    return "\n".join([line(header), line(["-" * w for w in widths]), *(line(r) for r in rows)])


def inline_answers_html(results: list[SubmissionResult]) -> str:
    """One page: every student's answer grouped by inline question, each with a rubric box."""
    questions: dict[str, dict] = {}
    for r in sorted(results, key=lambda r: r.student):
        for a in r.inline_answers:
            q = questions.setdefault(a.grade_id, {"grade_id": a.grade_id, "question": a.question,
                                                  "points": a.points, "answers": []})
            q["answers"].append((r.student, a.answer))
    assignment = results[0].assignment if results else ""
    return _env().get_template("inline_answers.html.j2").render(
        questions=list(questions.values()), assignment=assignment, n_students=len(results), css=_css()
    )


def find_chromium() -> str | None:
    """Path of a Chromium binary (Debian's ``chromium``), or ``None``."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if path := shutil.which(name):
            return path
    return None


def html_to_pdf(html_path: str | Path, pdf_path: str | Path, timeout: float = 120) -> tuple[bool, str]:
    """Print ``html_path`` to ``pdf_path`` with headless Chromium.

    Returns ``(True, path)`` or ``(False, why it was skipped)``; never raises for a missing or
    failing browser (the PDF is a convenience, the HTML is the report).
    """
    chromium = find_chromium()
    if chromium is None:
        return False, "PDF skipped: Chromium is not installed (apt-get install chromium)"
    html_path, pdf_path = Path(html_path).resolve(), Path(pdf_path).resolve()
    tmp_pdf = pdf_path.with_name(f".{pdf_path.name}.tmp")
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        cmd = [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--no-pdf-header-footer",
               f"--print-to-pdf={tmp_pdf}", html_path.as_uri()]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
        except (OSError, subprocess.TimeoutExpired) as e:
            tmp_pdf.unlink(missing_ok=True)
            return False, f"PDF skipped: Chromium failed ({e})"
    if proc.returncode != 0 or not tmp_pdf.is_file() or tmp_pdf.stat().st_size == 0:
        tmp_pdf.unlink(missing_ok=True)
        tail = (proc.stderr or "").strip().splitlines()[-3:]
        return False, f"PDF skipped: Chromium exited with {proc.returncode}: {' | '.join(tail)}"
    tmp_pdf.replace(pdf_path)
    return True, str(pdf_path)


def write_class_reports(out_dir: str | Path, pdf: bool = True) -> dict[str, str]:
    """Regenerate ``grades.csv`` and ``inline_answers.html`` (+ PDF) from the per-student results.

    Every file is written atomically. Returns ``{name: path or message}`` for the summary.
    """
    out_dir = Path(out_dir)
    results = load_all_results(out_dir)
    written = {}
    atomic_write_text(out_dir / GRADES_CSV, grades_csv(results))
    written["grades"] = str(out_dir / GRADES_CSV)
    atomic_write_text(out_dir / INLINE_HTML, inline_answers_html(results))
    written["inline_answers"] = str(out_dir / INLINE_HTML)
    if pdf:
        _, msg = html_to_pdf(out_dir / INLINE_HTML, out_dir / INLINE_PDF)
        written["inline_answers_pdf"] = msg
    else:
        written["inline_answers_pdf"] = "PDF skipped: not asked for"
    return written

"""Everything the grader writes, from :class:`~autograder.results.SubmissionResult` objects.

* ``<out>/<student>/results.json``: Gradescope's autograder format
  (https://gradescope-autograders.readthedocs.io/en/latest/specs/ : top-level ``score``,
  ``execution_time``, ``output``, ``visibility``, ``stdout_visibility``, ``extra_data`` and
  ``tests[]`` with ``name``, ``score``, ``max_score``, ``status`` ("passed"/"failed"), ``output``,
  ``tags``, ``visibility``). Our own fields live in ``extra_data``: isolation, problems, device,
  the submission's sha256, the grading settings and the full result (so that nothing is lost).
  A test that was not run (e.g. "needs a GPU") is written with ``max_score`` 0 so that Gradescope's
  total agrees with ours; its real maximum is in the test's ``extra_data``.
  The top-level ``score`` is after the late penalty (``extra_data.late`` says how it was found).
* ``<out>/<student>/feedback.html``: the STUDENT version, safe to return: it follows each test's
  visibility and the release state (:func:`shown_to_student`). Before grades are published the
  student sees the ``visible`` tests (and the ``after_due_date`` ones once their due date has
  passed) with verdicts, points and messages, and for the withheld tests only how many there are
  and their points possible: neither their names, messages nor earned points, and no total
  (which would give the withheld results away). After publication (``--published``) the
  ``after_published`` tests are shown in full and the ``hidden`` ones as one aggregate line
  ("other tests: x / y points"), with the total. Never test code.
* ``<out>/<student>/feedback_instructor.html``: every test, with its visibility.
* ``<out>/grades.csv``: one row per student: each part's points, total, maximum, then the late
  policy's ``late_penalty`` and ``final`` score, ``submitted_at``, ``time_source``, ``late``,
  ``forced`` (``submit --force``) and ``problems``.
* ``<out>/inline_answers.html`` (and ``.pdf`` when Chromium is installed): every student's answer,
  grouped by inline question, markdown and math rendered: a READ-ONLY report; grades are entered
  and saved in nbgrader's formgrader. ``inline_answers_anonymous.html`` is the same with each
  student replaced by a stable code (:func:`anonymous_code`), answers ordered by code, for blind
  reading; ``inline_answers_key.csv`` maps codes to students (keep it from the graders).

HTML is rendered with Jinja2 with autoescaping on: student text can never become markup. Written
answers are markdown and TeX, made safe HTML by :mod:`autograder.richtext`.
"""

from __future__ import annotations

import csv
import hashlib
import hmac
import io
import json
import math
import secrets
import shutil
import subprocess
import tempfile
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

from autograder.policy import parse_time, penalty_points
from autograder.results import SubmissionResult, TestResult, atomic_write_text
from autograder.richtext import markdown_renderer

RESULTS_JSON = "results.json"
FEEDBACK_HTML = "feedback.html"
FEEDBACK_INSTRUCTOR_HTML = "feedback_instructor.html"
GRADES_CSV = "grades.csv"
INLINE_HTML = "inline_answers.html"
INLINE_PDF = "inline_answers.pdf"
INLINE_ANON_HTML = "inline_answers_anonymous.html"
INLINE_KEY_CSV = "inline_answers_key.csv"
#: The course salt for anonymous codes, created once per output folder unless one is given.
ANON_SALT_FILE = ".anon_salt"

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


# ----------------------------------------------------------------------------- visibility, late work

def shown_to_student(visibility: str, published: bool, due_passed: bool) -> bool:
    """Whether a student may see a test of this Gradescope ``visibility`` now.

    ``visible``: always; ``after_due_date``: once the student's due date has passed or grades are
    published; ``after_published``: once published; ``hidden``: never (only in an aggregate).
    """
    if visibility == "visible":
        return True
    if visibility == "after_due_date":
        return published or due_passed
    if visibility == "after_published":
        return published
    return False


def _due_passed(result: SubmissionResult, now: datetime | None) -> bool:
    due = (result.intake.get("late") or {}).get("due")
    return due is not None and (now or datetime.now(UTC)) >= parse_time(due)


def late_penalty(result: SubmissionResult) -> float:
    """Points the late policy deducts from ``result`` (0 when on time or no policy)."""
    return penalty_points(result.intake.get("late"), result.score, result.max_score)


def final_score(result: SubmissionResult) -> float:
    """The autograded score after the late penalty."""
    return round(result.score - late_penalty(result), 4)


def student_view(result: SubmissionResult, published: bool = False, now: datetime | None = None) -> dict:
    """What the student version of the feedback shows (see the module docstring).

    Returns ``{"tests": shown TestResults, "withheld": {"count", "max_score"} of the tests not
    shown before publication, "hidden": {"count", "score", "max_score"} of the tests still not
    shown after it (``hidden``), "show_total": bool, "published": bool, "due_passed": bool}``;
    counts and points cover only the tests that ran.
    """
    due_passed = _due_passed(result, now)
    shown, withheld, hidden = [], [], []
    for t in result.tests:
        if shown_to_student(t.visibility, published, due_passed):
            shown.append(t)
        elif t.status == "not_run":
            continue
        elif published:
            hidden.append(t)
        else:
            withheld.append(t)
    return {
        "tests": shown,
        "withheld": {"count": len(withheld), "max_score": sum(t.max_score for t in withheld)},
        "hidden": {"count": len(hidden), "score": sum(t.score for t in hidden),
                   "max_score": sum(t.max_score for t in hidden)},
        "show_total": not withheld,
        "published": published,
        "due_passed": due_passed,
    }


def intake_facts(result: SubmissionResult) -> list[tuple[str, str]]:
    """The hand-in facts every report shows, as ``(label, text)`` pairs: submission time and its
    source, the LMS, the manifest's run settings (budget, smoke, data set, kit version), ``forced``
    and the problems ``submit`` recorded, the duplicates not graded, intake warnings."""
    i = result.intake or {}
    facts: list[tuple[str, str]] = []
    if i.get("submitted_at"):
        facts.append(("submitted", f"{i['submitted_at']} (from {i.get('time_source') or 'unknown'})"))
    lms = i.get("lms") or {}
    if lms:
        facts.append(("LMS", f"{lms.get('system')}" + (f", user {lms['user_id']}" if lms.get("user_id") else "")
                      + (", marked LATE" if lms.get("late") else "")))
    m = i.get("manifest") or {}
    run = m.get("run")
    if isinstance(run, dict):
        dataset = str(run.get("dataset", "?"))
        if run.get("dataset_sha256"):
            dataset += f" (sha256 {str(run['dataset_sha256'])[:12]})"
        facts.append(("run", f"budget {run.get('budget', '?')}, smoke mode {'ON' if run.get('smoke') else 'off'}, "
                             f"data set {dataset}, kit {run.get('kit_version', '?')}"
                      + (f", allowed: {', '.join(map(str, run['allowed']))}" if run.get("allowed") else "")))
    elif m:
        facts.append(("run", "not recorded (the zip was made by an older submit)"))
    if m.get("forced"):
        problems = m.get("problems") or []
        facts.append(("forced", f"handed in with submit --force despite {len(problems)} problem(s)"))
    for p in m.get("problems") or []:
        facts.append(("submit found", str(p)))
    for r in i.get("replaced") or []:
        when = r.get("submitted_at") or "time unknown"
        facts.append(("not graded", f"another hand-in, {when} (rule: keep the {i.get('keep')} one)"))
    for w in i.get("warnings") or []:
        facts.append(("warning", str(w)))
    return facts


def run_warnings(result: SubmissionResult) -> list[str]:
    """Manifest facts that make the numbers meaningless (smoke mode, sample data), for a banner."""
    run = ((result.intake or {}).get("manifest") or {}).get("run")
    out = []
    if isinstance(run, dict):
        if run.get("smoke"):
            out.append("The notebooks were run in smoke mode: their training numbers are not meaningful.")
        if run.get("dataset") == "sample":
            out.append("The notebooks were run on the 24-image sample, not the CMP Facade data set.")
    return out


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
    late = (result.intake or {}).get("late") or {}
    penalty = late_penalty(result)
    if late.get("late") or penalty:
        summary.append(f"Late: {late.get('note') or 'late'}; {fmt(penalty)} point(s) deducted; "
                       f"score after the penalty: {fmt(final_score(result))}. Policy: {late.get('policy', '')}.")
    summary += [f"Problem: {p}" for p in result.problems]
    summary += [f"{label.capitalize()}: {text}" for label, text in intake_facts(result)]
    return {
        "score": final_score(result),
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
            "late": {**late, "penalty": penalty, "score_before_penalty": result.score},
            "intake": result.intake,
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


def feedback_html(result: SubmissionResult, view: str = "student", published: bool = False,
                  now: datetime | None = None) -> str:
    """A ``feedback.html`` page: verdicts, points, messages, isolation, hand-in facts; no test code.

    ``view="student"`` follows visibility and the release state (``published``; ``now`` decides
    whether the due date has passed, default the current time); ``view="instructor"`` shows every
    test with its visibility. Raises ``ValueError`` for another ``view``.
    """
    if view not in ("student", "instructor"):
        raise ValueError(f"view must be 'student' or 'instructor', got {view!r}")
    sv = student_view(result, published, now) if view == "student" else {
        "tests": result.tests, "withheld": {"count": 0, "max_score": 0.0},
        "hidden": {"count": 0, "score": 0.0, "max_score": 0.0}, "show_total": True,
        "published": published, "due_passed": _due_passed(result, now)}
    shown: list[TestResult] = sv["tests"]
    parts: dict[str, list[float]] = {}
    for t in shown:
        acc = parts.setdefault(t.part, [0.0, 0.0, 0])
        if t.status != "not_run":
            acc[0] += t.score
            acc[1] += t.max_score
            acc[2] += 1
    late = {"late": False, "note": "", "submitted_at": None, "time_source": "", "due": None,
            "extension": False, "policy": "", **((result.intake or {}).get("late") or {})}
    return _env().get_template("feedback.html.j2").render(
        r=result, tests=shown, parts=parts, view=view, sv=sv, css=_css(), facts=intake_facts(result),
        run_warnings=run_warnings(result), late=late, penalty=late_penalty(result),
        final=final_score(result))


def write_feedback(result: SubmissionResult, student_dir: str | Path, published: bool = False,
                   now: datetime | None = None) -> None:
    """Write both versions of the feedback (each atomically) into ``student_dir``."""
    student_dir = Path(student_dir)
    atomic_write_text(student_dir / FEEDBACK_HTML, feedback_html(result, "student", published, now))
    atomic_write_text(student_dir / FEEDBACK_INSTRUCTOR_HTML, feedback_html(result, "instructor", published, now))


def rewrite_feedback(out_dir: str | Path, published: bool = False, now: datetime | None = None) -> int:
    """Re-render every ``<out_dir>/<student>/feedback*.html`` from its ``results.json`` for the
    given release state (e.g. after publishing grades); returns the number of students."""
    paths = sorted(Path(out_dir).glob(f"*/{RESULTS_JSON}"))
    for p in paths:
        write_feedback(read_results_json(p)[0], p.parent, published, now)
    return len(paths)


def write_student_outputs(result: SubmissionResult, student_dir: str | Path, *, submission_sha256: str = "",
                          settings: dict | None = None, run_id: str = "") -> Path:
    """Write both ``feedback`` pages (student version: before publication) then ``results.json``
    (each atomically) into ``student_dir``.

    ``results.json`` is written last: its presence (with the right hash) marks the student done.
    Returns the path of ``results.json``.
    """
    student_dir = Path(student_dir)
    write_feedback(result, student_dir)
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


#: grades.csv columns after the parts, total and max (added after them: old readers keep working).
EXTRA_COLUMNS = ("late_penalty", "final", "submitted_at", "time_source", "late", "forced", "problems")


def _problems_cell(r: SubmissionResult) -> str:
    m = (r.intake or {}).get("manifest") or {}
    items = list(r.problems) + [f"submit: {p}" for p in m.get("problems") or []]
    items += [f"intake: {w}" for w in (r.intake or {}).get("warnings") or []]
    text = " | ".join(" ".join(str(x).split()) for x in items)
    # never a spreadsheet formula (CSV injection), whatever a manifest says
    return "'" + text if text[:1] in ("=", "+", "-", "@") else text


def grades_csv(results: list[SubmissionResult]) -> str:
    """CSV text: ``student, <part>..., total, max`` (points over the tests that ran; a part none
    of whose tests ran, e.g. the GPU mIoU tier on a CPU runner, is left empty), then
    :data:`EXTRA_COLUMNS`: ``late_penalty`` (points), ``final`` (total - late_penalty),
    ``submitted_at`` (ISO UTC), ``time_source``, ``late`` (units late, e.g. days, or empty),
    ``forced`` (``yes`` when handed in with ``submit --force``) and ``problems`` (`` | ``-separated)."""
    parts = part_names(results)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["student", *parts, "total", "max", *EXTRA_COLUMNS])
    for r in sorted(results, key=lambda r: r.student):
        ps = r.part_scores()
        cells = [fmt(ps[p][0]) if _part_ran(r, p) else "" for p in parts]
        i = r.intake or {}
        late = i.get("late") or {}
        forced = bool((i.get("manifest") or {}).get("forced"))
        w.writerow([r.student, *cells, fmt(r.score), fmt(r.max_score), fmt(late_penalty(r)),
                    fmt(final_score(r)), i.get("submitted_at") or "", i.get("time_source") or "",
                    f"{late['units']} {late.get('per', '')}(s)" if late.get("units")
                    else ("yes" if late.get("late") else ""),
                    "yes" if forced else "", _problems_cell(r)])
    return buf.getvalue()


def intake_summary(results: list[SubmissionResult]) -> list[str]:
    """Console lines: how many hand-ins were forced, had problems, were late, replaced others."""
    def names(rs):
        return ", ".join(r.student for r in rs[:8]) + (" ..." if len(rs) > 8 else "")

    groups = {
        "handed in with submit --force": [r for r in results if (r.intake.get("manifest") or {}).get("forced")],
        "with problems (deleted cells, unreadable notebooks, submit's list...)":
            [r for r in results if _problems_cell(r)],
        "late": [r for r in results if (r.intake.get("late") or {}).get("late")],
        "penalised for lateness": [r for r in results if late_penalty(r) > 0],
        "with several hand-ins (one graded)": [r for r in results if r.intake.get("replaced")],
    }
    return [f"{label}: {len(rs)}" + (f" ({names(rs)})" if rs else "") for label, rs in groups.items()]


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


def anonymous_code(student: str, salt: str) -> str:
    """A stable code for ``student``: ``anon-`` + 10 hex digits of HMAC-SHA256(salt, student)."""
    return "anon-" + hmac.new(salt.encode(), student.encode(), hashlib.sha256).hexdigest()[:10]


def course_salt(out_dir: str | Path, salt: str | None = None) -> str:
    """``salt`` if given, else the one kept in ``out_dir/.anon_salt`` (created once, random)."""
    if salt:
        return salt
    path = Path(out_dir) / ANON_SALT_FILE
    if not path.is_file():
        atomic_write_text(path, secrets.token_hex(16))
    return path.read_text(encoding="utf-8").strip()


def inline_answers_html(results: list[SubmissionResult], salt: str | None = None) -> str:
    """One read-only page: every student's answer grouped by inline question, markdown and math
    rendered. With ``salt``, students are replaced by :func:`anonymous_code` and ordered by code."""
    md = markdown_renderer()
    who = (lambda s: anonymous_code(s, salt)) if salt else (lambda s: s)
    questions: dict[str, dict] = {}
    for r in sorted(results, key=lambda r: who(r.student)):
        for a in r.inline_answers:
            q = questions.setdefault(a.grade_id, {"grade_id": a.grade_id, "question": md(a.question),
                                                  "points": a.points, "answers": []})
            q["answers"].append((who(r.student), md(a.answer) if a.answer.strip() else ""))
    assignment = results[0].assignment if results else ""
    return _env().get_template("inline_answers.html.j2").render(
        questions=list(questions.values()), assignment=assignment, n_students=len(results), css=_css(),
        anonymous=bool(salt))


def anonymous_key_csv(results: list[SubmissionResult], salt: str) -> str:
    """CSV ``code, student`` for the anonymised report (for the instructor, not the graders)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["code", "student"])
    for code, student in sorted((anonymous_code(r.student, salt), r.student) for r in results):
        w.writerow([code, student])
    return buf.getvalue()


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


def write_class_reports(out_dir: str | Path, pdf: bool = True, salt: str | None = None) -> dict[str, str]:
    """Regenerate ``grades.csv``, ``inline_answers.html`` (+ PDF), its anonymised version and key
    from the per-student results; ``salt`` for the codes (default: :func:`course_salt`).

    Every file is written atomically. Returns ``{name: path or message}`` for the summary.
    """
    out_dir = Path(out_dir)
    results = load_all_results(out_dir)
    written = {}
    atomic_write_text(out_dir / GRADES_CSV, grades_csv(results))
    written["grades"] = str(out_dir / GRADES_CSV)
    atomic_write_text(out_dir / INLINE_HTML, inline_answers_html(results))
    written["inline_answers"] = f"{out_dir / INLINE_HTML} (read-only; grade in formgrader)"
    salt = course_salt(out_dir, salt)
    atomic_write_text(out_dir / INLINE_ANON_HTML, inline_answers_html(results, salt=salt))
    atomic_write_text(out_dir / INLINE_KEY_CSV, anonymous_key_csv(results, salt))
    written["inline_anonymous"] = f"{out_dir / INLINE_ANON_HTML} (key: {INLINE_KEY_CSV})"
    if pdf:
        _, msg = html_to_pdf(out_dir / INLINE_HTML, out_dir / INLINE_PDF)
        written["inline_answers_pdf"] = msg
    else:
        written["inline_answers_pdf"] = "PDF skipped: not asked for"
    return written

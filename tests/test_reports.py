"""Report contents: grades.csv, Gradescope results.json, feedback.html, inline_answers.html."""

from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import asdict

import pytest

from autograder import reports
from autograder.results import InlineAnswer, SubmissionResult, TestResult
from autograder.richtext import render_markdown

EVIL = "<script>alert('x')</script> & <b>bold</b>"


def sample(student="alice", answer="Because features transfer.") -> SubmissionResult:
    return SubmissionResult(
        student=student, assignment="fcn_segmentation",
        tests=[
            TestResult("test_fcn32s_layers", "fcn32s", 3.0, 3.0, "passed"),
            TestResult("test_fcn32s_same_weights", "fcn32s", 0.0, 3.0, "failed",
                       f"check the crop offset {EVIL}", "after_published"),
            TestResult("test_padding", "transposed_conv_padding", 1.5, 3.0, "error", "raised ValueError"),
            TestResult("test_fcn8s_miou_gpu", "training", 0.0, 4.0, "not_run", "not run: needs a GPU"),
        ],
        inline_answers=[InlineAnswer("q1_pretrained", "**Question 1.** Why?", answer, 2.0),
                        InlineAnswer("q2_compare", "**Question 2.** Compare.", f"{student} compares", 2.0)],
        isolation="bubblewrap (no network)", problems=["cell 'x' was deleted"], wall_s=12.5,
    )


def test_gradescope_results_json_fields(tmp_path):
    r = sample()
    path = reports.write_student_outputs(r, tmp_path / "alice", submission_sha256="abc", settings={"miou": "none"})
    d = json.loads(path.read_text())
    assert d["score"] == 4.5 and d["execution_time"] == 12.5
    assert d["visibility"] in ("visible", "hidden", "after_due_date", "after_published")
    assert "bubblewrap" in d["output"] and "cell 'x' was deleted" in d["output"]
    assert [t["name"] for t in d["tests"]] == [t.name for t in r.tests]
    for t in d["tests"]:
        assert {"name", "score", "max_score", "output", "visibility"} <= set(t)
        ran = t["extra_data"]["status"] != "not_run"
        # Gradescope knows passed/failed only: a test that did not run carries no status
        assert t.get("status") in (("passed", "failed") if ran else (None,))
    assert d["tests"][1]["visibility"] == "after_published" and d["tests"][1]["status"] == "failed"
    # not run: out of Gradescope's total as out of ours
    assert d["tests"][3]["max_score"] == 0 and d["tests"][3]["extra_data"]["max_score_if_run"] == 4.0
    assert sum(t["score"] for t in d["tests"]) == d["score"]
    extra = d["extra_data"]
    assert extra["isolation"] == r.isolation and extra["problems"] == r.problems
    assert extra["submission_sha256"] == "abc" and extra["max_score"] == r.max_score == 9.0
    back, _ = reports.read_results_json(path)
    assert back == r


def test_feedback_shows_verdicts_messages_isolation_and_escapes(tmp_path):
    html = reports.feedback_html(sample(), view="instructor")
    assert "bubblewrap (no network)" in html
    assert "check the crop offset" in html and "raised ValueError" in html
    assert "not run" in html and "fail (error)" in html and ">pass<" in html
    assert "4.5 / 9" in html and "Instructor version" in html
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "cell &#39;x&#39; was deleted" in html
    assert "def test_" not in html and "assert " not in html  # no hidden test code


SECRET = "Check the crop offset (19 for FCN-32s)"


def mixed(student="alice", late=None) -> SubmissionResult:
    """One test of each visibility; the non-visible ones fail with revealing messages."""
    return SubmissionResult(
        student=student, assignment="fcn_segmentation", isolation="bubblewrap",
        tests=[
            TestResult("test_fcn32s_layers", "fcn32s", 3.0, 3.0, "passed", "", "visible"),
            TestResult("test_fcn32s_same_weights", "fcn32s", 1.0, 3.0, "failed", SECRET, "after_published"),
            TestResult("test_padding_other_strides", "transposed_conv_padding", 0.0, 1.0, "failed",
                       "stride 3 gives the wrong size", "hidden"),
            TestResult("test_soft_iou_after_due", "soft_iou_loss", 2.0, 2.0, "passed", "due-secret",
                       "after_due_date"),
        ],
        intake={"late": late} if late else {},
    )


def test_student_feedback_withholds_hidden_tests_and_messages_before_publication():
    html = reports.feedback_html(mixed())  # the default is the student version, before publication
    for secret in (SECRET, "19 for FCN-32s", "test_fcn32s_same_weights", "test_padding_other_strides",
                   "stride 3 gives", "test_soft_iou_after_due", "after_published", "hidden"):
        assert secret not in html, secret
    assert "test_fcn32s_layers" in html and "3 / 3" in html  # the visible test, in full
    # withheld: how many and their points possible, not their score, and no total
    assert "3 more test(s), worth 6 point(s)" in html
    assert "6 / 9" not in html and "Your total is shown when grades are published" in html


def test_student_feedback_after_publication_shows_after_published_and_aggregates_hidden():
    html = reports.feedback_html(mixed(), published=True)
    assert SECRET.replace("(", "(") in html and "test_fcn32s_same_weights" in html
    assert "test_soft_iou_after_due" in html
    # hidden: never by name or message, only as points
    assert "test_padding_other_strides" not in html and "stride 3 gives" not in html
    assert "Other tests (1, not shown individually):\n0 / 1 points" in html
    assert "6 / 9" in html  # the total is back


def test_withheld_tests_that_did_not_run_are_not_counted():
    r = mixed()
    r.tests.append(TestResult("test_fcn8s_miou_gpu", "training", 0.0, 4.0, "not_run", "needs a GPU",
                              "after_published"))
    html = reports.feedback_html(r)
    assert "3 more test(s), worth 6 point(s)" in html and "test_fcn8s_miou_gpu" not in html
    only_not_run = SubmissionResult("a", "fcn_segmentation", tests=[r.tests[0], r.tests[-1]])
    assert reports.student_view(only_not_run)["show_total"] is True


def test_after_due_date_tests_appear_once_the_students_due_date_has_passed():
    from datetime import UTC, datetime

    late = {"due": "2026-12-01T00:00:00+00:00", "late": False, "fraction": 0.0}
    before = reports.feedback_html(mixed(late=late), now=datetime(2026, 11, 30, tzinfo=UTC))
    after = reports.feedback_html(mixed(late=late), now=datetime(2026, 12, 2, tzinfo=UTC))
    assert "test_soft_iou_after_due" not in before and "due-secret" not in before
    assert "test_soft_iou_after_due" in after and SECRET not in after


def test_instructor_feedback_shows_everything_with_visibility():
    html = reports.feedback_html(mixed(), view="instructor")
    for text in (SECRET, "test_padding_other_strides", "stride 3 gives", "(hidden)", "(after_published)",
                 "6 / 9"):
        assert text in html, text
    with pytest.raises(ValueError, match="view"):
        reports.feedback_html(mixed(), view="teacher")


def test_both_feedback_versions_are_written_and_can_be_republished(tmp_path):
    reports.write_student_outputs(mixed(), tmp_path / "alice")
    student = (tmp_path / "alice" / "feedback.html").read_text()
    assert SECRET not in student and SECRET in (tmp_path / "alice" / "feedback_instructor.html").read_text()
    assert reports.rewrite_feedback(tmp_path, published=True) == 1
    assert SECRET in (tmp_path / "alice" / "feedback.html").read_text()
    # Gradescope keeps each test's own visibility (Gradescope hides them itself)
    d = json.loads((tmp_path / "alice" / "results.json").read_text())
    assert [t["visibility"] for t in d["tests"]] == ["visible", "after_published", "hidden", "after_due_date"]


def test_grades_csv_columns_and_rows():
    text = reports.grades_csv([sample("bob"), sample("alice")])
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == ["student", "fcn32s", "transposed_conv_padding", "training", "total", "max",
                       *reports.EXTRA_COLUMNS]
    assert rows[1][:6] == ["alice", "3", "1.5", "", "4.5", "9"]  # training did not run: empty
    assert rows[1][6:] == ["0", "4.5", "", "", "", "", "cell 'x' was deleted"]
    assert [r[0] for r in rows[1:]] == ["alice", "bob"]


def test_late_penalty_and_manifest_facts_reach_every_export(tmp_path):
    late = {"due": "2026-12-01T00:00:00+00:00", "submitted_at": "2026-12-02T01:00:00+00:00",
            "time_source": "nbgrader timestamp.txt", "late": True, "units": 2, "per": "day",
            "fraction": 0.2, "basis": "score", "policy": "due ...; 10% per day", "note": "2 day(s) late"}
    r = sample()
    r.intake = {"submitted_at": late["submitted_at"], "time_source": late["time_source"], "late": late,
                "manifest": {"forced": True, "problems": ["cell 'fcn8s' is not answered"],
                             "run": {"budget": "cpu", "smoke": True, "dataset": "sample",
                                     "dataset_sha256": "ab" * 32, "kit_version": "0.1.0", "allowed": []}},
                "warnings": ["fcn_segmentation.ipynb is not UTF-8: it was read as cp1252 and graded."]}
    assert reports.late_penalty(r) == 0.9 and reports.final_score(r) == 3.6
    path = reports.write_student_outputs(r, tmp_path / "alice")
    d = json.loads(path.read_text())
    assert d["score"] == 3.6 and d["extra_data"]["late"]["penalty"] == 0.9
    assert "2 day(s) late" in d["output"] and "submit --force" in d["output"]
    html = (tmp_path / "alice" / "feedback.html").read_text()
    for text in ("2 day(s) late", "budget cpu", "smoke mode ON", "data set sample", "kit 0.1.0",
                 "submit --force", "cell &#39;fcn8s&#39; is not answered", "24-image sample",
                 "read as cp1252 and graded"):
        assert text in html, text
    rows = list(csv.DictReader(io.StringIO(reports.grades_csv([r]))))
    assert rows[0]["late_penalty"] == "0.9" and rows[0]["final"] == "3.6" and rows[0]["late"] == "2 day(s)"
    assert rows[0]["forced"] == "yes" and "submit: cell 'fcn8s' is not answered" in rows[0]["problems"]
    lines = reports.intake_summary([r, sample("bob")])
    assert "handed in with submit --force: 1 (alice)" in lines
    assert any(line.startswith("with problems") and ": 2 (" in line for line in lines)
    assert "penalised for lateness: 1 (alice)" in lines


def test_problems_cell_is_never_a_spreadsheet_formula():
    r = SubmissionResult("eve", "fcn_segmentation")
    r.intake = {"warnings": []}
    r.problems = ['=HYPERLINK("http://evil.example","x")']
    (row,) = csv.DictReader(io.StringIO(reports.grades_csv([r])))
    assert row["problems"] == "'" + r.problems[0]


def test_old_results_without_intake_still_render():
    r = sample()
    d = asdict(r)
    del d["intake"]
    back = SubmissionResult.from_json(json.dumps(d))
    assert back.intake == {} and "4.5 / 9" in reports.feedback_html(back, view="instructor")


ATTACKS = ["<script>alert('x')</script>", "<img src=x onerror=alert(1)>", "[click](javascript:alert(1))",
           "![pixel](http://tracker.example/p.png)", "$</span><script>alert(2)</script>$",
           r"$\text{<script>alert(3)</script>}$", r"$\href{javascript:alert(4)}{x}$", r"$$\style{color:red}{y}$$"]


def test_inline_answers_grouped_rendered_read_only_and_safe():
    bob = sample("bob", "**Bold** answer with $x^2$\n\n" + "\n\n".join(ATTACKS))
    html = reports.inline_answers_html([bob, sample("alice")])
    q1, q2 = html.index('id="q1_pretrained"'), html.index('id="q2_compare"')
    # every answer to q1 comes before q2's section, students in order
    a1, b1 = html.index("Because features transfer."), html.index("<strong>Bold</strong> answer")
    assert q1 < a1 < b1 < q2 < html.index("alice compares") < html.index("bob compares")
    assert "<strong>Question 1.</strong> Why?" in html  # the prompt's markdown is rendered
    assert "<msup><mi>x</mi><mn>2</mn></msup>" in html  # math rendered as MathML, no script needed
    assert '<math display="block">' in html and "<mi>y</mi>" in html
    assert "<script" not in html and "<img" not in html and "javascript:" not in html
    body = html[html.index("<body>"):]
    assert "href=" not in body.replace('href="#', "").replace('href="http://tracker', "")
    assert "style=" not in body
    assert "&lt;script&gt;alert(" in body and "onerror=alert(1)&gt;" in body
    assert render_markdown(r"$\left( x$") == '<p><code class="tex">\\left( x</code></p>\n'  # unreadable TeX
    assert 'href="http://tracker.example/p.png"' in body  # an image becomes a link: nothing is fetched
    # read-only: no form boxes, and it says where grades are saved
    assert "<textarea" not in html and "<input" not in html
    assert "Read-only report" in html and "formgrader" in html.lower()


def test_anonymised_inline_answers_use_stable_codes(tmp_path):
    results = [sample("bob"), sample("alice")]
    html = reports.inline_answers_html(results, salt="course-salt")
    code = reports.anonymous_code("alice", "course-salt")
    assert code == reports.anonymous_code("alice", "course-salt") != reports.anonymous_code("alice", "other")
    assert code in html and ">alice<" not in html and ">bob<" not in html and "anonymised" in html
    assert "alice compares" in html  # the answers themselves are unchanged
    for s in ("alice", "bob"):
        reports.write_student_outputs(sample(s), tmp_path / s)
    reports.write_class_reports(tmp_path, pdf=False)
    key = list(csv.DictReader(io.StringIO((tmp_path / "inline_answers_key.csv").read_text())))
    salt = (tmp_path / ".anon_salt").read_text().strip()
    assert {r["student"]: r["code"] for r in key} == {s: reports.anonymous_code(s, salt) for s in ("alice", "bob")}
    first = (tmp_path / "inline_answers_anonymous.html").read_text()
    reports.write_class_reports(tmp_path, pdf=False)  # a rerun keeps the codes
    assert (tmp_path / "inline_answers_anonymous.html").read_text() == first


def test_score_table_lists_parts_and_totals():
    table = reports.score_table([sample("alice")])
    header, _, row = table.splitlines()
    assert header.split() == ["student", "fcn32s", "transposed_conv_padding", "training", "total"]
    assert re.split(r"\s{2,}", row) == ["alice", "3/6", "1.5/3", "not run", "4.5/9"]


def test_class_reports_regenerated_atomically_and_pdf_skip_is_explained(tmp_path, monkeypatch):
    for s in ("alice", "bob"):
        reports.write_student_outputs(sample(s), tmp_path / s)
    monkeypatch.setattr(reports, "find_chromium", lambda: None)
    written = reports.write_class_reports(tmp_path)
    assert "Chromium is not installed" in written["inline_answers_pdf"]
    assert len((tmp_path / "grades.csv").read_text().splitlines()) == 3
    assert not list(tmp_path.glob(".*.tmp"))


@pytest.mark.skipif(reports.find_chromium() is None, reason="Chromium is not installed")
def test_pdf_with_chromium(tmp_path):
    reports.write_student_outputs(sample(), tmp_path / "alice")
    written = reports.write_class_reports(tmp_path)
    assert (tmp_path / "inline_answers.pdf").read_bytes()[:4] == b"%PDF", written


def test_unreadable_results_json_names_the_file(tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "results.json").write_text("{}")
    with pytest.raises(ValueError, match="x/results.json"):
        reports.load_all_results(tmp_path)

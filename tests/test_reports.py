"""Report contents: grades.csv, Gradescope results.json, feedback.html, inline_answers.html."""

from __future__ import annotations

import csv
import io
import json
import re

import pytest

from autograder import reports
from autograder.results import InlineAnswer, SubmissionResult, TestResult

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
    html = reports.feedback_html(sample())
    assert "bubblewrap (no network)" in html
    assert "check the crop offset" in html and "raised ValueError" in html
    assert "not run" in html and "fail (error)" in html and ">pass<" in html
    assert "4.5 / 9" in html
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "cell &#39;x&#39; was deleted" in html
    assert "def test_" not in html and "assert " not in html  # no hidden test code


def test_grades_csv_columns_and_rows():
    text = reports.grades_csv([sample("bob"), sample("alice")])
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == ["student", "fcn32s", "transposed_conv_padding", "training", "total", "max"]
    assert rows[1] == ["alice", "3", "1.5", "", "4.5", "9"]  # training did not run: empty
    assert [r[0] for r in rows[1:]] == ["alice", "bob"]


def test_inline_answers_grouped_by_question_escaped_with_rubric_boxes():
    html = reports.inline_answers_html([sample("bob", EVIL), sample("alice")])
    q1, q2 = html.index('id="q1_pretrained"'), html.index('id="q2_compare"')
    # every answer to q1 comes before q2's section, students in order
    a1, b1 = html.index("Because features transfer."), html.index("&lt;script&gt;alert")
    assert q1 < a1 < b1 < q2 < html.index("alice compares") < html.index("bob compares")
    assert "<script>" not in html and "<b>bold</b>" not in html
    assert html.count("<textarea") == 4 and html.count('type="number"') == 4


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

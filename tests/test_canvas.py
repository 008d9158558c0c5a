"""export-canvas: a Canvas gradebook CSV from results and a roster; nobody dropped silently."""

from __future__ import annotations

import csv
import io
import subprocess
import sys

import pytest

from autograder import canvas, reports
from autograder.job import failure_result
from autograder.results import SubmissionResult, TestResult

ROSTER = """\ufeffStudent,ID,SIS User ID,SIS Login ID,Section,Homework 1 (77)
    Points Possible,,,,,10
"Doe, Alice",101,S1,alice,Sec A,9
"Roe, Bob",102,S2,BOB,Sec B,
"Poe, Carol",103,S3,carol,Sec A,
"Student, Test",104,,,Sec A,
"""


def result(student: str, score: float) -> SubmissionResult:
    return SubmissionResult(student=student, assignment="fcn_segmentation", isolation="bubblewrap (test)", tests=[
        TestResult("test_a", "fcn32s", score, 5.0, "passed" if score == 5 else "failed"),
        TestResult("test_b", "fcn8s", 2.5, 2.5, "passed"),
        TestResult("test_fcn8s_miou_gpu", "training", 0.0, 4.0, "not_run", "not run: needs a GPU"),
    ])


@pytest.fixture
def graded(tmp_path):
    out = tmp_path / "graded"
    for r in (result("alice", 5.0), result("bob", 1.5), result("dave", 3.0)):
        reports.write_student_outputs(r, out / r.student)
    broken = failure_result("carol", "the grading process died (killed by signal 9)", result("x", 0).tests)
    reports.write_student_outputs(broken, out / "carol")
    (tmp_path / "roster.csv").write_text(ROSTER, encoding="utf-8")
    return out, tmp_path / "roster.csv"


def test_canvas_csv_rows_points_possible_and_problems(graded, tmp_path):
    out, roster = graded
    export, problems_path = canvas.export_canvas(out, roster, tmp_path / "canvas.csv", "FCN segmentation (555)")
    rows = list(csv.reader(io.StringIO((tmp_path / "canvas.csv").read_text())))
    assert rows[0] == ["Student", "ID", "SIS User ID", "SIS Login ID", "Section", "FCN segmentation (555)"]
    assert rows[1] == ["    Points Possible", "", "", "", "", "7.5"]  # the GPU test did not run: not counted
    body = {r[0]: r for r in rows[2:]}
    assert body["Doe, Alice"] == ["Doe, Alice", "101", "S1", "alice", "Sec A", "7.5"]
    assert body["Roe, Bob"][-1] == "4"  # ids match case-insensitively (BOB in the roster)
    assert body["Poe, Carol"][-1] == "0"
    assert body["Student, Test"][-1] == "" and len(rows) == 6 and export.matched == 3

    problems = {(p["problem"], p["student"]): p for p in csv.DictReader(problems_path.open())}
    assert set(problems) == {("not in the roster", "dave"), ("check by hand", "carol"), ("no id", "")}
    assert problems[("not in the roster", "dave")]["score"] == "5.5"
    assert "signal 9" in problems[("check by hand", "carol")]["detail"]


def test_roster_entry_without_submission_is_kept_and_listed(graded, tmp_path):
    out, roster = graded
    (out / "carol" / "results.json").unlink()
    export, _ = canvas.export_canvas(out, roster, tmp_path / "canvas.csv")
    rows = {r[0]: r for r in csv.reader(io.StringIO(export.csv_text))}
    assert rows["Poe, Carol"][-1] == ""
    assert ("no submission", "carol", "Poe, Carol", "") == export.problems[0][:4]


def test_roster_errors_name_the_file_and_the_fix(tmp_path):
    bad = tmp_path / "r.csv"
    bad.write_text("Name,Email\nx,y\n")
    with pytest.raises(canvas.RosterError, match=r"no 'Student' column.*--id-column"):
        canvas.read_roster(bad)
    bad.write_text("Student,SIS Login ID\nA,alice\nB,Alice\n")
    with pytest.raises(canvas.RosterError, match="'Alice' is on lines 2 and 3"):
        canvas.read_roster(bad)
    ok = canvas.read_roster(_write(tmp_path, "Student,Login\nA,a1\n"),
                            id_column="Login")
    assert ok == [canvas.RosterEntry(key="a1", student="A")]


def _write(tmp_path, text):
    p = tmp_path / "ok.csv"
    p.write_text(text)
    return p


def test_cli(graded, tmp_path, repo_root):
    out, roster = graded
    proc = subprocess.run([sys.executable, "-m", "autograder", "export-canvas", "--results", str(out),
                           "--roster", str(roster), "--out", str(tmp_path / "c.csv")],
                          cwd=repo_root, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "3 student(s) matched" in proc.stdout and "not in the roster: dave" in proc.stdout
    assert (tmp_path / "c_problems.csv").is_file()
    proc = subprocess.run([sys.executable, "-m", "autograder", "export-canvas", "--results", str(out),
                           "--roster", str(tmp_path / "none.csv"), "--out", str(tmp_path / "d.csv")],
                          cwd=repo_root, capture_output=True, text=True, check=False)
    assert proc.returncode == 2 and "none.csv" in proc.stderr


def test_canvas_cell_is_the_score_after_the_late_penalty(tmp_path):
    late = result("alice", 5.0)  # 7.5 points earned
    late.intake = {"late": {"late": True, "fraction": 0.2, "basis": "score"}}
    reports.write_student_outputs(late, tmp_path / "graded" / "alice")
    (tmp_path / "roster.csv").write_text(ROSTER, encoding="utf-8")
    canvas.export_canvas(tmp_path / "graded", tmp_path / "roster.csv", tmp_path / "canvas.csv", "HW")
    rows = {r[0]: r for r in csv.reader(io.StringIO((tmp_path / "canvas.csv").read_text()))}
    assert rows["Doe, Alice"][-1] == "6"  # 7.5 - 20 % of 7.5, as grades.csv's `final`

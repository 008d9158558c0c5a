"""The late policy (due date, extensions, penalty per day or hour, cap) and the grade command's
intake options (resubmissions, late policy, release state) end to end with a fake runner."""

from __future__ import annotations

import csv
import json
import zipfile

import pytest

from autograder import __main__ as cli
from autograder.policy import LatePolicy, PolicyError, load_extensions, load_policy, penalty_points
from autograder.results import SubmissionResult, TestResult

DUE = "2026-12-01T23:59:00+00:00"


def test_on_time_grace_and_started_days_with_a_cap():
    p = LatePolicy(due=DUE, per="day", penalty=0.1, cap=0.25, grace_minutes=5)
    assert p.assess("a", "2026-12-01T23:00:00Z")["fraction"] == 0
    assert p.assess("a", "2026-12-02T00:03:00Z")["late"] is False  # inside the 5-minute grace
    one = p.assess("a", "2026-12-02T00:05:00+00:00")
    assert (one["late"], one["units"], one["fraction"]) == (True, 1, 0.1)
    two = p.assess("a", "2026-12-03T00:00:00+00:00")  # 24 h 1 min late: the second day has started
    assert (two["units"], two["fraction"], two["late_by_hours"]) == (2, 0.2, 24.02)
    assert p.assess("a", "2026-12-20T00:00:00Z")["fraction"] == 0.25  # capped
    # a time with a zone is compared in UTC: 00:30+01:00 is 23:30 UTC, on time
    assert p.assess("a", "2026-12-02T00:30:00+01:00")["late"] is False


def test_per_hour_and_basis():
    p = LatePolicy(due=DUE, per="hour", penalty=0.05, cap=1.0, basis="max")
    v = p.assess("a", "2026-12-02T02:30:00Z")  # 2 h 31 min: 3 started hours
    assert (v["units"], v["fraction"]) == (3, 0.15)
    assert penalty_points(v, score=10.0, max_score=40.0) == 6.0  # 15 % of the points possible
    assert penalty_points(v, score=4.0, max_score=40.0) == 4.0  # never below zero
    assert penalty_points({**v, "basis": "score"}, score=10.0, max_score=40.0) == 1.5
    assert penalty_points(None, 10.0, 40.0) == 0.0


def test_unknown_time_and_no_due_date_never_penalise():
    p = LatePolicy(due=DUE, penalty=0.5)
    v = p.assess("a", None, lms_late=True)
    assert v["fraction"] == 0 and v["late"] is True and "time unknown" in v["note"]
    v = LatePolicy().assess("a", "2030-01-01T00:00:00Z", lms_late=True)
    assert v["fraction"] == 0 and v["late"] is True and "no due date" in v["note"]
    assert LatePolicy().assess("a", "2030-01-01T00:00:00Z")["late"] is False


def test_extensions_from_csv_and_toml(tmp_path):
    (tmp_path / "ext.csv").write_text("student,due,hours\nalice,2026-12-03T23:59:00Z,\nbob,,48\n")
    ext = load_extensions(tmp_path / "ext.csv", DUE)
    assert ext == {"alice": "2026-12-03T23:59:00+00:00", "bob": "2026-12-03T23:59:00+00:00"}
    (tmp_path / "policy.toml").write_text(
        f'due = "{DUE}"\nper = "day"\npenalty = 0.1\ncap = 0.5\n[extensions]\ncarol = 24\n')
    p = load_policy(tmp_path / "policy.toml", extensions=tmp_path / "ext.csv")
    at = "2026-12-02T12:00:00Z"  # half a day late for the class
    assert p.assess("dave", at)["fraction"] == 0.1
    for student in ("alice", "bob", "carol"):  # each has an extension covering it
        v = p.assess(student, at)
        assert v["late"] is False and v["extension"] is True, student
    assert p.assess("carol", "2026-12-03T00:00:01Z")["units"] == 1
    # asdict / from_dict round trip (one settings object per run)
    assert LatePolicy.from_dict(p.to_dict()) == p
    assert "1 extension" not in p.describe() and "3 extension(s)" in p.describe()


def test_bad_policies_have_clear_errors(tmp_path):
    with pytest.raises(PolicyError, match="fraction"):
        LatePolicy(due=DUE, penalty=10)
    with pytest.raises(PolicyError, match="per must be"):
        LatePolicy(per="week")
    with pytest.raises(PolicyError, match="ISO 8601"):
        LatePolicy(due="next friday-ish")
    with pytest.raises(PolicyError, match="unknown key"):
        LatePolicy.from_dict({"due": DUE, "penalty_per_day": 0.1})
    (tmp_path / "e.csv").write_text("student,hours\nbob,48\n")
    with pytest.raises(PolicyError, match="no due date"):
        load_extensions(tmp_path / "e.csv", None)
    (tmp_path / "e2.csv").write_text("student,hours\nbob,\n")
    with pytest.raises(PolicyError, match="line 2"):
        load_extensions(tmp_path / "e2.csv", DUE)


# ----------------------------------------------------------------------------- the grade command

def fake_runner(job) -> SubmissionResult:
    """Scores from the notebooks' text ('wrong' loses test_a)."""
    wrong = "wrong" in b"".join(job.notebooks.values()).decode()
    return SubmissionResult(job.student, "fcn_segmentation", isolation="fake runner", tests=[
        TestResult("test_a", "part_a", 0.0 if wrong else 3.0, 3.0, "failed" if wrong else "passed"),
        TestResult("test_b", "part_b", 2.0, 2.0, "passed")])


def runner_flags() -> list[str]:
    return ["--runner", "test_policy:fake_runner"]


def _nbgrader(root, student, when, text="x = 1"):
    folder = root / "submitted" / student / "fcn_segmentation"
    folder.mkdir(parents=True)
    nb = {"cells": [{"cell_type": "code", "execution_count": None, "id": "c1", "metadata": {},
                     "outputs": [], "source": text}], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    (folder / "fcn_segmentation.ipynb").write_text(json.dumps(nb))
    (folder / "timestamp.txt").write_text(when)


def test_grade_command_keeps_going_on_duplicates_and_applies_the_late_policy(tmp_path, capsys):
    _nbgrader(tmp_path / "c1", "alice", "2026-12-01 12:00:00 UTC", "wrong")
    _nbgrader(tmp_path / "c2", "alice", "2026-12-03 12:00:00 UTC")  # later, right, 2 days late
    _nbgrader(tmp_path / "c1", "bob", "2026-12-03 12:00:00 UTC")  # 2 days late, but has an extension
    _nbgrader(tmp_path / "c1", "carol", "2026-12-01 10:00:00 UTC")  # on time
    (tmp_path / "ext.csv").write_text("student,hours\nbob,72\n")
    # a zip handed in with submit --force, with the run facts of a smoke-mode run on the sample
    nb_text = (tmp_path / "c1" / "submitted" / "carol" / "fcn_segmentation" / "fcn_segmentation.ipynb").read_text()
    (tmp_path / "zips").mkdir()
    with zipfile.ZipFile(tmp_path / "zips" / "dave_fcn_segmentation.zip", "w") as zf:
        zf.writestr("fcn_segmentation.ipynb", nb_text)
        zf.writestr("manifest.json", json.dumps({
            "assignment": "fcn_segmentation", "student": "dave", "created": "2026-12-01T20:00:00Z",
            "forced": True, "problems": ["cell 'fcn8s' is not answered"],
            "run": {"budget": "smoke", "smoke": True, "dataset": "sample", "dataset_sha256": "0" * 64,
                    "kit_version": "0.1.0", "allowed": ["smoke", "sample"]}}))
    out = tmp_path / "out"
    code = cli.main(["grade", str(tmp_path / "c1"), str(tmp_path / "c2"), str(tmp_path / "zips"),
                     "--out", str(out), "--jobs", "2",
                     "--no-progress", "--no-pdf", *runner_flags(), "--due", DUE, "--late-penalty", "10%",
                     "--late-cap", "50%", "--extensions", str(tmp_path / "ext.csv")])
    text = capsys.readouterr().out
    assert code == 0
    assert "resubmitted: alice: graded" in text and "keep latest" in text
    assert "penalised for lateness: 1 (alice)" in text and "late: 1 (alice)" in text
    assert "handed in with submit --force: 1 (dave)" in text
    rows = {r["student"]: r for r in csv.DictReader((out / "grades.csv").open())}
    assert sorted(rows) == ["alice", "bob", "carol", "dave"]
    assert rows["dave"]["forced"] == "yes" and "submit: cell 'fcn8s' is not answered" in rows["dave"]["problems"]
    assert rows["dave"]["time_source"] == "manifest created (the student's clock)" and rows["dave"]["late"] == ""
    dave = (out / "dave" / "feedback.html").read_text()
    assert "smoke mode ON" in dave and "24-image sample" in dave and "allowed: smoke, sample" in dave
    # alice's later (right) hand-in was graded: 5 points, 2 days late: 20 % off
    assert (rows["alice"]["total"], rows["alice"]["late_penalty"], rows["alice"]["final"]) == ("5", "1", "4")
    assert rows["alice"]["late"] == "2 day(s)" and rows["alice"]["time_source"] == "nbgrader timestamp.txt"
    assert (rows["bob"]["late_penalty"], rows["bob"]["final"], rows["bob"]["late"]) == ("0", "5", "")
    assert rows["carol"]["late"] == "" and rows["carol"]["submitted_at"] == "2026-12-01T10:00:00+00:00"
    d = json.loads((out / "alice" / "results.json").read_text())
    assert d["score"] == 4 and d["extra_data"]["late"]["units"] == 2
    assert "2 day(s) late" in (out / "alice" / "feedback.html").read_text()
    assert "another hand-in" in (out / "alice" / "feedback_instructor.html").read_text()


def test_feedback_command_republishes(tmp_path, capsys):
    from autograder import reports

    r = SubmissionResult("alice", "fcn_segmentation", tests=[
        TestResult("t_vis", "p", 1.0, 1.0, "passed"),
        TestResult("t_pub", "p", 0.0, 1.0, "failed", "the secret hint", "after_published")])
    reports.write_student_outputs(r, tmp_path / "alice")
    assert "the secret hint" not in (tmp_path / "alice" / "feedback.html").read_text()
    assert cli.main(["feedback", "--results", str(tmp_path), "--published"]) == 0
    assert "the secret hint" in (tmp_path / "alice" / "feedback.html").read_text()
    assert "1 student(s)" in capsys.readouterr().out

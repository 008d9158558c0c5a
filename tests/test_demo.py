"""`python -m autograder demo` end to end: release, three students, real runner, every output."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import pytest

from autograder import reports
from autograder.assignment import get_assignment
from autograder.demo import demo_data_root
from autograder.rubric import load_rubric

FCN_RUBRIC = get_assignment("fcn_segmentation").rubric

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def demo(tmp_path_factory, repo_root):
    out = tmp_path_factory.mktemp("demo")
    proc = subprocess.run([sys.executable, "-m", "autograder", "demo", "--assignment", "fcn_segmentation",
                           "--out", str(out), "--no-progress"],
                          cwd=repo_root, capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    results = {}
    for student in ("reference", "partly_wrong", "broken"):
        results[student] = json.loads((out / "fcn_segmentation" / "graded" / student / "results.json").read_text())
    return out, proc.stdout, results


def by_name(result: dict) -> dict[str, dict]:
    return {t["name"]: t for t in result["tests"]}


def test_reference_gets_full_marks_on_every_test_that_ran(demo):
    _, _, results = demo
    tests = by_name(results["reference"])
    assert set(tests) == set(load_rubric(FCN_RUBRIC))
    ran = [t for t in tests.values() if t["extra_data"]["status"] != "not_run"]
    assert ran and all(t["score"] == t["max_score"] > 0 for t in ran), [t for t in ran if t["score"] < t["max_score"]]
    assert results["reference"]["score"] == sum(t["max_score"] for t in ran)
    assert "bubblewrap" in results["reference"]["extra_data"]["isolation"] or \
        "subprocess" in results["reference"]["extra_data"]["isolation"]


def test_partly_wrong_loses_exactly_what_its_bugs_deserve(demo):
    _, _, results = demo
    tests, ref = by_name(results["partly_wrong"]), by_name(results["reference"])
    lost = {n for n, t in tests.items() if t["score"] < ref[n]["score"]}
    # crop offset 18: right output size, wrong values; padding bug: wrong for odd k - s (at every
    # stride, and negative for kernels smaller than the stride) and no ValueError
    assert lost == {"test_fcn32s_same_weights", "test_transposed_conv_padding_stride2",
                    "test_transposed_conv_padding_other_strides",
                    "test_transposed_conv_padding_invalid"}, lost
    assert tests["test_fcn32s_output_size"]["score"] == ref["test_fcn32s_output_size"]["score"]
    assert 0 < tests["test_transposed_conv_padding_stride2"]["score"] < ref["test_transposed_conv_padding_stride2"]["max_score"]
    assert "kernel_size=3" in tests["test_transposed_conv_padding_stride2"]["output"]
    # FCN-8s and the soft IoU loss are the reference's: untouched
    assert all(tests[n]["score"] == ref[n]["score"] for n in tests if n.startswith(("test_fcn8s", "test_soft_iou")))


def test_broken_scores_zero_on_what_it_breaks_with_messages(demo):
    _, _, results = demo
    r = results["broken"]
    tests, ref = by_name(r), by_name(results["reference"])
    for name, t in tests.items():
        if name.startswith(("test_fcn8s", "test_soft_iou")) and t["extra_data"]["status"] != "not_run":
            assert t["score"] == 0, name
            assert ("SyntaxError" in t["output"]) if "fcn8s" in name else ("time limit" in t["output"])
        elif not name.startswith(("test_fcn8s", "test_soft_iou")):
            assert t["score"] == ref[name]["score"], name  # one broken cell does not sink the others
    assert any("time limit" in p for p in r["extra_data"]["problems"])


def test_outputs_and_printed_table(demo):
    out, stdout, results = demo
    rows = {row["student"]: row for row in csv.DictReader((out / "fcn_segmentation" / "graded" / "grades.csv").open())}
    assert set(rows) == {"reference", "partly_wrong", "broken"}
    for student, row in rows.items():
        assert row["total"] == reports.fmt(results[student]["score"])  # grades.csv: 2 decimals
    for student in rows:
        assert f"{student}  " in stdout
        html = (out / "fcn_segmentation" / "graded" / student / "feedback.html").read_text()
        assert "bubblewrap" in html or "subprocess" in html
    inline = (out / "fcn_segmentation" / "graded" / "inline_answers.html").read_text()
    assert "<script>alert" not in inline and "&lt;script&gt;alert" in inline
    for name in ("grades.csv", "inline_answers.html", "submissions", "fcn_segmentation_student.zip"):
        assert name in stdout
    assert (out / "fcn_segmentation" / "submissions" / "reference.zip").is_file()


def test_dask_executor_gives_the_same_grades_and_a_rerun_regrades_no_one(demo, repo_root):
    """The demo's zips graded again with ``--executor dask`` (a LocalCluster of 2 workers) and the
    demo's settings: the same grades.csv; then an unchanged rerun regrades nobody."""
    out, _, _ = demo
    zips = sorted(str(p) for p in (out / "fcn_segmentation" / "submissions").glob("*.zip"))
    cmd = [sys.executable, "-m", "autograder", "grade", *zips, "--out", str(out / "dask"), "--jobs", "2",
           "--executor", "dask", "--timeout", "30", "--data-root", str(demo_data_root()),
           "--no-progress", "--no-pdf"]
    proc = subprocess.run(cmd, cwd=repo_root, capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    local = (out / "fcn_segmentation" / "graded" / "grades.csv").read_text()
    assert (out / "dask" / "grades.csv").read_text() == local
    again = subprocess.run(cmd, cwd=repo_root, capture_output=True, text=True, timeout=300, check=False)
    assert again.returncode == 0 and "graded now: 0" in again.stdout and "skipped (up to date): 3" in again.stdout

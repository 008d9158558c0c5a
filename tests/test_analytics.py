"""Class analytics from synthetic results: the numbers, the page, the PNGs, the command."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from autograder import analytics, reports
from autograder.assignment import get_assignment
from autograder.job import failure_result
from autograder.results import SubmissionResult, TestResult
from autograder.rubric import load_rubric

FCN_RUBRIC = get_assignment("fcn_segmentation").rubric

N_STUDENTS = 30


def synthetic_class(n: int = N_STUDENTS) -> list[SubmissionResult]:
    """Student i has ability i / (n - 1). Test k of the rubric is passed when the ability is above
    its difficulty, except ``test_soft_iou_loss_limits`` which only the weakest third pass (an item
    that discriminates the wrong way) and ``test_fcn32s_layer_names`` which everyone passes."""
    rubric = list(load_rubric(FCN_RUBRIC).values())
    out = []
    for i in range(n):
        ability = i / (n - 1)
        tests = []
        for k, e in enumerate(rubric):
            if e.name.endswith("_gpu"):
                tests.append(TestResult(e.name, e.part, 0.0, e.points, "not_run", "not run: needs a GPU",
                                        e.visibility))
                continue
            if e.name == "test_fcn32s_layer_names":
                ok = True
            elif e.name == "test_soft_iou_loss_limits":
                ok = ability < 1 / 3
            else:
                ok = ability > (k % 7) / 8
            # odd tests share one message per part (grouped across tests), even ones have their own
            where = e.part if k % 2 else e.name
            msg = "" if ok else f"{e.message}\n{where}: kernel_size={3 + i % 3} gives {i} channels, not 12"
            if not ok and e.name == "test_fcn32s_output_size":
                msg = f"{e.message}\n<script>alert(1)</script> score_pool4 missing"
            tests.append(TestResult(e.name, e.part, e.points if ok else 0.0, e.points,
                                    "passed" if ok else "failed", msg, e.visibility))
        problems = ["cell 'soft_iou_loss' did not finish within the time limit (30 s)"] if i == 3 else []
        isolation = "subprocess (weaker: no filesystem or network isolation)" if i == 5 else "bubblewrap (test)"
        out.append(SubmissionResult(f"s{i:02d}", "fcn_segmentation", tests, isolation=isolation,
                                    problems=problems, wall_s=10.0 + i))
    crashed = failure_result("zz_crash", "the grading process died (killed by signal 9)", out[0].tests)
    crashed.wall_s = 2.0
    return [*out, crashed]


@pytest.fixture(scope="module")
def results_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("graded")
    for r in synthetic_class():
        reports.write_student_outputs(r, d / r.student)
    return d


def test_discrimination_formulas():
    r, d = analytics.discrimination([0, 0, 1, 1], [1, 2, 3, 4])
    assert r == pytest.approx(np.corrcoef([0, 0, 1, 1], [1, 2, 3, 4])[0, 1]) and r > 0.8
    assert d == 1.0  # top 27 % (1 of 4) all pass, bottom all fail
    r, d = analytics.discrimination([1, 1, 0, 0], [1, 2, 3, 4])
    assert r < -0.8 and d == -1.0
    assert analytics.discrimination([1, 1, 1], [1, 2, 3]) == (None, 0.0)  # everyone passed: no r
    assert analytics.discrimination([0, 1], [5, 5]) == (None, None)
    with pytest.raises(ValueError, match="differ in length"):
        analytics.discrimination([0, 1], [1])


def test_class_statistics(results_dir):
    s = analytics.class_statistics(reports.load_all_results(results_dir))
    assert s.n == N_STUDENTS + 1
    tests = {t.name: t for t in s.tests}
    assert s.not_run == ["test_fcn8s_miou_gpu"] and tests["test_fcn8s_miou_gpu"].n == 0
    everyone = tests["test_fcn32s_layer_names"]
    assert everyone.pass_rate == pytest.approx(N_STUDENTS / (N_STUDENTS + 1))  # the crash scored 0
    weak_only = tests["test_soft_iou_loss_limits"]
    assert weak_only.point_biserial < 0 and weak_only.upper_lower < 0 and weak_only.weak
    ordinary = tests["test_fcn32s_output_size"]  # difficulty 3/8
    assert ordinary.point_biserial > 0.5 and ordinary.upper_lower > 0.5 and not ordinary.weak
    assert 0 < ordinary.pass_rate < 1
    total = s.parts[0]
    assert total.name == "total" and len(total.scores) == N_STUDENTS + 1
    assert [p.name for p in s.parts[1:]] == ["fcn32s", "fcn8s", "transposed_conv_padding", "soft_iou_loss",
                                              "training"]  # training: the CPU test ran
    # failure messages: rubric sentence removed, numbers folded into one group, students counted once
    assert len(s.failures) == analytics.TOP_FAILURES
    top = s.failures[0]
    assert ": kernel_size=" in top.text and not top.text.startswith(load_rubric(FCN_RUBRIC)[top.tests[0]].message)
    assert len(top.students) > 10 and len(top.tests) > 1
    assert all(len(a.students) >= len(b.students) for a, b in zip(s.failures, s.failures[1:]))
    assert not any("zz_crash" in f.students for f in s.failures)  # its zeros are an incident instead
    kinds = {(i.student, i.kind) for i in s.incidents}
    assert kinds == {("s03", "timeout"), ("zz_crash", "grading failed")}
    assert s.isolation["subprocess (weaker: no filesystem or network isolation)"] == 1
    assert s.wall_s["max"] == 10.0 + N_STUDENTS - 1 and s.wall_s["median"] == pytest.approx(24.0)



def test_a_part_that_never_ran_is_left_out_of_the_figures():
    results = synthetic_class(4)
    for r in results:
        for t in r.tests:
            if t.part == "training":
                t.status, t.score = "not_run", 0.0
    s = analytics.class_statistics(results)
    assert "training" not in [p.name for p in s.parts]
    assert set(s.not_run) == {"test_fcn8s_miou_gpu", "test_fcn8s_miou_cpu"}

def test_page_and_pngs(results_dir, repo_root):
    proc = subprocess.run([sys.executable, "-m", "autograder", "analytics", "--results", str(results_dir)],
                          cwd=repo_root, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    html = (results_dir / "analytics.html").read_text()
    for png in (analytics.PARTS_PNG, analytics.TESTS_PNG, analytics.TIME_PNG):
        assert (results_dir / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f'src="{png}"' in html
    assert "<script>alert" not in html and "&lt;script&gt;alert(1)" in html
    assert "test_soft_iou_loss_limits" in html and "zz_crash" in html and "killed by signal 9" in html
    assert "n/a" in html  # the GPU test's discrimination

    empty = results_dir.parent / "empty_results"
    empty.mkdir()
    assert analytics.analytics_step(empty)["analytics"].endswith("analytics.html")
    assert "No graded submissions" in (empty / "analytics.html").read_text()
    assert analytics.analytics_step(empty / "missing")["analytics"].startswith("analytics skipped")
    proc = subprocess.run([sys.executable, "-m", "autograder", "analytics", "--results", str(empty / "missing")],
                          cwd=repo_root, capture_output=True, text=True, check=False)
    assert proc.returncode == 2 and "no such results folder" in proc.stderr


def test_grade_writes_the_analytics_page(tmp_path):
    from test_grade import make_students, options  # its fake runner: no sandbox, fast

    from autograder.grade import grade_all
    from autograder.submissions import find_submissions

    subs = find_submissions([make_students(tmp_path / "in", {"alice": "good", "bob": "wrong"})], tmp_path / "work")
    summary = grade_all(subs, options(tmp_path / "out", jobs=1), log=lambda *a: None)
    assert summary.outputs["analytics"] == str(tmp_path / "out" / analytics.ANALYTICS_HTML)
    parts = [p.name for p in analytics.class_statistics(summary.results).parts]
    assert parts == ["total", "part_a", "part_b"]
    html = (tmp_path / "out" / analytics.ANALYTICS_HTML).read_text()
    assert "FCN-32s must return logits" in html  # bob's failure message (the fake runner's)
    assert "2 graded submissions" in html

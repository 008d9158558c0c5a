"""export-gradebook writes our scores into a real nbgrader gradebook built by the release step."""

from __future__ import annotations

import pytest

from autograder import gradebook, reports
from autograder.assignment import get_assignment
from autograder.results import InlineAnswer, SubmissionResult, TestResult


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    from autograder import release

    course = tmp_path_factory.mktemp("course")
    fcn = get_assignment("fcn_segmentation")
    release.make_course(course, fcn)
    release.generate_assignment(course, fcn)  # nbgrader generate_assignment: assignment, notebooks, grade cells
    return course


def result(student: str, fcn32s: float) -> SubmissionResult:
    return SubmissionResult(
        student=student, assignment="fcn_segmentation", isolation="bubblewrap (test)",
        tests=[
            TestResult("test_fcn32s_layers", "fcn32s", fcn32s, 3.0, "passed" if fcn32s == 3 else "failed",
                       "" if fcn32s == 3 else "Some layers of FCN-32s have the wrong type."),
            TestResult("test_fcn32s_output_size", "fcn32s", 2.0, 2.0, "passed"),
            TestResult("test_padding_values", "transposed_conv_padding", 1.0, 5.0, "failed", "check k=5"),
            TestResult("test_miou_gpu", "training", 0.0, 6.0, "not_run", "needs a GPU"),
        ],
        inline_answers=[InlineAnswer("q1_pretrained", "Why?", "because", 2.0)],
    )


# nbgrader's own add_submission triggers SQLAlchemy autoflush warnings; not ours to fix.
@pytest.mark.filterwarnings("ignore:Object of type:Warning")
def test_round_trip_into_nbgrader_gradebook(tmp_path, course, recwarn):
    from nbgrader.api import Gradebook

    out = tmp_path / "out"
    for r in (result("alice", 3.0), result("bob", 1.5)):
        reports.write_student_outputs(r, out / r.student)
        (out / r.student / "submission").mkdir()
        (out / r.student / "submission" / "fcn_segmentation.ipynb").write_text("{}")
    notes = []
    assert gradebook.export_gradebook(out, course, log=notes.append) == 2
    assert any("training" in n for n in notes)  # no check_training cell: said, not dropped silently
    # a second export updates in place (no duplicate submissions)
    reports.write_student_outputs(result("bob", 0.0), out / "bob")
    assert gradebook.export_gradebook(out, course, log=notes.append) == 2
    # nbgrader's SQLAlchemy "not in session" warnings are not shown to the TA (the rows below are written)
    assert not [w for w in recwarn if "not in session" in str(w.message)]

    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        assert sorted(s.id for s in gb.students) == ["alice", "bob"]
        assert len(gb.find_assignment("fcn_segmentation").submissions) == 2
        g = gb.find_grade("check_fcn32s", "fcn_segmentation", "fcn_segmentation", "alice")
        # max_score: the rubric's fcn32s total (= check_fcn32s's points), not the 5 of the tests that ran
        assert (g.auto_score, g.max_score, g.needs_manual_grade) == (5.0, 11.0, False)
        g = gb.find_grade("check_fcn32s", "fcn_segmentation", "fcn_segmentation", "bob")
        assert g.auto_score == 2.0
        g = gb.find_grade("check_transposed_conv_padding", "upsampling_and_iou", "fcn_segmentation", "bob")
        assert (g.auto_score, g.max_score) == (1.0, 5.0)
        c = gb.find_comment("fcn32s", "fcn_segmentation", "fcn_segmentation", "bob")
        assert "wrong type" in c.auto_comment and "bubblewrap" in c.auto_comment
        # the manual inline-answer cells are left for formgrader
        q = gb.find_grade("q1_pretrained", "fcn_segmentation", "fcn_segmentation", "alice")
        assert q.auto_score is None and q.manual_score is None
        assert gb.find_submission("fcn_segmentation", "alice").needs_manual_grade
    assert (course / "autograded" / "alice" / "fcn_segmentation" / "fcn_segmentation.ipynb").is_file()


def test_missing_gradebook_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="autograder release"):
        gradebook.export_gradebook(tmp_path, tmp_path)


SECRET = "Check the crop offset (19 for FCN-32s)"


def late_result(student: str) -> SubmissionResult:
    r = result(student, 3.0)
    r.tests.insert(1, TestResult("test_fcn32s_same_weights", "fcn32s", 1.0, 3.0, "failed", SECRET,
                                 "after_published"))
    r.intake = {"submitted_at": "2026-12-02T10:00:00+00:00", "time_source": "nbgrader timestamp.txt",
                "late": {"late": True, "fraction": 0.5, "basis": "score", "units": 2, "per": "day"}}
    return r


@pytest.mark.filterwarnings("ignore:Object of type:Warning")
def test_gradebook_comments_follow_visibility_and_late_penalty_is_exported(tmp_path, course):
    import datetime

    from nbgrader.api import Gradebook

    out = tmp_path / "out"
    r = late_result("carol")
    reports.write_student_outputs(r, out / "carol")
    gradebook.export_gradebook(out, course, copy_notebooks=False, log=lambda _: None)
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        c = gb.find_comment("fcn32s", "fcn_segmentation", "fcn_segmentation", "carol").auto_comment
        assert SECRET not in c and "test_fcn32s_same_weights" not in c
        assert "1 more test(s) worth 3 point(s): shown when grades are published" in c
        sub = gb.find_submission("fcn_segmentation", "carol")
        assert sub.timestamp == datetime.datetime(2026, 12, 2, 10, 0)
        # half of the points earned, split over the notebooks: the sum is the whole penalty
        assert sub.late_submission_penalty == pytest.approx(reports.late_penalty(r)) and reports.late_penalty(r) > 0
    gradebook.export_gradebook(out, course, copy_notebooks=False, log=lambda _: None, published=True)
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        c = gb.find_comment("fcn32s", "fcn_segmentation", "fcn_segmentation", "carol").auto_comment
        assert SECRET in c

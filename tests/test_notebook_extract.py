"""Reading submissions, integrity checks against the source, inline answers."""

import copy

import pytest

from autograder.notebook import (
    NotebookError,
    cells_by_grade_id,
    check_integrity,
    inline_answers,
    read_notebook,
)

SRC = "notebooks/fcn_segmentation/fcn_segmentation.ipynb"


@pytest.fixture
def source(repo_root):
    return read_notebook(repo_root / SRC)


def test_bad_files_give_student_messages(tmp_path):
    (tmp_path / "a.ipynb").write_text("{not json")
    with pytest.raises(NotebookError, match="not valid JSON"):
        read_notebook(tmp_path / "a.ipynb")
    (tmp_path / "b.ipynb").write_text('{"hello": 1}')
    with pytest.raises(NotebookError, match="not a Jupyter notebook"):
        read_notebook(tmp_path / "b.ipynb")
    with pytest.raises(NotebookError, match="missing"):
        read_notebook(tmp_path / "c.ipynb")


def test_binary_junk_is_still_not_valid_json(tmp_path):
    # with the encoding fallback, bytes that are not UTF-8 stay a clear "not valid JSON" message
    (tmp_path / "d.ipynb").write_bytes(b"\x89PNG\r\n\x1a\n\x00\xff")
    with pytest.raises(Exception, match="d.ipynb is not valid JSON.*save it again") as info:
        read_notebook(tmp_path / "d.ipynb")
    assert type(info.value).__module__ == "autograder.notebook"  # the notebook module's own error


def test_latin1_notebook_is_read(tmp_path, source):
    import nbformat

    for enc, answer in (("latin-1", "Les caract\u00e9ristiques na\u00efves"),
                        ("cp1252", "Les caract\u00e9ristiques \u2014 na\u00efves")):
        nb = copy.deepcopy(source)
        cells_by_grade_id(nb)["q1_pretrained"].source = answer
        # other cells' non-latin letters (e.g. Tyleček) become '?', as such an editor would save them
        (tmp_path / "n.ipynb").write_bytes(nbformat.writes(nb).encode(enc, errors="replace"))
        with pytest.raises(UnicodeDecodeError):
            (tmp_path / "n.ipynb").read_text(encoding="utf-8")
        got = cells_by_grade_id(read_notebook(tmp_path / "n.ipynb"))["q1_pretrained"].source
        assert got == answer, enc


def test_unchanged_notebook_has_no_problems(source):
    assert check_integrity(copy.deepcopy(source), source) == []
    assert {"fcn_imports", "fcn32s", "check_fcn32s", "q1_pretrained"} <= set(cells_by_grade_id(source))


def test_deleted_renamed_and_edited_cells_are_reported(source):
    sub = copy.deepcopy(source)
    cells = cells_by_grade_id(sub)
    sub.cells.remove(cells["fcn8s"])
    cells["fcn32s"].metadata.nbgrader["grade_id"] = "my_fcn"
    cells["check_fcn32s"].source = "pass  # tests removed"
    cells["fcn_imports"].source += "\nimport os"
    problems = "\n".join(check_integrity(sub, source))
    assert "'fcn8s' is missing" in problems
    assert "'fcn32s' is missing" in problems
    assert "locked cell 'check_fcn32s' was edited" in problems
    assert "locked cell 'fcn_imports' was edited" in problems


def test_answer_cells_may_change(source):
    sub = copy.deepcopy(source)
    cells_by_grade_id(sub)["fcn32s"].source = "class FCN32s: pass"
    assert check_integrity(sub, source) == []


def test_inline_answers_take_question_and_points_from_source(source):
    sub = copy.deepcopy(source)
    cells = cells_by_grade_id(sub)
    cells["q1_pretrained"].source = "Because features transfer."
    cells["q1_pretrained"].metadata.nbgrader["points"] = 100  # the student cannot change points
    sub.cells.remove(cells["q2_fcn32s_vs_fcn8s"])
    answers = inline_answers(sub, source)
    assert [a.grade_id for a in answers][:2] == ["q1_pretrained", "q2_fcn32s_vs_fcn8s"]
    assert answers[0].answer == "Because features transfer."
    assert answers[0].question.startswith("**Question 1.**")
    assert answers[0].points == 2.0
    assert answers[1].answer == ""
    assert len(answers) == 5

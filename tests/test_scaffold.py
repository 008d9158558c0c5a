"""``python -m autograder new NAME``: the scaffold releases, the reference gets full marks and a wrong
answer loses the points (everything under tmp_path: the repository gets no file)."""

from __future__ import annotations

import nbformat
import pytest

from autograder.__main__ import main as cli
from autograder.assignment import get_assignment
from autograder.bundle import Bundle
from autograder.job import GradeJob, grade_job
from autograder.notebook import cells_by_grade_id
from autograder.settings import GradingSettings


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    from autograder.release import release

    root = tmp_path_factory.mktemp("scaffold")
    assert cli(["new", "toy", "--assignments-root", str(root / "assignments"),
                "--notebooks-root", str(root / "notebooks")]) == 0
    spec = get_assignment("toy", root / "assignments", root / "notebooks")
    return root, spec, release(root / "build", spec)


def _submission(paths, answer: str) -> dict[str, bytes]:
    """The release notebook with ``answer`` in the answer cell."""
    nb = nbformat.read(paths.release / "toy.ipynb", as_version=4)
    cells_by_grade_id(nb)["square"].source = answer
    return {"toy.ipynb": nbformat.writes(nb).encode()}


def test_scaffold_releases_with_the_rubric_points(toy):
    root, spec, paths = toy
    assert spec.answer_cells == {"square": ("square",)} and spec.locked_cells == ("toy_imports",)
    released = cells_by_grade_id(nbformat.read(paths.release / "toy.ipynb", as_version=4))
    assert released["check_square"].metadata["nbgrader"]["points"] == 2  # from rubric.toml, not the 0 written
    assert "raise NotImplementedError" in released["square"].source
    assert "return x * x" not in (paths.bundle / "toy.ipynb").read_text()  # the solution line
    assert paths.zip.is_file() and (paths.course / "source" / "toy" / "toy.ipynb").is_file()
    assert cli(["new", "toy", "--assignments-root", str(root / "assignments"),
                "--notebooks-root", str(root / "notebooks")]) == 2  # never overwrites
    assert cli(["new", "Bad-Name", "--assignments-root", str(root / "assignments")]) == 2


def test_reference_gets_full_marks_and_a_wrong_answer_loses_the_points(toy, tmp_path):
    _, spec, paths = toy
    settings = GradingSettings(request_timeout=60, scratch_root=str(tmp_path / "scratch"))
    bundle = Bundle.of(spec)
    reference = "def square(x):\n    return x * x\n"
    ok = grade_job(GradeJob("ref", _submission(paths, reference), settings, bundle))
    assert ok.assignment == "toy" and not ok.infrastructure_error, ok.problems
    assert [(t.name, t.part, t.score, t.max_score) for t in ok.tests] == [
        ("test_square_values", "square", 2.0, 2.0)]
    wrong = grade_job(GradeJob("wrong", _submission(paths, "def square(x):\n    return x + x\n"),
                               settings, bundle))
    (t,) = wrong.tests
    assert t.status == "failed" and 0 < t.score < 2 and "square(3) gave 6" in t.output

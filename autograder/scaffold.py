"""``python -m autograder new NAME``: scaffold a new assignment package.

Writes ``notebooks/NAME/NAME.ipynb`` (an nbgrader source notebook: a locked import cell, one stubbed
function ``square`` with its solution between ``### BEGIN SOLUTION`` / ``### END SOLUTION`` and its
visible check cell) and ``autograder/assignments/NAME/`` (``__init__.py``, ``assignment.toml``,
``rubric.toml`` with one entry, ``hidden_tests/test_square.py`` with one hidden test). Every part
follows the layout described in :mod:`autograder.assignment`; replace the example with your own
exercises, keeping the three in step (an answer cell in the notebook and ``assignment.toml``, a
check cell right after it, hidden tests whose rubric ``part`` is its grade_id). ``release`` then
sets the check cell's points from the rubric (:mod:`autograder.points`).
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import nbformat

from autograder.assignment import ASSIGNMENTS_DIR, NOTEBOOKS_DIR

#: An assignment name: a Python identifier (it names a package), lower case.
NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")

ANSWER = '''def square(x):
    """Return ``x * x``: a number's square, or a tensor's squared elements (same shape)."""
    ### BEGIN SOLUTION
    return x * x
    ### END SOLUTION
'''

CHECK = '''assert square(3) == 9, "square(3) should be 9: multiply x by itself"
assert torch.equal(square(torch.tensor([-2.0, 0.5])), torch.tensor([4.0, 0.25])), \\
    "square must work elementwise on tensors (no Python loop needed: x * x)"
print("✓ square works on numbers and tensors")
'''

HIDDEN_TEST = '''"""Hidden tests of ``square`` (answer cell ``square``); generic fixtures from autograder.hidden_plugin."""

from __future__ import annotations

import torch

CASES = (3, -2.5, 0, torch.arange(-3.0, 4.0), torch.tensor([[1.5, -0.5]]))


def _same(got, want) -> bool:
    if isinstance(want, torch.Tensor):
        return isinstance(got, torch.Tensor) and got.shape == want.shape and torch.allclose(got, want)
    return got == want


def test_square_values(submission, reference, partial):
    submission.require("square")
    wrong = []
    for x in CASES:
        got = submission.invoke("square", x)["value"]
        if not _same(got, reference.square(x)):
            wrong.append(f"square({x!r}) gave {got!r}")
    partial(1 - len(wrong) / len(CASES))
    assert not wrong, f"{len(wrong)} of {len(CASES)} inputs wrong: " + "; ".join(wrong[:2])
'''


def _toml(name: str) -> str:
    return f'''# The assignment {name!r} (scaffolded by `python -m autograder new`; see autograder/assignment.py).
name = "{name}"
title = "{name.replace("_", " ").capitalize()}"

[[notebooks]]
file = "{name}.ipynb"
locked = ["{name}_imports"]                  # cells the worker runs from the SOURCE, never the student's
[notebooks.answers]                          # grade_id -> names the cell must define (in order)
square = ["square"]
'''


def _rubric() -> str:
    return '''# [tests.<hidden test function>]: part = the grade_id of the answer cell it tests; points; visibility
# (Gradescope: visible, hidden, after_due_date, after_published); partial = the test may award a fraction
# of its points; message = shown when the test does not pass, before the test's own output.

[tests.test_square_values]
part = "square"
points = 2
visibility = "visible"
partial = true
message = "square(x) must return x * x for numbers and, elementwise, for tensors of any shape."
'''


def _cell(kind: str, source: str, grade_id: str, *, grade=False, solution=False, locked=False, points=None):
    make = nbformat.v4.new_code_cell if kind == "code" else nbformat.v4.new_markdown_cell
    meta = {"grade": grade, "grade_id": grade_id, "locked": locked, "schema_version": 3,
            "solution": solution, "task": False}
    if points is not None:
        meta["points"] = points
    return make(source, metadata={"nbgrader": meta})


def notebook(name: str) -> nbformat.NotebookNode:
    """The scaffold's source notebook."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"display_name": "Python 3", "language": "python", "name": "python3"}
    nb.metadata["language_info"] = {"name": "python"}
    nb.cells = [
        nbformat.v4.new_markdown_cell(f"# {name.replace('_', ' ').capitalize()}\n\nFill in each "
                                      "`raise NotImplementedError(...)`, then run the check cell below it."),
        _cell("code", "import torch\n", f"{name}_imports", locked=True),
        nbformat.v4.new_markdown_cell("## Exercise 1: `square`\n\nWrite `square(x)`: the square of a "
                                      "number, or of each element of a tensor."),
        _cell("code", ANSWER, "square", solution=True),
        _cell("code", CHECK, "check_square", grade=True, locked=True, points=0),
    ]
    return nb


def scaffold(name: str, assignments_root: str | Path | None = None,
             notebooks_root: str | Path | None = None) -> list[Path]:
    """Write the scaffold of assignment ``name``; returns the files written.

    Args:
        assignments_root: where the package goes (default ``autograder/assignments``).
        notebooks_root: where ``NAME/NAME.ipynb`` goes (default ``notebooks``).

    Raises:
        ValueError: ``name`` is not a lower-case identifier, or the assignment exists already.
    """
    if not NAME_RE.match(name):
        raise ValueError(f"assignment name {name!r}: use lower case letters, digits and _ (it names a "
                         "Python package), starting with a letter")
    pkg = Path(assignments_root or ASSIGNMENTS_DIR) / name
    nb_dir = Path(notebooks_root or NOTEBOOKS_DIR) / name
    for path in (pkg, nb_dir):
        if path.exists():
            raise ValueError(f"{path} exists already: choose another name or remove it")
    files = {pkg / "__init__.py": "", pkg / "assignment.toml": _toml(name),
             pkg / "rubric.toml": _rubric(),
             pkg / "hidden_tests" / "__init__.py":
                 '"""Hidden tests: run by the trusted grader only, never shipped to students."""\n',
             pkg / "hidden_tests" / "test_square.py": HIDDEN_TEST}
    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    nb_dir.mkdir(parents=True)
    nbformat.write(notebook(name), nb_dir / f"{name}.ipynb")
    return [*files, nb_dir / f"{name}.ipynb"]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m autograder new", description=__doc__.split("\n\n")[0])
    p.add_argument("name", help="the assignment's name (lower case, digits, _)")
    p.add_argument("--assignments-root", default=None, help="default: autograder/assignments")
    p.add_argument("--notebooks-root", default=None, help="default: notebooks")
    args = p.parse_args(argv)
    try:
        files = scaffold(args.name, args.assignments_root, args.notebooks_root)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for f in files:
        print(f"wrote {f}")
    print(f"next: edit them, then `python -m autograder release --assignment {args.name}`")
    return 0


if __name__ == "__main__":
    sys.exit(main())

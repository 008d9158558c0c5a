"""Assignments as packages: what the grader knows about one assignment, read from ONE place.

An assignment ``NAME`` is two folders:

- ``notebooks/NAME/*.ipynb``: the nbgrader SOURCE notebooks (solutions between ``### BEGIN
  SOLUTION`` / ``### END SOLUTION``, check cells with ``points``, locked import cells);
- ``autograder/assignments/NAME/`` (a package): ``assignment.toml`` (its name, title, notebooks,
  locked cells and answer cells), ``rubric.toml``, ``hidden_tests/`` and, where it grades trained
  models, ``recipes.toml`` (how they train) and ``thresholds.json`` (what they must reach).

A folder under ``autograder/assignments/`` without ``assignment.toml`` is not an assignment yet
(one being written): :func:`assignment_names` skips it, nothing crashes on it.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent
REPO = PACKAGE.parent
#: Where the assignment packages live.
ASSIGNMENTS_DIR = PACKAGE / "assignments"
#: Where the assignments' source notebooks live (``<NOTEBOOKS_DIR>/<name>/``).
NOTEBOOKS_DIR = REPO / "notebooks"
TOML = "assignment.toml"
#: The file of an assignment's training recipes (:func:`autograder.recipes.load_recipes`).
RECIPES = "recipes.toml"


class AssignmentError(ValueError):
    """An unknown assignment, an ``assignment.toml`` that does not parse or lacks a field, or
    submitted notebooks that do not name one assignment."""


@dataclass(frozen=True)
class NotebookSpec:
    """One source notebook of an assignment.

    Attributes:
        file: the notebook's file name, e.g. ``"fcn_segmentation.ipynb"``.
        locked: grade_ids of the cells the worker runs from the SOURCE notebook, never the student's.
        answers: ``((grade_id, (names the cell must define, ...)), ...)`` in notebook order.
    """

    file: str
    locked: tuple[str, ...]
    answers: tuple[tuple[str, tuple[str, ...]], ...]

    @property
    def stem(self) -> str:
        return Path(self.file).stem


@dataclass(frozen=True)
class Assignment:
    """One assignment package (see the module docstring); built by :meth:`load`.

    Attributes:
        name: the nbgrader assignment name (the folder names).
        title: a human title.
        notebooks: its notebooks, in ``assignment.toml`` order.
        folder: ``autograder/assignments/<name>`` (or a copy of it).
        source_dir: the folder of its source notebooks.
    """

    name: str
    title: str
    notebooks: tuple[NotebookSpec, ...]
    folder: str
    source_dir: str

    @classmethod
    def load(cls, toml_path: str | os.PathLike, source_dir: str | os.PathLike | None = None) -> Assignment:
        """Read ``assignment.toml``; ``source_dir`` defaults to ``notebooks/<name>`` of this repository.

        Raises:
            AssignmentError: the file is missing, does not parse, or lacks ``name`` or ``notebooks``.
        """
        path = Path(toml_path)
        try:
            doc = tomllib.loads(path.read_text())
        except (OSError, tomllib.TOMLDecodeError) as err:
            raise AssignmentError(f"cannot read {path}: {err}") from err
        try:
            name = doc["name"]
            nbs = tuple(NotebookSpec(
                file=nb["file"], locked=tuple(nb.get("locked", ())),
                answers=tuple((gid, tuple([names] if isinstance(names, str) else names))
                              for gid, names in nb.get("answers", {}).items()))
                for nb in doc["notebooks"])
        except (KeyError, TypeError) as err:
            raise AssignmentError(f"{path}: missing or malformed field {err} (see autograder/assignment.py)") from err
        src = Path(source_dir) if source_dir is not None else NOTEBOOKS_DIR / name
        return cls(name=name, title=doc.get("title", name), notebooks=nbs,
                   folder=str(path.resolve().parent), source_dir=str(src.resolve()))

    # ------------------------------------------------------------------ the cells the grader runs

    @property
    def notebook_files(self) -> tuple[str, ...]:
        return tuple(nb.file for nb in self.notebooks)

    @property
    def reference_cells(self) -> dict[str, tuple[str, ...]]:
        """``{notebook file: grade_ids executed, in order}``: locked cells first, then answer cells."""
        return {nb.file: nb.locked + tuple(g for g, _ in nb.answers) for nb in self.notebooks}

    @property
    def locked_cells(self) -> tuple[str, ...]:
        return tuple(g for nb in self.notebooks for g in nb.locked)

    @property
    def answer_cells(self) -> dict[str, tuple[str, ...]]:
        """``{grade_id: names the cell must define}`` over every notebook."""
        return {g: names for nb in self.notebooks for g, names in nb.answers}

    @property
    def cell_notebook(self) -> dict[str, str]:
        """``{grade_id: notebook file}`` for every locked and answer cell."""
        return {g: nb for nb, gids in self.reference_cells.items() for g in gids}

    # ------------------------------------------------------------------ the package's files

    @property
    def toml(self) -> Path:
        return Path(self.folder) / TOML

    @property
    def hidden_tests(self) -> Path:
        return Path(self.folder) / "hidden_tests"

    @property
    def rubric(self) -> Path:
        return Path(self.folder) / "rubric.toml"

    @property
    def recipes(self) -> Path:
        """``recipes.toml`` (present only where the assignment grades trained models)."""
        return Path(self.folder) / RECIPES

    @property
    def thresholds(self) -> Path:
        """``thresholds.json`` (present only where the assignment grades trained models)."""
        return Path(self.folder) / "thresholds.json"


def assignment_names(root: str | os.PathLike | None = None) -> list[str]:
    """Names of the assignment folders under ``root`` (default :data:`ASSIGNMENTS_DIR`) that hold an
    ``assignment.toml``, sorted; a folder without one (being written) is skipped."""
    base = Path(root) if root is not None else ASSIGNMENTS_DIR
    return sorted(p.parent.name for p in base.glob(f"*/{TOML}"))


def get_assignment(name: str, root: str | os.PathLike | None = None,
                   notebooks_root: str | os.PathLike | None = None) -> Assignment:
    """The assignment ``name`` (``<root>/<name>/assignment.toml``, notebooks in
    ``<notebooks_root>/<name>``).

    Raises:
        AssignmentError: no such assignment (the message lists the known ones).
    """
    base = Path(root) if root is not None else ASSIGNMENTS_DIR
    toml = base / name / TOML
    if not toml.is_file():
        raise AssignmentError(f"unknown assignment {name!r}: no {toml}; known: "
                              f"{', '.join(assignment_names(base)) or 'none'}")
    nb_root = Path(notebooks_root) if notebooks_root is not None else NOTEBOOKS_DIR
    return Assignment.load(toml, nb_root / name)


def all_assignments(root: str | os.PathLike | None = None,
                    notebooks_root: str | os.PathLike | None = None) -> list[Assignment]:
    """Every assignment under ``root`` (see :func:`assignment_names`)."""
    return [get_assignment(n, root, notebooks_root) for n in assignment_names(root)]


def infer_assignment(notebook_names: Iterable[str], root: str | os.PathLike | None = None) -> str:
    """The one assignment whose notebooks the submitted ``notebook_names`` are (file names or
    stems; LMS suffixes already removed).

    Raises:
        AssignmentError: the names match no assignment, or more than one (pass ``--assignment``).
    """
    stems = {Path(n).name.removesuffix(".ipynb") for n in notebook_names}
    hits = [a.name for a in all_assignments(root)
            if stems & {nb.stem for nb in a.notebooks}]
    if len(hits) == 1:
        return hits[0]
    if not hits:
        raise AssignmentError(f"the submitted notebooks ({', '.join(sorted(stems)) or 'none'}) belong to "
                              f"no assignment ({', '.join(assignment_names(root))}): pass --assignment")
    raise AssignmentError(f"the submitted notebooks belong to several assignments ({', '.join(hits)}): "
                          "pass --assignment NAME")

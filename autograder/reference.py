"""The trusted reference implementation, built from the SOURCE notebooks (one source of truth).

The solutions live only in ``notebooks/<assignment>/*.ipynb`` between ``### BEGIN SOLUTION`` /
``### END SOLUTION`` comment markers, so the source cells run as they are. Which cells, is the
assignment's ``assignment.toml`` (:class:`autograder.assignment.Assignment`): :func:`load_reference`
executes every notebook's locked cells then answer cells in a fresh module namespace and returns it;
:func:`locked_source` gives the locked (import) cells the sandboxed worker runs instead of the
student's copy.
"""

from __future__ import annotations

import json
import types
from functools import lru_cache
from pathlib import Path

from autograder.assignment import Assignment


class ReferenceSolutionError(RuntimeError):
    """The source notebooks are missing a cell or their code does not run."""


@lru_cache(maxsize=8)
def _cells(assignment: Assignment) -> dict[str, str]:
    out: dict[str, str] = {}
    for nb_name, gids in assignment.reference_cells.items():
        path = Path(assignment.source_dir) / nb_name
        try:
            cells = _sources_by_grade_id(path)
        except (OSError, ValueError) as err:
            raise ReferenceSolutionError(f"cannot read the source notebook {path}: {err}") from err
        for gid in gids:
            if gid not in cells:
                raise ReferenceSolutionError(f"source notebook {path} has no cell with grade_id {gid!r}")
            out[gid] = cells[gid]
    return out


def _sources_by_grade_id(path: Path) -> dict[str, str]:
    """``{grade_id: source}`` of an nbformat-4 notebook (first cell wins, as
    :func:`autograder.notebook.cells_by_grade_id`), read as plain JSON.

    These are the instructor's own source notebooks, so nbformat's validation is not needed, and
    leaving nbformat (with jsonschema) and nbgrader out saves the hidden tests' pytest process about
    3 s of imports per submission (see docs/benchmarks.md).

    Raises:
        OSError: the file cannot be read. ValueError: it is not a notebook's JSON.
    """
    nb = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(nb, dict) or not isinstance(nb.get("cells"), list):
        raise ValueError("not a Jupyter notebook (no list of cells)")  # noqa: TRY004 - a bad file
    out: dict[str, str] = {}
    for cell in nb["cells"]:
        meta = cell.get("metadata", {}).get("nbgrader") if isinstance(cell, dict) else None
        gid = meta.get("grade_id") if isinstance(meta, dict) else None
        if isinstance(gid, str) and gid not in out:
            src = cell.get("source", "")
            out[gid] = "".join(src) if isinstance(src, list) else src
    return out


def cell_source(grade_id: str, assignment: Assignment) -> str:
    """Source text of one reference cell (locked or answer) of ``assignment``'s source notebooks.

    Raises:
        ReferenceSolutionError: ``grade_id`` is not one of its cells, or a notebook cannot be read.
    """
    cells = _cells(assignment)
    if grade_id not in cells:
        raise ReferenceSolutionError(f"unknown reference cell {grade_id!r}; known: {sorted(cells)}")
    return cells[grade_id]


def locked_source(grade_id: str, assignment: Assignment) -> str:
    """Text of a locked cell as released; the worker runs it instead of the student's copy.

    Raises:
        ReferenceSolutionError: ``grade_id`` is not one of the assignment's locked cells.
    """
    if grade_id not in assignment.locked_cells:
        raise ReferenceSolutionError(f"{grade_id!r} is not a locked cell; locked cells: "
                                     f"{assignment.locked_cells}")
    return cell_source(grade_id, assignment)


@lru_cache(maxsize=4)
def _load(assignment: Assignment) -> types.ModuleType:
    mod = types.ModuleType(f"{assignment.name}_reference",
                           "Reference solutions executed from the source notebooks.")
    for nb_name, gids in assignment.reference_cells.items():
        for gid in gids:
            code = compile(_cells(assignment)[gid], f"<{nb_name}:{gid}>", "exec")
            try:
                exec(code, mod.__dict__)
            except Exception as err:
                raise ReferenceSolutionError(f"source cell {gid!r} of {nb_name} failed: {err!r}") from err
    for gid, names in assignment.answer_cells.items():
        for name in names:
            if not hasattr(mod, name):
                raise ReferenceSolutionError(f"the source cell {gid!r} defines no {name!r}")
    return mod


def load_reference(assignment: Assignment) -> types.ModuleType:
    """Execute the reference cells of ``assignment``'s source notebooks and return the namespace.

    Returns:
        A module holding every name the answer cells define (for FCN: ``FCN32s``, ``FCN8s``,
        ``transposed_conv_padding``, ``soft_iou_loss``), cached per assignment.

    Raises:
        ReferenceSolutionError: a notebook or cell is missing, or a cell fails to run.
    """
    return _load(assignment)

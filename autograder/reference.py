"""The trusted reference implementation, built from the SOURCE notebooks (one source of truth).

The solutions live only in ``notebooks/*.ipynb`` between ``### BEGIN SOLUTION`` / ``### END
SOLUTION`` comment markers, so the source cells run as they are. :func:`load_reference` executes
the cells named in :data:`REFERENCE_CELLS` in a fresh module namespace and returns it.
:func:`locked_source` gives the locked (import) cells the sandboxed worker runs instead of the
student's copy, and :data:`ANSWER_CELLS` the answer cells taken from the submission.
"""

from __future__ import annotations

import json
import os
import types
from functools import lru_cache
from pathlib import Path

#: Default folder of the source notebooks.
SOURCE_DIR = Path(__file__).resolve().parent.parent / "notebooks"

#: notebook file -> grade_ids executed, in order (locked imports first, then answers).
REFERENCE_CELLS: dict[str, tuple[str, ...]] = {
    "fcn_segmentation.ipynb": ("fcn_imports", "fcn32s", "fcn8s"),
    "upsampling_and_iou.ipynb": ("upsampling_imports", "transposed_conv_padding", "soft_iou_loss"),
}
#: Locked cells the worker runs from the source, never from the submission.
LOCKED_CELLS = ("fcn_imports", "upsampling_imports")
#: Answer cells the worker takes from the submission; value = the name the cell must define.
ANSWER_CELLS = {
    "fcn32s": "FCN32s",
    "fcn8s": "FCN8s",
    "transposed_conv_padding": "transposed_conv_padding",
    "soft_iou_loss": "soft_iou_loss",
}
#: grade_id -> notebook file.
CELL_NOTEBOOK = {gid: nb for nb, gids in REFERENCE_CELLS.items() for gid in gids}


class ReferenceSolutionError(RuntimeError):
    """The source notebooks are missing a cell or their code does not run."""


def _source_dir(source_dir) -> Path:
    return Path(source_dir) if source_dir is not None else SOURCE_DIR


@lru_cache(maxsize=8)
def _cells(source_dir: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for nb_name, gids in REFERENCE_CELLS.items():
        path = Path(source_dir) / nb_name
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


def cell_source(grade_id: str, source_dir: str | os.PathLike | None = None) -> str:
    """Source text of one reference cell of the source notebooks."""
    cells = _cells(str(_source_dir(source_dir)))
    if grade_id not in cells:
        raise ReferenceSolutionError(f"unknown reference cell {grade_id!r}; known: {sorted(cells)}")
    return cells[grade_id]


def locked_source(grade_id: str, source_dir: str | os.PathLike | None = None) -> str:
    """Text of a locked cell as released; the worker runs it instead of the student's copy.

    Raises:
        ReferenceSolutionError: ``grade_id`` is not one of :data:`LOCKED_CELLS`.
    """
    if grade_id not in LOCKED_CELLS:
        raise ReferenceSolutionError(f"{grade_id!r} is not a locked cell; locked cells: {LOCKED_CELLS}")
    return cell_source(grade_id, source_dir)


@lru_cache(maxsize=4)
def _load(source_dir: str) -> types.ModuleType:
    mod = types.ModuleType("fcn_reference", "Reference solutions executed from the source notebooks.")
    for nb_name, gids in REFERENCE_CELLS.items():
        for gid in gids:
            code = compile(_cells(source_dir)[gid], f"<{nb_name}:{gid}>", "exec")
            try:
                exec(code, mod.__dict__)
            except Exception as err:
                raise ReferenceSolutionError(f"source cell {gid!r} of {nb_name} failed: {err!r}") from err
    for name in ANSWER_CELLS.values():
        if not hasattr(mod, name):
            raise ReferenceSolutionError(f"the source notebooks define no {name!r}")
    return mod


def load_reference(source_dir: str | os.PathLike | None = None) -> types.ModuleType:
    """Execute the reference cells of the source notebooks and return the namespace.

    Returns:
        A module with ``FCN32s``, ``FCN8s``, ``transposed_conv_padding``, ``soft_iou_loss``
        (cached per ``source_dir``).

    Raises:
        ReferenceSolutionError: a notebook or cell is missing, or a cell fails to run.
    """
    return _load(str(_source_dir(source_dir)))

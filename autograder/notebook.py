"""Read a submitted notebook, check it against the release, and pull out its answers.

nbgrader metadata (``cell.metadata.nbgrader``: ``grade_id``, ``grade``, ``solution``, ``locked``,
``points``) identifies the cells; see the table in ``docs/ARCHITECTURE.md``. Locked cells are compared
with the SOURCE notebook by nbgrader's own checksum (:func:`nbgrader.utils.compute_checksum`: cell
source, type, grade/solution/locked flags, grade_id and points), so an edited test or import cell
is reported. The grader never runs a student's copy of a locked cell anyway (see
:mod:`autograder.reference`), so an edit costs nothing but is worth telling the instructor about.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path


def _import_nbformat_without_iri_checks():
    """Import nbformat (and so jsonschema) with ``rfc3987_syntax`` hidden from jsonschema.

    jsonschema imports ``rfc3987_syntax`` when it is installed (``jsonschema[format-nongpl]``,
    which the Jupyter stack pulls in) only to check the ``iri`` string formats, which no notebook
    schema uses; that import compiles about 35 Lark grammars: 1.2-2 s of CPU in every process that
    grades (each Dask worker, the coordinator), the largest part of importing nbformat
    (python-jsonschema/jsonschema#1428; docs/benchmarks.md). Hidden only while jsonschema is first
    imported; without effect when jsonschema is already loaded.
    """
    if "jsonschema" in sys.modules or "rfc3987_syntax" in sys.modules:
        return
    sys.modules["rfc3987_syntax"] = None  # `import rfc3987_syntax` raises ImportError
    try:
        import jsonschema  # noqa: F401 - its format checkers are set up at import
    finally:
        del sys.modules["rfc3987_syntax"]


_import_nbformat_without_iri_checks()

import nbformat
from nbgrader.utils import compute_checksum

from autograder.results import InlineAnswer
from autograder.submissions import decode_notebook_bytes


class NotebookError(Exception):
    """A submitted notebook cannot be graded as a whole (unreadable, not a notebook).

    The message is written for the student and names the file.
    """


def read_notebook(path: str | os.PathLike) -> nbformat.NotebookNode:
    """Read a ``.ipynb`` file as an nbformat v4 notebook.

    Text that is not UTF-8 is decoded as cp1252, else latin-1
    (:func:`autograder.submissions.decode_notebook_bytes`).

    Raises:
        NotebookError: the file is missing or unreadable, is not valid JSON, or is not a
            Jupyter notebook.
    """
    path = Path(path)
    if not path.is_file():
        raise NotebookError(f"{path.name}: the notebook is missing from the submission.")
    try:
        data = path.read_bytes()
    except OSError as err:
        raise NotebookError(f"{path.name}: cannot read the file ({err}).") from err
    # A notebook re-saved as latin-1/cp1252 by another editor is read with a fallback; the intake
    # (autograder.submissions) rewrites such files as UTF-8 and warns in the feedback.
    text, _ = decode_notebook_bytes(data)
    try:
        json.loads(text)
    except json.JSONDecodeError as err:
        raise NotebookError(
            f"{path.name} is not valid JSON (line {err.lineno}, column {err.colno}: {err.msg}). "
            "The file was probably damaged outside Jupyter; open the last saved version in "
            "Jupyter, save it again and resubmit."
        ) from err
    try:
        nb = nbformat.reads(text, as_version=4)
    except Exception as err:  # nbformat raises several types for non-notebook JSON
        raise NotebookError(
            f"{path.name} is JSON but not a Jupyter notebook ({type(err).__name__}: {err}). "
            "Submit the .ipynb file saved by Jupyter."
        ) from err
    if not isinstance(nb.get("cells"), list):
        raise NotebookError(f"{path.name} is not a Jupyter notebook: it has no list of cells.")
    return nb


def _nbgrader(cell) -> dict:
    meta = cell.get("metadata", {}).get("nbgrader")
    return meta if isinstance(meta, dict) else {}


def cells_by_grade_id(nb) -> dict:
    """Return ``{grade_id: cell}`` for every cell that carries nbgrader metadata (first one wins)."""
    out = {}
    for cell in nb.cells:
        gid = _nbgrader(cell).get("grade_id")
        if isinstance(gid, str) and gid not in out:
            out[gid] = cell
    return out


def _is_locked(meta: dict) -> bool:
    # nbgrader: grade cells that are not solution cells are always locked
    return bool(meta.get("locked")) or (bool(meta.get("grade")) and not meta.get("solution"))


def check_integrity(submitted_nb, source_nb) -> list[str]:
    """Compare a submission with the source (or release) notebook.

    Returns:
        A list of problems, one sentence each, empty when all is well: a graded or locked cell
        whose grade_id is missing (deleted or renamed), a locked cell whose contents changed, a
        grade_id that appears twice.
    """
    problems: list[str] = []
    sub = cells_by_grade_id(submitted_nb)
    counts: dict[str, int] = {}
    for cell in submitted_nb.cells:
        gid = _nbgrader(cell).get("grade_id")
        if isinstance(gid, str):
            counts[gid] = counts.get(gid, 0) + 1
    for gid, n in counts.items():
        if n > 1:
            problems.append(f"cell '{gid}' appears {n} times (a copied cell keeps its grade_id); "
                            "only the first one is graded.")
    for gid, src_cell in cells_by_grade_id(source_nb).items():
        meta = _nbgrader(src_cell)
        cell = sub.get(gid)
        if cell is None:
            problems.append(
                f"cell '{gid}' is missing: it was deleted or its nbgrader grade_id was changed. "
                "Tests that need it score 0; copy the cell back from the released notebook."
            )
            continue
        if _is_locked(meta):
            try:
                same = compute_checksum(cell) == compute_checksum(src_cell)
            except (KeyError, AttributeError, ValueError, TypeError):
                same = False
            if not same:
                problems.append(
                    f"locked cell '{gid}' was edited; the grader ignores the edit and runs the "
                    "released version of this cell."
                )
    return problems


def inline_answers(submitted_nb, source_nb) -> list[InlineAnswer]:
    """The free-text answers to the manually graded questions, in source-notebook order.

    A manual answer cell is a markdown cell with nbgrader ``solution`` and ``grade`` true. Its
    question is the locked markdown cell just before it in the SOURCE notebook; its points come
    from the source too (a student cannot change them). A deleted answer gives an empty answer.
    """
    sub = cells_by_grade_id(submitted_nb)
    out: list[InlineAnswer] = []
    prev = None
    for cell in source_nb.cells:
        meta = _nbgrader(cell)
        if cell.cell_type == "markdown" and meta.get("solution") and meta.get("grade"):
            gid = meta["grade_id"]
            question = prev.source.strip() if prev is not None else ""
            scell = sub.get(gid)
            answer = scell.source.strip() if scell is not None and isinstance(scell.source, str) else ""
            out.append(InlineAnswer(grade_id=gid, question=question, answer=answer,
                                    points=float(meta.get("points", 0) or 0)))
        if cell.cell_type == "markdown" and _is_locked(meta):
            prev = cell
        elif cell.cell_type == "code":
            prev = None
    return out

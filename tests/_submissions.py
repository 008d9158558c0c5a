"""Build test submissions: copies of the source notebooks with edited answer cells."""

from __future__ import annotations

from pathlib import Path

import nbformat

from autograder.assignment import get_assignment
from autograder.notebook import cells_by_grade_id

FCN = get_assignment("fcn_segmentation")


def build_submission(dest: Path, edits: dict, assignment=FCN) -> dict[str, Path]:
    """Write every notebook of ``assignment`` (default FCN) to ``dest``; ``edits[grade_id]`` is
    either a new cell source (str) or a list of ``(old, new)`` replacements applied to the source
    notebook's solution text (each ``old`` must occur, so a stale edit fails loudly)."""
    dest.mkdir(parents=True, exist_ok=True)
    nbs = {name: nbformat.read(Path(assignment.source_dir) / name, as_version=4)
           for name in assignment.notebook_files}
    for gid, edit in edits.items():
        cell = cells_by_grade_id(nbs[assignment.cell_notebook[gid]])[gid]
        if isinstance(edit, str):
            cell.source = edit
        else:
            for old, new in edit:
                assert old in cell.source, f"{old!r} not in cell {gid}"
                cell.source = cell.source.replace(old, new)
    out = {}
    for name, nb in nbs.items():
        nbformat.write(nb, dest / name)
        out[name] = dest / name
    return out

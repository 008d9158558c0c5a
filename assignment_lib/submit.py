"""Check your notebooks and pack the zip you hand in.

Usage (from the folder that holds the notebooks)::

    python -m assignment_lib.submit --student YOUR_ID            # writes YOUR_ID_<assignment>.zip
    python -m assignment_lib.submit --dir path/to/notebooks --out hand_in.zip --student YOUR_ID

Before packing, every notebook of the assignment is checked:

1. it is there and is a readable notebook;
2. no graded cell was deleted or duplicated (the cell ids, nbgrader's ``grade_id``, are compared
   with ``expected_cells.json``, written into ``assignment_lib/`` by the instructor's release);
3. it was run from top to bottom without errors: every code cell has an execution count and no
   error output (Kernel > Restart & Run All, then save);
4. every inline question is answered (no ``YOUR ANSWER HERE`` left);
5. it records what it ran with (the run record its setup cell writes, see
   :mod:`assignment_lib.run_record`), and that was neither smoke mode (tiny training runs) nor the
   24-image sample instead of the data set, unless ``--allow-smoke`` / ``--allow-sample`` says
   the student means it.

Problems name the graded cell (nbgrader's ``grade_id``) or the code cell as Jupyter shows it: its
number counting code cells only, its ``In [n]`` execution count and the section it is in.
Each problem is printed and the command exits with status 1 without writing the zip. ``--force``
packs anyway and records the problems in the zip's ``manifest.json`` (graders will see them).

The zip holds the notebooks and ``manifest.json``: the student id, the time (UTC, ISO 8601), the
sha256 of each notebook (and its run record), whether ``--force`` was used, the problems found,
and ``run``: ``budget`` ("gpu" | "cpu" | "smoke"), ``smoke`` (bool), ``dataset`` ("full" |
"sample"), ``dataset_sha256``, ``kit_version`` and ``allowed`` (which of "smoke", "sample" the
student allowed). With several notebooks, ``run`` holds the least complete of their records
(smoke if any ran in smoke mode, sample if any ran on the sample).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import getpass
import hashlib
import json
import re
import sys
import zipfile
from pathlib import Path

import nbformat

from .config import BUDGETS, REPO_ROOT
from .run_record import RUN_KEYS, RUN_RECORD_MIME

#: The manifest of expected graded cells, written by the release next to this module.
EXPECTED_CELLS = Path(__file__).resolve().parent / "expected_cells.json"
#: The text nbgrader puts in an unanswered inline-question cell.
ANSWER_STUB = "YOUR ANSWER HERE"
#: Student ids must be usable as folder names (same rule as the grader's).
STUDENT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@+-]{0,127}$")


def expected_cells_from_notebooks(notebooks: list[Path], assignment: str | None = None) -> dict:
    """Build the expected-cells manifest from (source or release) notebooks of ``assignment``
    (default: the name of the folder that holds the first notebook, ``notebooks/<assignment>/``).

    Returns:
        ``{"assignment": ..., "notebooks": {file name: {"grade_ids": [...], "answers": [...]}}}``
        where ``answers`` are the grade_ids of the manually graded markdown cells (inline answers).
    """
    if assignment is None:
        assignment = Path(notebooks[0]).resolve().parent.name if notebooks else ""
    out = {"assignment": assignment, "notebooks": {}}
    for path in notebooks:
        nb = nbformat.read(path, as_version=4)
        ids, answers = [], []
        for cell in nb.cells:
            meta = cell.metadata.get("nbgrader", {})
            gid = meta.get("grade_id")
            if not gid:
                continue
            ids.append(gid)
            if cell.cell_type == "markdown" and meta.get("grade") and meta.get("solution"):
                answers.append(gid)
        out["notebooks"][Path(path).name] = {"grade_ids": ids, "answers": answers}
    return out


def load_expected(path: Path | None = None) -> dict:
    """The expected-cells manifest: ``path``, else ``expected_cells.json`` next to this module,
    else (in the instructors' repository, with exactly one assignment there) computed from
    ``notebooks/<assignment>/*.ipynb``.

    Raises:
        FileNotFoundError: if none of these exist (or the repository holds several assignments).
        ValueError: if the manifest is not valid JSON of the expected shape.
    """
    path = Path(path) if path else EXPECTED_CELLS
    if path.is_file():
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            assert isinstance(data["notebooks"], dict)
        except (ValueError, KeyError, TypeError, AssertionError) as e:
            raise ValueError(f"{path} is not a valid expected-cells manifest: {e}") from e
        return data
    folders = sorted({p.parent for p in (REPO_ROOT / "notebooks").glob("*/*.ipynb")})
    source = sorted(folders[0].glob("*.ipynb")) if len(folders) == 1 else []
    if not source:
        raise FileNotFoundError(
            f"no {path.name} next to assignment_lib and no notebooks/ folder: unpack the "
            f"assignment bundle again, it ships assignment_lib/{path.name}")
    return expected_cells_from_notebooks(source)


def check_notebook(path: Path, expected: dict) -> list[str]:
    """Problems with one notebook (empty list when it is ready to hand in).

    Args:
        path: the ``.ipynb`` file.
        expected: this notebook's entry of the manifest (``grade_ids``, ``answers``).
    """
    name = path.name
    if not path.is_file():
        return [f"{name}: missing (expected in {path.parent})"]
    try:
        nb = nbformat.read(path, as_version=4)
    except (OSError, ValueError, KeyError, AttributeError, nbformat.ValidationError) as e:
        return [f"{name}: cannot be read as a notebook ({type(e).__name__}: {e})"]
    problems = []

    seen: dict[str, int] = {}
    cells = {}
    for cell in nb.cells:
        gid = cell.metadata.get("nbgrader", {}).get("grade_id")
        if gid:
            seen[gid] = seen.get(gid, 0) + 1
            cells[gid] = cell
    missing = [g for g in expected.get("grade_ids", []) if g not in seen]
    if missing:
        problems.append(f"{name}: graded cell(s) deleted: {', '.join(missing)}. Copy them back "
                        f"from the released notebook (same place, same metadata).")
    dup = sorted(g for g, n in seen.items() if n > 1)
    if dup:
        problems.append(f"{name}: graded cell(s) duplicated: {', '.join(dup)}. Keep one copy of "
                        f"each (do not copy-paste graded cells).")

    unrun, errors = [], []
    for cell, label in _code_cell_labels(nb):
        if not cell.source.strip():
            continue
        if cell.get("execution_count") is None:
            unrun.append(label)
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error":
                errors.append(f"{label} ({output.get('ename', 'Error')}: "
                              f"{str(output.get('evalue', ''))[:80]})")
                break
    if unrun:
        shown = ", ".join(unrun[:5]) + (f" and {len(unrun) - 5} more" if len(unrun) > 5 else "")
        problems.append(f"{name}: {len(unrun)} code cell(s) were not run: {shown}. Use Kernel > "
                        f"Restart & Run All, then save.")
    if errors:
        problems.append(f"{name}: cell(s) ended with an error: {'; '.join(errors[:5])}. Fix them, "
                        f"run all cells again and save.")

    for gid in expected.get("answers", []):
        cell = cells.get(gid)
        if cell is None:
            continue  # already reported as deleted
        text = cell.source.strip()
        if not text or ANSWER_STUB in text:
            problems.append(f"{name}: inline question '{gid}' is not answered (replace "
                            f"'{ANSWER_STUB}' with your answer).")
    return problems


def _code_cell_labels(nb) -> list[tuple]:
    """``[(code cell, label)]``: a graded cell by its grade_id, any other by what Jupyter shows:
    ``code cell 7 (In [12]) in '3. Training FCN-32s'`` (code cells counted from 1, markdown not
    counted; the section is the last markdown heading above it)."""
    out, section, k = [], "", 0
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            heads = [line.lstrip("#").strip() for line in cell.source.splitlines()
                     if line.startswith("#")]
            section = heads[-1] if heads else section
            continue
        if cell.cell_type != "code":
            continue
        k += 1
        gid = cell.metadata.get("nbgrader", {}).get("grade_id")
        count = cell.get("execution_count")
        shown = f"code cell {k}" + (f" (In [{count}])" if count is not None else "")
        where = f" in '{section}'" if section else ""
        out.append((cell, f"'{gid}' ({shown})" if gid else shown + where))
    return out


def read_run_record(path: Path) -> dict | None:
    """The run record a notebook's setup cell wrote (:func:`assignment_lib.run_record.record_run`),
    the last one if there are several; ``None`` when there is none or it lacks a key."""
    try:
        nb = nbformat.read(path, as_version=4)
    except (OSError, ValueError, KeyError, AttributeError, nbformat.ValidationError):
        return None
    found = None
    for cell in nb.cells:
        for output in cell.get("outputs", []) if cell.cell_type == "code" else []:
            record = output.get("data", {}).get(RUN_RECORD_MIME)
            if isinstance(record, dict):
                found = record
    if found is None or any(key not in found for key in RUN_KEYS):
        return None
    return {key: found[key] for key in RUN_KEYS}


def check_run(records: dict[str, dict | None], allow: set[str]) -> list[str]:
    """Problems with what the notebooks ran with: no run record, smoke mode or the sample data
    (each unless in ``allow``, a subset of ``{"smoke", "sample"}``)."""
    problems = []
    for name, record in sorted(records.items()):
        if record is None:
            problems.append(
                f"{name}: no run record found (the output of the setup cell that calls "
                f"record_run). It did not run, or its output was cleared: use Kernel > Restart & "
                f"Run All, then save.")
            continue
        if record["smoke"] and "smoke" not in allow:
            problems.append(
                f"{name} ran in smoke mode (budget {record['budget']}): every training run was "
                f"tiny, so its numbers and figures say nothing about your models and graders "
                f"would reject answers based on them. Unset ASSIGNMENT_SMOKE / ASSIGNMENT_BUDGET, "
                f"restart Jupyter, run all cells and save; or add --allow-smoke if your instructor "
                f"asked for a smoke run.")
        if record["dataset"] == "sample" and "sample" not in allow:
            problems.append(
                f"{name} ran on the 24-image sample, not the CMP Facade data set, so its scores "
                f"mean little. Get the data (python -m assignment_lib.download, or set "
                f"CMP_FACADE_ROOT), restart, run all cells and save; or add --allow-sample if your "
                f"instructor allows it.")
    return problems


def summarize_run(records: dict[str, dict | None], allow: set[str]) -> dict:
    """The manifest's ``run`` dict: the least complete of the notebooks' records (the shortest
    budget, smoke if any is smoke, the sample if any used it), plus ``allowed``."""
    present = [r for _, r in sorted(records.items()) if r is not None]
    allowed = sorted(allow)
    if not present:
        return {"budget": "unknown", "smoke": False, "dataset": "unknown", "dataset_sha256": "",
                "kit_version": "unknown", "allowed": allowed}
    rank = {b: i for i, b in enumerate(BUDGETS)}
    worst = max(present, key=lambda r: (r["dataset"] == "sample", rank.get(r["budget"], len(rank))))
    return {"budget": max((r["budget"] for r in present), key=lambda b: rank.get(b, len(rank))),
            "smoke": any(r["smoke"] for r in present),
            "dataset": "sample" if any(r["dataset"] == "sample" for r in present) else "full",
            "dataset_sha256": worst["dataset_sha256"], "kit_version": worst["kit_version"],
            "allowed": allowed}


def check_folder(folder: Path, expected: dict, allow: set[str] | frozenset = frozenset()) -> list[str]:
    """Problems with all the assignment's notebooks in ``folder`` (see the module docstring)."""
    problems = []
    for name, entry in sorted(expected["notebooks"].items()):
        problems += check_notebook(Path(folder) / name, entry)
    records = {name: read_run_record(Path(folder) / name) for name in expected["notebooks"]
               if (Path(folder) / name).is_file()}
    return problems + check_run(records, set(allow))


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def pack(folder: Path, out: Path, student: str, expected: dict, problems: list[str],
         forced: bool, allow: set[str] | frozenset = frozenset()) -> Path:
    """Write the hand-in zip: the notebooks (those present) and ``manifest.json``."""
    folder, out = Path(folder), Path(out)
    names = [n for n in sorted(expected["notebooks"]) if (folder / n).is_file()]
    records = {n: read_run_record(folder / n) for n in names}
    manifest = {
        "assignment": expected.get("assignment", ""),
        "student": student,
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "notebooks": {n: {"sha256": _sha256(folder / n), "run": records[n]} for n in names},
        "forced": forced,
        "problems": problems,
        "run": summarize_run(records, set(allow)),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".part")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for n in names:
            zf.write(folder / n, arcname=n)
        zf.writestr("manifest.json", json.dumps(manifest, indent=2) + "\n")
    tmp.replace(out)
    return out


def _default_student() -> str:
    try:
        user = getpass.getuser()
    except (OSError, KeyError):
        user = ""
    user = re.sub(r"[^A-Za-z0-9._@+-]", "_", user).lstrip("._@+-")
    return user or "student"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m assignment_lib.submit",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", default=".", help="folder holding the notebooks (default: .)")
    parser.add_argument("--out", default=None,
                        help="zip to write (default: <student>_<assignment>.zip in --dir)")
    parser.add_argument("--student", default=None,
                        help="your student id (default: your login name)")
    parser.add_argument("--force", action="store_true",
                        help="pack even if there are problems (they are recorded in the zip)")
    parser.add_argument("--allow-smoke", action="store_true",
                        help="accept notebooks run in smoke mode (tiny training runs; recorded)")
    parser.add_argument("--allow-sample", action="store_true",
                        help="accept notebooks run on the 24-image sample data (recorded)")
    parser.add_argument("--expected", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    student = args.student or _default_student()
    if not STUDENT_RE.match(student):
        print(f"error: --student {student!r} must start with a letter or digit and contain only "
              f"letters, digits and . _ @ + - (at most 128 characters)", file=sys.stderr)
        return 2
    folder = Path(args.dir)
    if not folder.is_dir():
        print(f"error: --dir {folder} is not a folder", file=sys.stderr)
        return 2
    try:
        expected = load_expected(args.expected)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

    allow = {name for name, flag in (("smoke", args.allow_smoke), ("sample", args.allow_sample)) if flag}
    problems = check_folder(folder, expected, allow)
    for p in problems:
        print(f"PROBLEM: {p}", file=sys.stderr)
    if problems and not args.force:
        print(f"\n{len(problems)} problem(s): nothing was written. Fix them and run this again, "
              f"or add --force to pack anyway (the problems are recorded for the graders).",
              file=sys.stderr)
        return 1
    out = Path(args.out) if args.out else folder / f"{student}_{expected.get('assignment') or 'assignment'}.zip"
    pack(folder, out, student, expected, problems, forced=bool(problems), allow=allow)
    note = " (with problems, --force)" if problems else ""
    print(f"wrote {out}{note}: hand in this file.")
    return 0


if __name__ == "__main__":
    sys.exit(main())

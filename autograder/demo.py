"""``python -m autograder demo``: the whole instructor loop on three made-up students.

1. builds the release (:func:`autograder.release.release`) into ``OUT/release``;
2. writes three submissions from the release notebooks, as a student's notebook would look:

   * ``reference``: every answer cell holds the source notebook's solution;
   * ``partly_wrong``: the solution with two bugs: FCN-32s crops at offset 18 instead of 19, and
     ``transposed_conv_padding`` returns ``((k - s) // 2, 0)`` (wrong whenever ``k - s`` is odd);
   * ``broken``: a syntax error in the FCN-8s cell and ``while True: pass`` in the soft-IoU cell;

   every student also answers the inline questions (one answer carries a ``<script>`` tag, to
   show that the reports escape student text);
3. packs each with :func:`assignment_lib.submit.pack` into ``OUT/submissions/<student>.zip``;
4. grades them with ``--jobs 2`` on the real data (``CMP_FACADE_ROOT``, else
   ``../shared/datasets/cmp_facade`` next to the repository, else the bundled sample) and prints
   the score table and where every output is.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
STUDENTS = ("broken", "partly_wrong", "reference")


def demo_data_root() -> Path:
    """``$CMP_FACADE_ROOT``, else ``<repo>/../shared/datasets/cmp_facade`` if present, else the sample."""
    if env := os.environ.get("CMP_FACADE_ROOT"):
        return Path(env)
    shared = REPO.parent / "shared" / "datasets" / "cmp_facade"
    return shared if (shared / "base").is_dir() else REPO / "datasets" / "sample"


def _solution(source_cell: str) -> str:
    """The source cell without nbgrader's solution markers (what a student would have written)."""
    return "\n".join(line for line in source_cell.splitlines()
                     if line.strip() not in ("### BEGIN SOLUTION", "### END SOLUTION"))


def _bug(text: str, old: str, new: str, what: str) -> str:
    if old not in text:
        raise RuntimeError(f"demo: cannot inject the {what} bug: {old!r} is not in the solution any more")
    return text.replace(old, new)


PADDING_BUG = re.compile(r"### BEGIN SOLUTION.*?### END SOLUTION", re.DOTALL)


def student_cells(student: str, solutions: dict[str, str]) -> dict[str, str]:
    """``{grade_id: new source}`` for the answer cells of ``student`` (see the module docstring)."""
    cells = {gid: _solution(src) for gid, src in solutions.items()}
    if student == "partly_wrong":
        cells["fcn32s"] = _bug(cells["fcn32s"], "19:19 +", "18:18 +", "FCN-32s crop offset")
        cells["transposed_conv_padding"] = PADDING_BUG.sub(
            "return (kernel_size - stride) // 2, 0  # forgot output_padding for odd k - s",
            solutions["transposed_conv_padding"])
    elif student == "broken":
        cells["fcn8s"] = cells["fcn8s"].replace("class FCN8s(nn.Module):", "class FCN8s(nn.Module)", 1)
        cells["soft_iou_loss"] = "while True:\n    pass\n\n" + cells["soft_iou_loss"]
    return cells


def inline_text(student: str, grade_id: str) -> str:
    if student == "partly_wrong" and grade_id == "q1_pretrained":
        return "Pretrained features help <script>alert('not escaped')</script> & converge faster."
    return f"{student}'s answer to {grade_id}: (demo text) the skips restore detail lost to pooling."


def make_submissions(release_dir: Path, source_dir: Path, expected_path: Path, out: Path) -> list[Path]:
    """Write ``out/<student>/*.ipynb`` and ``out/<student>.zip`` for each demo student; return the zips."""
    import nbformat

    from assignment_lib import submit
    from autograder import reference

    solutions = {gid: reference.cell_source(gid, source_dir) for gid in reference.ANSWER_CELLS}
    expected = submit.load_expected(expected_path)
    zips = []
    for student in STUDENTS:
        folder = out / student
        folder.mkdir(parents=True, exist_ok=True)
        cells = student_cells(student, solutions)
        for rel in sorted(release_dir.glob("*.ipynb")):
            nb = nbformat.read(rel, as_version=4)
            for cell in nb.cells:
                meta = cell.metadata.get("nbgrader", {})
                gid = meta.get("grade_id")
                if meta.get("solution") and cell.cell_type == "code" and gid in cells:
                    cell.source = cells[gid]
                elif meta.get("solution") and cell.cell_type == "markdown":
                    cell.source = inline_text(student, gid)
            nbformat.write(nb, folder / rel.name)
        problems = submit.check_folder(folder, expected)
        zips.append(submit.pack(folder, out / f"{student}.zip", student, expected, problems, forced=bool(problems)))
    return zips


def run_demo(out: str | Path = "grading_out/demo", jobs: int = 2, miou: str = "none", timeout: float | None = 30.0,
             progress: bool = True, log=print) -> int:
    """Release, make the three submissions, grade them, print the scores; returns 0 (an exit code)."""
    from autograder import release as release_mod
    from autograder.grade import GradeOptions, grade_all, print_summary
    from autograder.settings import GradingSettings
    from autograder.submissions import find_submissions

    t0 = time.perf_counter()
    out = Path(out).resolve()
    log(f"demo: building the release into {out / 'release'}")
    paths = release_mod.release(out / "release")
    zips = make_submissions(paths.release, REPO / "notebooks", paths.expected_cells, out / "submissions")
    data_root = demo_data_root()
    log(f"demo: {len(zips)} submissions in {out / 'submissions'}; grading with --jobs {jobs} on {data_root}")
    subs = find_submissions(zips, out / "graded" / ".work")
    settings = GradingSettings(miou=miou, data_root=str(data_root),
                               **({} if timeout is None else {"request_timeout": timeout}))
    options = GradeOptions(out=out / "graded", settings=settings, jobs=jobs, force=True, progress=progress)
    summary = grade_all(subs, options, log=log)
    print_summary(summary, log=log)
    log(f"{'release':>18}: {paths.course} (nbgrader course), {paths.zip} (student zip)")
    log(f"{'submissions':>18}: {out / 'submissions'}")
    log(f"demo: done in {time.perf_counter() - t0:.0f} s")
    return 0

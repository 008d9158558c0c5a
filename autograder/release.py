"""Build the nbgrader course folder and the student bundle.

``python -m autograder release [--assignment NAME] [--out DIR]`` (default ``DIR = build``; without
``--assignment``, every assignment of :func:`autograder.assignment.assignment_names` into ONE course
folder) does, per assignment ``A``:

1. ``DIR/course/``: an nbgrader course folder: ``nbgrader_config.py`` (course id, the hint put in
   place of each solution, execution timeout) and ``source/A/*.ipynb`` copied from
   ``notebooks/A/``, each check cell's ``points`` set from the rubric (:func:`check_cell_points`);
2. runs ``nbgrader generate_assignment A --force`` there (nbgrader's own command
   line, in a subprocess, so that exactly the same thing happens as when an instructor types it),
   which writes ``release/A/*.ipynb`` (solutions replaced by a stub that raises
   ``NotImplementedError``, outputs cleared, checksums recorded) and ``gradebook.db``;
3. ``DIR/student/A/``: the student bundle: the release notebooks,
   ``assignment_lib/`` (without ``__pycache__``) plus ``assignment_lib/expected_cells.json`` (the
   graded cells ``python -m assignment_lib.submit`` insists on), ``datasets/`` (split lists, sample,
   checksums for ``python -m assignment_lib.download``), ``environment.yml``, a ``pyproject.toml``
   that installs only ``assignment_lib``, and a short ``README.md``;
4. ``DIR/A_student.zip``: the same bundle, zipped (top folder ``A/``).

The bundle holds no solution code, no hidden tests and nothing of ``autograder/``
(``tests/test_release.py`` scans it).

The course folder also works with plain nbgrader (``tests/test_nbgrader_route.py`` runs this).
nbgrader executes every submitted notebook in a kernel of its own environment, so
``assignment_lib`` must be importable there (``pip install -e .`` from the repository, as
``make setup`` does) and that environment's ``bin/`` must be on ``PATH`` (nbgrader runs its
``alembic`` script)::

    cd DIR/course
    mkdir -p submitted/alice/fcn_segmentation      # one folder per student, nbgrader's layout
    unzip -j alice_fcn_segmentation.zip '*.ipynb' -d submitted/alice/fcn_segmentation
    ASSIGNMENT_SMOKE=1 CMP_FACADE_ROOT=/path/to/cmp_facade VGG16_WEIGHTS=/path/to/vgg16.pth \
        nbgrader autograde fcn_segmentation        # -> autograded/, scores in gradebook.db
    nbgrader export                                # -> grades.csv
    jupyter lab                                    # Nbgrader > Formgrader: inline answers

``ASSIGNMENT_SMOKE=1`` keeps the training cells short (about a minute per submission on 2 CPU
cores; without it nbgrader re-runs the whole training). ``VGG16_WEIGHTS`` avoids a 528 MB
download. Each check cell ``check_<part>`` carries the total points of its part in
``rubric.toml`` (fcn32s, fcn8s, transposed_conv_padding, soft_iou_loss) and nbgrader awards them
all or nothing: full if the cell raises nothing. The hidden tests, the training (mIoU) part and
per-test partial credit exist only in this kit's grader (``python -m autograder grade``, which
does not need the course folder; ``python -m autograder export-gradebook`` writes its scores into
the same ``gradebook.db``). nbgrader's isolation is weaker: student code runs unsandboxed with the
instructor's rights, and a hanging cell is stopped only by ``ExecutePreprocessor.timeout``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tomllib
import zipfile
from dataclasses import dataclass
from pathlib import Path

from assignment_lib.submit import ANSWER_STUB, expected_cells_from_notebooks
from autograder.assignment import Assignment, all_assignments, get_assignment

REPO = Path(__file__).resolve().parent.parent
#: What nbgrader puts in place of every ``### BEGIN SOLUTION`` ... ``### END SOLUTION`` region.
CODE_STUB = ("# YOUR CODE HERE: see the docstring above and the text before this cell,\n"
             "# then run the check cell below.\n"
             "raise NotImplementedError(\"Replace this line with your code "
             "(see the docstring), then run the check cell below.\")")
#: Parts of ``datasets/`` that the student bundle needs (splits, offline sample, checksums).
DATASET_PARTS = ("README.md", "cmp_facade_base.sha256", "splits", "sample")

NBGRADER_CONFIG = f'''"""nbgrader configuration of the course (written by autograder/release.py)."""
c = get_config()  # noqa: F821
c.CourseDirectory.course_id = "deep_learning_course"
c.ClearSolutions.code_stub = {{"python": {CODE_STUB!r}}}
c.ClearSolutions.text_stub = {ANSWER_STUB!r}
# nbgrader autograde executes whole notebooks, training cells included.
c.ExecutePreprocessor.timeout = 3600
'''

#: The student bundle's README.md when the assignment package has no ``student_README.md``
#: (``{title}``, ``{name}`` and ``{notebooks}`` filled in).
GENERIC_STUDENT_README = """# {title}

Set up the environment as `environment.yml` or `pyproject.toml` say (Python 3.11 or newer), then
open {notebooks} with `jupyter lab`. Replace each `raise NotImplementedError(...)` with your code and
run the check cell below it. Answer every inline question in its markdown cell. Hand in with

    python -m assignment_lib.submit --student YOUR_ID

which writes `YOUR_ID_{name}.zip`.
"""



@dataclass
class ReleasePaths:
    """Where :func:`release` put one assignment (all absolute)."""

    course: Path           #: the nbgrader course folder (shared by every assignment)
    release: Path          #: course/release/<assignment> (the release notebooks)
    bundle: Path           #: the student bundle folder
    zip: Path              #: the student bundle zip
    expected_cells: Path   #: bundle/assignment_lib/expected_cells.json
    notebooks: tuple[str, ...] = ()  #: the assignment's notebook file names
    assignment: str = ""   #: the assignment's name

    def release_notebooks(self) -> list[Path]:
        return [self.release / n for n in self.notebooks]


class ReleaseError(RuntimeError):
    """nbgrader failed, or a notebook or file the release needs is missing."""


def _write_student_pyproject(dest: Path) -> None:
    meta = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    deps = ",\n".join(f'    "{d}"' for d in meta["dependencies"])
    dest.write_text(
        "[build-system]\n"
        'requires = ["setuptools>=68"]\n'
        'build-backend = "setuptools.build_meta"\n\n'
        "[project]\n"
        'name = "fcn-assignment"\n'
        f'version = "{meta["version"]}"\n'
        'description = "FCN semantic-segmentation assignment (CMP Facade): student bundle"\n'
        f'requires-python = "{meta["requires-python"]}"\n'
        f"dependencies = [\n{deps},\n]\n\n"
        "[tool.setuptools]\n"
        'packages = ["assignment_lib"]\n\n'
        "[tool.setuptools.package-data]\n"
        'assignment_lib = ["expected_cells.json"]\n',
        encoding="utf-8")


def _ignore(_dir, names):
    return [n for n in names if n in ("__pycache__", ".ipynb_checkpoints") or n.endswith(".pyc")]


def student_readme(assignment: Assignment) -> str:
    """The bundle's README.md: ``student_README.md`` of the assignment package, else
    :data:`GENERIC_STUDENT_README` filled in."""
    own = Path(assignment.folder) / "student_README.md"
    if own.is_file():
        return own.read_text(encoding="utf-8")
    nbs = " and ".join(f"`{n}`" for n in assignment.notebook_files)
    return GENERIC_STUDENT_README.format(title=assignment.title, name=assignment.name, notebooks=nbs)


def make_course(course: Path, assignment: Assignment) -> Path:
    """Write the nbgrader course folder's config and ``assignment``'s source notebooks, with the
    check cells' points derived from the rubric (:func:`check_cell_points`); return the source
    folder. Other assignments' folders in ``course`` are left as they are.

    Raises:
        ReleaseError: a source notebook is missing, or the rubric and the notebooks do not match.
    """
    from autograder.points import PointsError, set_check_points

    notebooks_dir = Path(assignment.source_dir)
    for name in assignment.notebook_files:
        if not (notebooks_dir / name).is_file():
            raise ReleaseError(f"source notebook {notebooks_dir / name} is missing")
    course.mkdir(parents=True, exist_ok=True)
    (course / "nbgrader_config.py").write_text(NBGRADER_CONFIG, encoding="utf-8")
    source = course / "source" / assignment.name
    if source.exists():
        shutil.rmtree(source)
    source.mkdir(parents=True)
    for name in assignment.notebook_files:
        shutil.copy2(notebooks_dir / name, source / name)
    try:
        set_check_points(assignment, source)
    except PointsError as err:
        raise ReleaseError(str(err)) from None
    return source


def generate_assignment(course: Path, assignment: Assignment) -> Path:
    """Run ``nbgrader generate_assignment <name>`` in ``course``; return the release folder.

    Raises:
        ReleaseError: with nbgrader's output if it fails.
    """
    cmd = [sys.executable, "-m", "nbgrader", "generate_assignment", assignment.name, "--force"]
    # nbgrader runs the `alembic` console script of its environment: put that on PATH.
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    proc = subprocess.run(cmd, check=False, cwd=course, capture_output=True, text=True, env=env)
    release = course / "release" / assignment.name
    if proc.returncode != 0 or not all((release / n).is_file() for n in assignment.notebook_files):
        raise ReleaseError(f"`{' '.join(cmd[1:])}` failed in {course} (exit {proc.returncode}):\n"
                           f"{proc.stdout}\n{proc.stderr}")
    return release


def make_bundle(release: Path, bundle: Path, assignment: Assignment) -> Path:
    """Assemble the student bundle folder from the release notebooks; return the manifest path."""
    if bundle.exists():
        shutil.rmtree(bundle)
    bundle.mkdir(parents=True)
    names = assignment.notebook_files
    for name in names:
        shutil.copy2(release / name, bundle / name)
    shutil.copytree(REPO / "assignment_lib", bundle / "assignment_lib", ignore=_ignore)
    expected = bundle / "assignment_lib" / "expected_cells.json"
    manifest = expected_cells_from_notebooks([release / n for n in names], assignment.name)
    expected.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    (bundle / "datasets").mkdir()
    for part in DATASET_PARTS:
        src = REPO / "datasets" / part
        if not src.exists():
            raise ReleaseError(f"{src} is missing; the student bundle needs it")
        if src.is_dir():
            shutil.copytree(src, bundle / "datasets" / part, ignore=_ignore)
        else:
            shutil.copy2(src, bundle / "datasets" / part)
    shutil.copy2(REPO / "environment.yml", bundle / "environment.yml")
    _write_student_pyproject(bundle / "pyproject.toml")
    (bundle / "README.md").write_text(student_readme(assignment), encoding="utf-8")
    return expected


def zip_folder(folder: Path, dest: Path) -> Path:
    """Zip ``folder`` into ``dest`` with ``folder.name`` as the top-level folder."""
    tmp = dest.with_name(dest.name + ".part")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                zf.write(path, arcname=str(Path(folder.name) / path.relative_to(folder)))
    tmp.replace(dest)
    return dest


def release(out: str | Path | None = None, assignment: str | Assignment = "") -> ReleasePaths:
    """Build (or update) the course folder with one assignment, run nbgrader, and pack its student
    bundle under ``out``.

    Args:
        out: output folder (default ``<repo>/build``); ``out/course/{source,release}/<name>``,
            ``out/student/<name>`` and ``out/<name>_student.zip`` are replaced, other assignments'
            folders kept.
        assignment: the assignment's name (``autograder/assignments/<name>``) or an
            :class:`~autograder.assignment.Assignment` (e.g. loaded from a copy).

    Raises:
        ReleaseError: a source file is missing, the rubric and the check cells do not match, or
            nbgrader fails.
        autograder.assignment.AssignmentError: no such assignment.
    """
    spec = assignment if isinstance(assignment, Assignment) else get_assignment(assignment)
    out = Path(out or REPO / "build").resolve()
    course = out / "course"
    make_course(course, spec)
    rel = generate_assignment(course, spec)
    bundle = out / "student" / spec.name
    expected = make_bundle(rel, bundle, spec)
    zip_path = zip_folder(bundle, out / f"{spec.name}_student.zip")
    return ReleasePaths(course=course, release=rel, bundle=bundle, zip=zip_path,
                        expected_cells=expected, notebooks=spec.notebook_files, assignment=spec.name)


def release_all(out: str | Path | None = None, root: str | Path | None = None,
                notebooks_root: str | Path | None = None) -> dict[str, ReleasePaths]:
    """Every assignment (``<root>/*/assignment.toml``) into ONE course folder under ``out``, one
    student bundle each; ``{name: ReleasePaths}``.

    Raises:
        ReleaseError: as :func:`release`, or there is no assignment at all.
    """
    specs = all_assignments(root, notebooks_root)
    if not specs:
        raise ReleaseError(f"no assignment (no */assignment.toml) under {root or 'autograder/assignments'}")
    return {s.name: release(out, s) for s in specs}


def main(argv: list[str] | None = None) -> int:
    from autograder.assignment import AssignmentError

    parser = argparse.ArgumentParser(prog="python -m autograder release",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=None, help="output folder (default: build)")
    parser.add_argument("--assignment", default=None,
                        help="release only this assignment (default: every assignment, one course)")
    args = parser.parse_args(argv)
    try:
        done = {args.assignment: release(args.out, args.assignment)} if args.assignment else release_all(args.out)
    except (ReleaseError, AssignmentError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    for name, paths in done.items():
        print(f"{name}:")
        print(f"  nbgrader course folder: {paths.course}")
        print(f"  release notebooks:      {paths.release}")
        print(f"  student bundle:         {paths.bundle}")
        print(f"  student zip:            {paths.zip}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

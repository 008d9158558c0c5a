"""Build the nbgrader course folder and the student bundle.

``python -m autograder release [--out DIR]`` (default ``DIR = build``) does:

1. ``DIR/course/``: an nbgrader course folder: ``nbgrader_config.py`` (course id, the hint put in
   place of each solution, execution timeout) and ``source/fcn_segmentation/*.ipynb`` copied from
   ``notebooks/``;
2. runs ``nbgrader generate_assignment fcn_segmentation --force`` there (nbgrader's own command
   line, in a subprocess, so that exactly the same thing happens as when an instructor types it),
   which writes ``release/fcn_segmentation/*.ipynb`` (solutions replaced by a stub that raises
   ``NotImplementedError``, outputs cleared, checksums recorded) and ``gradebook.db``;
3. ``DIR/student/fcn_segmentation/``: the student bundle: the release notebooks,
   ``assignment_lib/`` (without ``__pycache__``) plus ``assignment_lib/expected_cells.json`` (the
   graded cells ``python -m assignment_lib.submit`` insists on), ``datasets/`` (split lists, sample,
   checksums for ``python -m assignment_lib.download``), ``environment.yml``, a ``pyproject.toml``
   that installs only ``assignment_lib``, and a short ``README.md``;
4. ``DIR/fcn_segmentation_student.zip``: the same bundle, zipped (top folder ``fcn_segmentation/``).

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

REPO = Path(__file__).resolve().parent.parent
ASSIGNMENT = "fcn_segmentation"
NOTEBOOKS = ("fcn_segmentation.ipynb", "upsampling_and_iou.ipynb")
#: What nbgrader puts in place of every ``### BEGIN SOLUTION`` ... ``### END SOLUTION`` region.
CODE_STUB = ("# YOUR CODE HERE: see the docstring above and the text before this cell,\n"
             "# then run the check cell below.\n"
             "raise NotImplementedError(\"Replace this line with your code "
             "(see the docstring), then run the check cell below.\")")
#: Parts of ``datasets/`` that the student bundle needs (splits, offline sample, checksums).
DATASET_PARTS = ("README.md", "cmp_facade_base.sha256", "splits", "sample")

NBGRADER_CONFIG = f'''"""nbgrader configuration of the FCN segmentation course (written by autograder/release.py)."""
c = get_config()  # noqa: F821
c.CourseDirectory.course_id = "fcn_segmentation_course"
c.ClearSolutions.code_stub = {{"python": {CODE_STUB!r}}}
c.ClearSolutions.text_stub = {ANSWER_STUB!r}
# nbgrader autograde executes whole notebooks, training cells included.
c.ExecutePreprocessor.timeout = 3600
'''

STUDENT_README = """# FCN semantic segmentation (CMP Facade)

## Set up (Python 3.11 or newer)

Check with `python3 --version`: older Pythons cannot install the kit ("requires a different
Python"). Create an environment once, then **activate it in every new terminal** before
`jupyter lab` or `python -m assignment_lib.submit`.

With conda:

    conda env create -f environment.yml
    conda activate fcn-kit

With pip, on a laptop without an NVIDIA GPU (CPU-only PyTorch: about 0.2 GB to download instead
of about 3 GB of CUDA libraries):

    python3 -m venv .venv
    source .venv/bin/activate                  # Windows: .venv\\Scripts\\activate
    pip install torch==2.14.1 torchvision==0.29.1 --index-url https://download.pytorch.org/whl/cpu
    pip install -e .

With pip, on a machine with an NVIDIA GPU: the same, minus the `pip install torch ...` line
(`pip install -e .` then fetches the CUDA build of torch).

Then get the data (once):

    python -m assignment_lib.download          # the CMP Facade base set into datasets/cmp_facade/

Without it the notebooks fall back to the 24-image sample in `datasets/sample/` and show a red
banner (and `submit` refuses such a run unless you pass `--allow-sample`); to use a copy of the
data set elsewhere, set `CMP_FACADE_ROOT` to the folder that holds `base/` and
`label_names.txt`. The ImageNet VGG-16 weights (528 MB) are downloaded into the torch hub cache
the first time the notebook needs them; to use a file you already have, set `VGG16_WEIGHTS` to
its path.

Optional: `python -m assignment_lib.tour` prints and plots a short tour of the data and metrics.

## How long it takes

The training sizes follow a budget picked for your machine (`assignment_lib.config.BUDGET`):
`gpu` when PyTorch sees a CUDA GPU, else `cpu` (sized to finish the FCN notebook within an hour
on a 2-core laptop). Each training cell prints its estimated time before it starts.
`ASSIGNMENT_BUDGET=gpu|cpu|smoke jupyter lab` overrides the choice; the measured times are in
the closing note of `fcn_segmentation.ipynb`.

## Work

Open `fcn_segmentation.ipynb` and `upsampling_and_iou.ipynb` with `jupyter lab`. Replace each
`raise NotImplementedError(...)` with your code and run the check cell below it: it prints a
`✓` line per passed check, or tells you what is wrong. Passing the checks does not guarantee full
marks: more tests are run after you hand in. Answer every inline question in its markdown cell
(replace `YOUR ANSWER HERE`). Do not delete, copy or move the graded cells.

`ASSIGNMENT_SMOKE=1 jupyter lab` makes every training cell tiny (to check that everything runs
before a long run); the final hand-in must be a normal run (`submit` refuses a smoke run unless
you pass `--allow-smoke`).

## Hand in

Run every notebook top to bottom (Kernel > Restart & Run All), save, then, with the environment
activated:

    python -m assignment_lib.submit --student YOUR_ID

It checks that all cells ran without errors, no graded cell is missing, every question is
answered, and the notebooks ran on the data set outside smoke mode; it names each problem by its
graded cell or by the code cell number Jupyter shows, and writes `YOUR_ID_fcn_segmentation.zip`
(with a manifest of what the notebooks ran with). Hand in that file.
"""


@dataclass
class ReleasePaths:
    """Where :func:`release` put things (all absolute)."""

    course: Path           #: the nbgrader course folder
    release: Path          #: course/release/fcn_segmentation (the release notebooks)
    bundle: Path           #: the student bundle folder
    zip: Path              #: the student bundle zip
    expected_cells: Path   #: bundle/assignment_lib/expected_cells.json

    def release_notebooks(self) -> list[Path]:
        return [self.release / n for n in NOTEBOOKS]


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


def make_course(course: Path, notebooks_dir: Path = REPO / "notebooks") -> Path:
    """Write the nbgrader course folder's config and source notebooks; return the source folder."""
    for name in NOTEBOOKS:
        if not (notebooks_dir / name).is_file():
            raise ReleaseError(f"source notebook {notebooks_dir / name} is missing")
    course.mkdir(parents=True, exist_ok=True)
    (course / "nbgrader_config.py").write_text(NBGRADER_CONFIG, encoding="utf-8")
    source = course / "source" / ASSIGNMENT
    if source.exists():
        shutil.rmtree(source)
    source.mkdir(parents=True)
    for name in NOTEBOOKS:
        shutil.copy2(notebooks_dir / name, source / name)
    return source


def generate_assignment(course: Path) -> Path:
    """Run ``nbgrader generate_assignment`` in ``course``; return the release folder.

    Raises:
        ReleaseError: with nbgrader's output if it fails.
    """
    cmd = [sys.executable, "-m", "nbgrader", "generate_assignment", ASSIGNMENT, "--force"]
    # nbgrader runs the `alembic` console script of its environment: put that on PATH.
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    proc = subprocess.run(cmd, check=False, cwd=course, capture_output=True, text=True, env=env)
    release = course / "release" / ASSIGNMENT
    if proc.returncode != 0 or not all((release / n).is_file() for n in NOTEBOOKS):
        raise ReleaseError(f"`{' '.join(cmd[1:])}` failed in {course} (exit {proc.returncode}):\n"
                           f"{proc.stdout}\n{proc.stderr}")
    return release


def make_bundle(release: Path, bundle: Path) -> Path:
    """Assemble the student bundle folder from the release notebooks; return the manifest path."""
    if bundle.exists():
        shutil.rmtree(bundle)
    bundle.mkdir(parents=True)
    for name in NOTEBOOKS:
        shutil.copy2(release / name, bundle / name)
    shutil.copytree(REPO / "assignment_lib", bundle / "assignment_lib", ignore=_ignore)
    expected = bundle / "assignment_lib" / "expected_cells.json"
    manifest = expected_cells_from_notebooks([release / n for n in NOTEBOOKS])
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
    (bundle / "README.md").write_text(STUDENT_README, encoding="utf-8")
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


def release(out: str | Path | None = None, notebooks_dir: str | Path | None = None) -> ReleasePaths:
    """Build the course folder, run nbgrader, and pack the student bundle under ``out``.

    Args:
        out: output folder (default ``<repo>/build``); ``out/course``, ``out/student`` and
            ``out/fcn_segmentation_student.zip`` are replaced.
        notebooks_dir: where the source notebooks are (default ``<repo>/notebooks``).

    Raises:
        ReleaseError: if a source file is missing or nbgrader fails.
    """
    out = Path(out or REPO / "build").resolve()
    course = out / "course"
    make_course(course, Path(notebooks_dir or REPO / "notebooks"))
    rel = generate_assignment(course)
    bundle = out / "student" / ASSIGNMENT
    expected = make_bundle(rel, bundle)
    zip_path = zip_folder(bundle, out / f"{ASSIGNMENT}_student.zip")
    return ReleasePaths(course=course, release=rel, bundle=bundle, zip=zip_path,
                        expected_cells=expected)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m autograder release",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=None, help="output folder (default: build)")
    args = parser.parse_args(argv)
    try:
        paths = release(args.out)
    except ReleaseError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"nbgrader course folder: {paths.course}")
    print(f"release notebooks:      {paths.release}")
    print(f"student bundle:         {paths.bundle}")
    print(f"student zip:            {paths.zip}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Gradescope's autograder package: ``python -m autograder gradescope [--assignment NAME] --out autograder.zip``.

Gradescope unpacks the zip into ``/autograder/source``, runs its ``setup.sh`` once on its Ubuntu
image, then, for every submission, ``run_autograder``, which must write
``/autograder/results/results.json``
(https://gradescope-autograders.readthedocs.io/en/latest/specs/). The zip holds:

* ``setup.sh``: bubblewrap and a Python >= 3.11 from apt, a venv with the pinned versions of
  ``requirements.txt``, and, when the CPU mIoU tier is on, the data and the VGG-16 weights
  (``autograder/templates/gradescope_setup.sh``; its steps are described there);
* ``run_autograder``: runs :mod:`autograder.gradescope_run` with only the packaged kit importable;
* ``requirements.txt``: every dependency of ``pyproject.toml`` pinned to the version installed
  where the package is built (the versions the kit was tested with);
* ``gradescope.json``: the :class:`GradescopeSettings` of this package;
* the kit: ``autograder/`` (hidden tests, rubric, thresholds, recipes), ``assignment_lib/``,
  ``notebooks/`` (the source notebooks: the reference solutions), ``datasets/`` (splits,
  checksums, the bundled sample; never a downloaded ``cmp_facade/``), ``pyproject.toml``, ``LICENSE``.

The hidden tests and the reference solutions travel only in this zip, which goes to Gradescope's
instructor side; the student bundle of ``release`` holds neither (``tests/test_release.py``).
Gradescope has no GPUs, so the GPU-tier tests are always reported "not run"; ``--miou cpu``
enables the CPU tier, whose scores (mIoU, probe accuracy) also go to Gradescope's leaderboard.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import re
import sys
import tomllib
import zipfile
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from autograder.assignment import AssignmentError, assignment_names, get_assignment

REPO = Path(__file__).resolve().parent.parent
TEMPLATES = Path(__file__).resolve().parent / "templates"
SETTINGS_FILE = "gradescope.json"
REQUIREMENTS_FILE = "requirements.txt"
#: What of the repository goes into the zip (folders are walked; see :func:`package_files`).
KIT_PATHS = ("autograder", "assignment_lib", "notebooks", "datasets", "pyproject.toml", "LICENSE")
#: Never packed: caches, and a full data set downloaded into the repository (setup.sh fetches it).
EXCLUDED = ("__pycache__", "datasets/cmp_facade")
MIOU_TIERS = ("none", "cpu")


@dataclass
class GradescopeSettings:
    """How the package grades; stored as ``gradescope.json`` in the zip.

    Attributes:
        assignment: the assignment the package grades (one of ``autograder/assignments/``; ``""``:
            the only one there is).
        miou: ``"none"`` or ``"cpu"`` (the opt-in CPU tier: about a minute more per submission,
            and a leaderboard entry). Gradescope has no GPUs, so ``"gpu"`` is refused.
        request_timeout: seconds per request to the sandboxed code; ``None``: the runner's default.
        submission_timeout: seconds for the whole submission; ``None``: ``grade``'s default.
            Keep it below the autograder timeout set on Gradescope.
    """

    assignment: str = ""
    miou: str = "none"
    request_timeout: float | None = None
    submission_timeout: float | None = None

    def __post_init__(self):
        if self.miou not in MIOU_TIERS:
            why = " (Gradescope has no GPUs)" if self.miou == "gpu" else ""
            raise ValueError(f"--miou must be one of {MIOU_TIERS} for Gradescope, got {self.miou!r}{why}")
        if not self.assignment:
            names = assignment_names()
            if len(names) != 1:
                raise ValueError(f"name the assignment to package (--assignment): one of {names}")
            self.assignment = names[0]
        try:
            get_assignment(self.assignment)
        except AssignmentError as err:
            raise ValueError(str(err)) from None
        for name in ("request_timeout", "submission_timeout"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"{name} must be > 0 seconds, got {value}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> GradescopeSettings:
        """From :meth:`to_dict`'s output; raises ``ValueError`` naming an unknown key."""
        known = {f.name for f in fields(cls)}
        if unknown := set(d) - known:
            raise ValueError(f"{SETTINGS_FILE}: unknown settings {sorted(unknown)}; known: {sorted(known)}")
        return cls(**d)


def _requirement_name(requirement: str) -> str:
    return re.split(r"[<>=!~\[; ]", requirement.strip(), maxsplit=1)[0]


def pinned_requirements(pyproject: Path = REPO / "pyproject.toml") -> str:
    """``requirements.txt`` text: each ``pyproject.toml`` dependency as ``name==installed version``.

    Raises:
        RuntimeError: a dependency is not installed here (then there is no tested version to pin).
    """
    deps = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]["dependencies"]
    lines = ["# Pinned by `python -m autograder gradescope` to the versions it was built with."]
    for req in deps:
        name = _requirement_name(req)
        try:
            lines.append(f"{name}=={importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            raise RuntimeError(f"{name} (from pyproject.toml) is not installed here, so there is no tested "
                               "version to pin; run `make setup` first") from None
    return "\n".join(lines) + "\n"


def package_files(repo: Path = REPO) -> list[tuple[Path, str]]:
    """``(file, name in the zip)`` for the kit's files, sorted (see :data:`KIT_PATHS`).

    Hidden files and :data:`EXCLUDED` paths are left out.
    """
    out = []
    for top in KIT_PATHS:
        path = repo / top
        if not path.exists():
            raise FileNotFoundError(f"{path}: part of the kit is missing; run from a full checkout")
        for f in sorted([path] if path.is_file() else path.rglob("*")):
            rel = f.relative_to(repo).as_posix()
            parts = rel.split("/")
            if not f.is_file() or any(p.startswith(".") for p in parts) or f.suffix == ".pyc":
                continue
            if any(x in parts or rel.startswith(x + "/") for x in EXCLUDED):
                continue
            out.append((f, rel))
    return out


def _executable(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))
    info.external_attr = 0o100755 << 16  # a regular file, rwxr-xr-x: Gradescope runs it directly
    info.compress_type = zipfile.ZIP_DEFLATED
    return info


def build_package(out: str | Path, settings: GradescopeSettings | None = None, repo: Path = REPO) -> Path:
    """Write Gradescope's ``autograder.zip`` to ``out`` (see the module docstring); returns its path.

    Raises:
        FileNotFoundError: a part of the kit is missing from ``repo``.
        RuntimeError: a dependency to pin is not installed.
    """
    settings = settings or GradescopeSettings()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    files = package_files(repo)
    requirements = pinned_requirements(repo / "pyproject.toml")
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(_executable("setup.sh"), (TEMPLATES / "gradescope_setup.sh").read_text(encoding="utf-8"))
        zf.writestr(_executable("run_autograder"),
                    (TEMPLATES / "gradescope_run_autograder").read_text(encoding="utf-8"))
        zf.writestr(REQUIREMENTS_FILE, requirements)
        zf.writestr(SETTINGS_FILE, json.dumps(settings.to_dict(), indent=2) + "\n")
        for path, name in files:
            zf.write(path, name)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m autograder gradescope",
                                description="Write Gradescope's autograder.zip (setup.sh, run_autograder, the kit).")
    p.add_argument("--out", required=True, help="the zip to write, e.g. build/autograder.zip")
    p.add_argument("--assignment", default="",
                   help="the assignment to package (default: the only one in autograder/assignments)")
    p.add_argument("--tier", "--miou", dest="miou", choices=MIOU_TIERS, default=MIOU_TIERS[0],
                   help="none (default) or cpu: the CPU trained-model tier, with a leaderboard entry "
                        "(no gpu: Gradescope has no GPUs); --miou is its first name")
    p.add_argument("--timeout", type=float, default=None, metavar="S",
                   help="seconds per request to the sandboxed code (default: the runner's)")
    p.add_argument("--submission-timeout", type=float, default=None, metavar="S",
                   help="seconds for a whole submission (default: grade's); keep it below Gradescope's timeout")
    args = p.parse_args(argv)
    try:
        settings = GradescopeSettings(assignment=args.assignment, miou=args.miou, request_timeout=args.timeout,
                                      submission_timeout=args.submission_timeout)
        path = build_package(args.out, settings)
    except (ValueError, FileNotFoundError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    with zipfile.ZipFile(path) as zf:
        n = len(zf.infolist())
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB, {n} files): upload it as the autograder of a "
          f"Gradescope programming assignment (settings: {json.dumps(settings.to_dict())})")
    return 0

"""One assignment's grader content, the part that decides grades: its ``assignment.toml``, hidden
tests, rubric, source notebooks, training recipes and thresholds. Content-addressed, so a result can
say which grader produced it and a remote worker can cache it.

A :class:`Bundle` names the six; :meth:`Bundle.digest` is a sha256 over their relative paths and
bytes. :meth:`Bundle.pack` makes a zip of them (laid out as ``assignment.toml``, ``hidden_tests/``,
``rubric.toml``, ``notebooks/``, ``recipes.toml``, ``thresholds.json``; the last two only where the
assignment trains models), and :func:`unpack_cached` turns that zip back into a folder on a worker,
once per digest (``<cache>/<digest>/``), verifying the digest before using it.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from autograder.assignment import RECIPES, TOML, Assignment, get_assignment

PACKAGE = Path(__file__).resolve().parent
REPO = PACKAGE.parent
#: Where workers cache unpacked bundles (override with ``$FCN_GRADER_CACHE``).
DEFAULT_CACHE = Path.home() / ".cache" / "fcn_grader" / "bundles"
#: The parts an assignment that trains no model does not have.
OPTIONAL = (RECIPES, "thresholds.json")


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*")
                  if p.is_file() and "__pycache__" not in p.parts and not p.name.startswith("."))


@dataclass(frozen=True)
class Bundle:
    """Paths of one assignment's grader content on this machine.

    Attributes:
        hidden_tests: folder of the hidden pytest tests (with their ``conftest.py``).
        rubric: the ``rubric.toml``.
        notebooks: folder of the source notebooks (reference solutions).
        thresholds: the calibrated ``thresholds.json`` (need not exist: an assignment that grades
            no trained model has none).
        assignment: the ``assignment.toml``.
        recipes: the ``recipes.toml`` of the models it trains (need not exist, like ``thresholds``).
    """

    hidden_tests: str
    rubric: str
    notebooks: str
    thresholds: str
    assignment: str
    recipes: str

    @classmethod
    def for_assignment(cls, name: str) -> Bundle:
        """The grader of assignment ``name`` shipped in this repository.

        Raises:
            autograder.assignment.AssignmentError: no such assignment.
        """
        return cls.of(get_assignment(name))

    @classmethod
    def of(cls, a: Assignment) -> Bundle:
        """The grader of the assignment ``a`` (e.g. loaded from a copy of the repository)."""
        return cls(str(a.hidden_tests), str(a.rubric), a.source_dir, str(a.thresholds), str(a.toml),
                   str(a.recipes))

    @classmethod
    def from_dir(cls, folder: str | os.PathLike) -> Bundle:
        """A bundle laid out in one folder, as :meth:`pack` writes it (e.g. a copy of the grader).

        Raises:
            FileNotFoundError: one of the parts is missing (named; ``recipes.toml`` and
                ``thresholds.json`` are optional).
        """
        f = Path(folder).resolve()
        b = cls(str(f / "hidden_tests"), str(f / "rubric.toml"), str(f / "notebooks"),
                str(f / "thresholds.json"), str(f / TOML), str(f / RECIPES))
        for name, path in b.members().items():
            if name not in OPTIONAL and not Path(path).exists():
                raise FileNotFoundError(f"grader bundle {f}: {path} is missing")
        return b

    def spec(self) -> Assignment:
        """The :class:`~autograder.assignment.Assignment` this bundle grades (its notebooks here)."""
        return Assignment.load(self.assignment, self.notebooks)

    def members(self) -> dict[str, Path]:
        """``{name in the bundle: path here}`` for the six parts."""
        return {TOML: Path(self.assignment), "hidden_tests": Path(self.hidden_tests),
                "rubric.toml": Path(self.rubric), "notebooks": Path(self.notebooks),
                RECIPES: Path(self.recipes), "thresholds.json": Path(self.thresholds)}

    def entries(self) -> list[tuple[str, Path]]:
        """``(relative name, file)`` for every file, sorted: what the digest and the zip hold."""
        out = []
        for name, path in self.members().items():
            if path.is_dir():
                out += [(f"{name}/{p.relative_to(path).as_posix()}", p) for p in _files(path)]
            elif path.is_file():
                out.append((name, path))
        return sorted(out)

    def digest(self) -> str:
        """sha256 (hex) over every file's relative name and bytes."""
        h = hashlib.sha256()
        for rel, path in self.entries():
            h.update(rel.encode() + b"\0" + path.read_bytes() + b"\0")
        return h.hexdigest()

    def pack(self) -> bytes:
        """A zip of the bundle (deterministic order; timestamps fixed)."""
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
            for rel, path in self.entries():
                zf.writestr(zipfile.ZipInfo(rel, date_time=(1980, 1, 1, 0, 0, 0)), path.read_bytes())
        return buf.getvalue()


def unpack_cached(data: bytes, digest: str, cache: str | os.PathLike | None = None) -> Bundle:
    """The bundle of ``digest`` on this machine, unpacking ``data`` (a :meth:`Bundle.pack` zip) once.

    Raises:
        ValueError: ``data`` does not hash to ``digest`` (a corrupted or substituted bundle).
    """
    root = Path(cache or os.environ.get("FCN_GRADER_CACHE") or DEFAULT_CACHE)
    dest = root / digest
    if (dest / ".complete").is_file():
        return Bundle.from_dir(dest)
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{digest[:12]}.", dir=root))
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            for name in zf.namelist():
                if name.startswith("/") or ".." in Path(name).parts:
                    raise ValueError(f"grader bundle entry {name!r} climbs out of its folder")
            zf.extractall(tmp)
        got = Bundle.from_dir(tmp).digest()
        if got != digest:
            raise ValueError(f"grader bundle digest mismatch: expected {digest}, got {got}")
        (tmp / ".complete").write_text(digest)
        try:
            tmp.rename(dest)
        except OSError:  # another job on this machine unpacked it first
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return Bundle.from_dir(dest)

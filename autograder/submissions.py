"""Find the submissions to grade, whatever shape they arrive in.

Accepted inputs (each path given to ``python -m autograder grade``):

* nbgrader's layout: ``submitted/<student>/<assignment>/*.ipynb`` (pass ``submitted/`` or the
  course folder that holds it);
* a folder of student folders: ``<dir>/<student>/*.ipynb``;
* one student's folder of loose notebooks: ``<student>/*.ipynb`` (student = folder name);
* zip files made by ``python -m assignment_lib.submit`` (a ``.zip`` or a folder of them): the
  student is the name in the zip's ``manifest.json`` (key ``student``) when there is one, else the
  zip's stem.

Zips are untrusted: :func:`safe_extract` refuses absolute paths, ``..`` components, links, more
than :data:`MAX_ZIP_ENTRIES` entries and more than :data:`MAX_ZIP_BYTES` uncompressed (counted
while reading, not taken from the header), and extracts only ``.ipynb`` files and the manifest.
A zip that breaks a rule still yields a :class:`Submission`, with ``error`` saying why, so that
the student gets a zero result with that message instead of silently vanishing.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import stat
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

#: The nbgrader assignment that this kit releases.
ASSIGNMENT = "fcn_segmentation"
#: Largest number of entries a submission zip may hold.
MAX_ZIP_ENTRIES = 200
#: Largest total uncompressed size of the files extracted from one zip (bytes).
MAX_ZIP_BYTES = 100 * 1024 * 1024
#: Names (case-insensitive) read as the zip's manifest.
MANIFEST_NAMES = ("manifest.json",)

_STUDENT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@+-]{0,127}$")


class SubmissionError(ValueError):
    """A submission path that cannot be read as any accepted layout (the message names it)."""


class UnsafeZipError(SubmissionError):
    """A zip that breaks a safety rule (path traversal, link, too many entries, too large)."""


@dataclass
class Submission:
    """One student's hand-in, ready to grade.

    Attributes:
        student: the student id (folder name, zip stem or manifest name); safe as a folder name.
        notebooks: ``{notebook stem: path to .ipynb}``, e.g. ``{"fcn_segmentation": Path(...)}``.
        source: the path it was found at (folder or zip).
        error: why it cannot be graded (bad zip, no notebooks), or ``None``.
    """

    student: str
    notebooks: dict[str, Path] = field(default_factory=dict)
    source: Path | None = None
    error: str | None = None

    def sha256(self) -> str:
        """sha256 over the notebooks' names and bytes (sorted by name); identifies this hand-in."""
        h = hashlib.sha256()
        for name in sorted(self.notebooks):
            h.update(name.encode() + b"\0")
            h.update(Path(self.notebooks[name]).read_bytes())
            h.update(b"\0")
        if self.error:
            h.update(b"error\0" + self.error.encode())
        return h.hexdigest()


def check_student_id(student: str, where: Path | str) -> str:
    """Return ``student`` if it is a safe folder name, else raise :class:`SubmissionError`."""
    if not _STUDENT_RE.match(student) or student in (".", ".."):
        raise SubmissionError(
            f"{where}: student id {student!r} is not usable as a folder name "
            "(letters, digits and . _ @ + - only, starting with a letter or digit)"
        )
    return student


def _notebooks_in(folder: Path) -> dict[str, Path]:
    return {
        p.stem: p
        for p in sorted(folder.glob("*.ipynb"))
        if p.is_file() and not p.name.startswith(".")
    }


def _member_problem(info: zipfile.ZipInfo) -> str | None:
    name = info.filename
    if "\\" in name:
        return f"entry {name!r} uses a backslash path"
    p = PurePosixPath(name)
    if p.is_absolute() or name.startswith("/") or re.match(r"^[A-Za-z]:", name):
        return f"entry {name!r} is an absolute path"
    if ".." in p.parts:
        return f"entry {name!r} climbs out of the folder ('..')"
    mode = info.external_attr >> 16
    if stat.S_ISLNK(mode):
        return f"entry {name!r} is a symbolic link"
    return None


def safe_extract(zip_path: Path, dest: Path) -> tuple[dict[str, Path], dict]:
    """Extract the notebooks (and manifest) of an untrusted zip into ``dest``.

    Only ``.ipynb`` files and ``manifest.json`` are written, flattened to their base names, in
    ``dest``. Returns ``({notebook stem: path}, manifest dict or {})``.

    Raises:
        UnsafeZipError: path traversal, absolute path, link, more than :data:`MAX_ZIP_ENTRIES`
            entries or more than :data:`MAX_ZIP_BYTES` uncompressed; nothing is kept then.
        SubmissionError: not a zip file, or two notebooks with the same name.
    """
    zip_path = Path(zip_path)
    try:
        zf = zipfile.ZipFile(zip_path)
    except (zipfile.BadZipFile, OSError) as e:
        raise SubmissionError(f"{zip_path}: not a readable zip file ({e})") from None
    with zf:
        infos = zf.infolist()
        if len(infos) > MAX_ZIP_ENTRIES:
            raise UnsafeZipError(
                f"{zip_path}: {len(infos)} entries, more than the {MAX_ZIP_ENTRIES} allowed; "
                "not extracted"
            )
        for info in infos:
            problem = _member_problem(info)
            if problem:
                raise UnsafeZipError(f"{zip_path}: {problem}; not extracted")
        wanted = [
            i for i in infos
            if not i.is_dir()
            and not PurePosixPath(i.filename).name.startswith(".")
            and "__MACOSX" not in PurePosixPath(i.filename).parts
            and (i.filename.endswith(".ipynb")
                 or PurePosixPath(i.filename).name.lower() in MANIFEST_NAMES)
        ]
        declared = sum(i.file_size for i in wanted)
        if declared > MAX_ZIP_BYTES:
            raise UnsafeZipError(
                f"{zip_path}: {declared} bytes uncompressed, more than the {MAX_ZIP_BYTES} "
                "allowed (zip bomb?); not extracted"
            )
        names = [PurePosixPath(i.filename).name for i in wanted]
        dupes = {n for n in names if names.count(n) > 1}
        if dupes:
            raise SubmissionError(f"{zip_path}: several files named {sorted(dupes)}")
        if dest.exists():
            shutil.rmtree(dest)
        dest.mkdir(parents=True)
        total = 0
        try:
            for info, name in zip(wanted, names):
                target = dest / name
                with zf.open(info) as src, open(target, "wb") as out:
                    while chunk := src.read(1 << 20):
                        total += len(chunk)
                        if total > MAX_ZIP_BYTES:  # the header lied about the size
                            raise UnsafeZipError(
                                f"{zip_path}: more than {MAX_ZIP_BYTES} bytes uncompressed "
                                "(zip bomb?); not extracted"
                            )
                        out.write(chunk)
        except BaseException:
            shutil.rmtree(dest, ignore_errors=True)
            raise
    manifest = {}
    for name in names:
        if name.lower() in MANIFEST_NAMES:
            try:
                manifest = json.loads((dest / name).read_text(encoding="utf-8"))
            except (ValueError, UnicodeDecodeError) as e:
                raise SubmissionError(f"{zip_path}: {name} is not valid JSON ({e})") from None
            if not isinstance(manifest, dict):
                raise SubmissionError(f"{zip_path}: {name} is not a JSON object")
    return _notebooks_in(dest), manifest


def _from_zip(zip_path: Path, work_dir: Path) -> Submission:
    stem = zip_path.stem
    fallback = stem if _STUDENT_RE.match(stem) else re.sub(r"[^A-Za-z0-9._@+-]", "_", stem) or "x"
    dest = work_dir / "unzipped" / fallback
    try:
        notebooks, manifest = safe_extract(zip_path, dest)
        student = str(manifest.get("student") or stem)
        check_student_id(student, zip_path)
    except SubmissionError as e:
        return Submission(student=fallback, source=zip_path, error=str(e))
    if student != fallback:
        final = work_dir / "unzipped" / student
        if final.exists():
            shutil.rmtree(final)
        dest.rename(final)
        notebooks = _notebooks_in(final)
    if not notebooks:
        return Submission(student, source=zip_path, error=f"{zip_path}: the zip holds no .ipynb notebook")
    return Submission(student, notebooks, source=zip_path)


def _is_nbgrader_submitted(folder: Path, assignment: str) -> bool:
    return any((d / assignment).is_dir() for d in folder.iterdir() if d.is_dir())


def _discover_one(path: Path, work_dir: Path, assignment: str) -> list[Submission]:
    if not path.exists():
        raise SubmissionError(f"{path}: no such file or folder")
    if path.is_file():
        if path.suffix.lower() == ".zip":
            return [_from_zip(path, work_dir)]
        raise SubmissionError(f"{path}: expected a folder or a .zip file, got a {path.suffix or 'plain'} file")
    if (path / "submitted").is_dir():  # an nbgrader course folder
        path = path / "submitted"
    if _notebooks_in(path):  # one student's loose notebooks
        return [Submission(check_student_id(path.name, path), _notebooks_in(path), source=path)]
    subs: list[Submission] = []
    if _is_nbgrader_submitted(path, assignment):
        for d in sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith(".")):
            folder = d / assignment
            nbs = _notebooks_in(folder) if folder.is_dir() else {}
            error = None if nbs else f"{d}: no notebooks in {assignment}/"
            subs.append(Submission(check_student_id(d.name, d), nbs, source=folder, error=error))
        return subs
    for entry in sorted(path.iterdir()):
        if entry.name.startswith("."):
            continue
        if entry.is_file() and entry.suffix.lower() == ".zip":
            subs.append(_from_zip(entry, work_dir))
        elif entry.is_dir():
            nbs = _notebooks_in(entry)
            if nbs:
                subs.append(Submission(check_student_id(entry.name, entry), nbs, source=entry))
    if not subs:
        raise SubmissionError(
            f"{path}: found no submissions (expected submitted/<student>/{assignment}/*.ipynb, "
            "<student>/*.ipynb folders, *.ipynb files or .zip files)"
        )
    return subs


def find_submissions(
    paths: list[str | Path], work_dir: str | Path, assignment: str = ASSIGNMENT
) -> list[Submission]:
    """Every submission under ``paths``, sorted by student id.

    Args:
        paths: folders or zip files in any of the accepted layouts (see the module docstring).
        work_dir: where zips are extracted (``work_dir/unzipped/<student>/``).
        assignment: the nbgrader assignment name, used in the ``submitted/`` layout.

    Raises:
        SubmissionError: a path that does not exist or holds no submission, an unusable student
            id, or the same student found twice (the message names both places).
    """
    work_dir = Path(work_dir)
    found: dict[str, Submission] = {}
    for raw in paths:
        for sub in _discover_one(Path(raw), work_dir, assignment):
            if sub.student in found:
                raise SubmissionError(
                    f"student {sub.student!r} submitted twice: {found[sub.student].source} and {sub.source}"
                )
            found[sub.student] = sub
    return [found[s] for s in sorted(found)]

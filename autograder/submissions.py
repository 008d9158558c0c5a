"""Find the submissions to grade, whatever shape they arrive in.

Accepted inputs (each path given to ``python -m autograder grade``):

* nbgrader's layout: ``submitted/<student>/<assignment>/*.ipynb`` (pass ``submitted/`` or the
  course folder that holds it);
* a folder of student folders: ``<dir>/<student>/*.ipynb``;
* one student's folder of loose notebooks: ``<student>/*.ipynb`` (student = folder name);
* zip files made by ``python -m assignment_lib.submit`` (a ``.zip`` or a folder of them): the
  student is the name in the zip's ``manifest.json`` (key ``student``) when there is one, else the
  zip's stem;
* LMS bulk downloads (:func:`autograder.lms.parse_lms_name`): Canvas files ``lastfirst[_LATE]_<user id>_<file
  id>_<name>`` (loose notebooks in one folder are grouped by student; zips too), Blackboard files
  ``<assignment>_<user>_attempt_<YYYY-MM-DD-HH-MM-SS>_<name>`` and Moodle folders
  ``<Full Name>_<id>_assignsubmission_file_``. The LMS's identity wins over a manifest's (the LMS
  authenticated the uploader; a differing manifest name is reported), and its suffixes (``-1``,
  `` (2)``) are stripped from notebook names.

Submission times (:attr:`Submission.submitted_at`), most trusted first: nbgrader's
``timestamp.txt``, a time in the LMS file name, the manifest's ``created`` (the student's clock),
the files' modification time (used only to order duplicates, never for lateness).

A student found more than once is graded once: the submission that ``keep`` picks (``latest``,
the default, or ``earliest`` by submission time; ``error`` stops as before); the kept one lists
the others in :attr:`Submission.replaced`, which every report shows.

Notebooks that are not UTF-8 (saved as latin-1 or cp1252 by another editor) are decoded with a
fallback, rewritten as UTF-8 in the work folder, and graded with a warning
(:func:`decode_notebook_bytes`).

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
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath

from autograder.lms import LmsName, parse_lms_name, slug, strip_copy_suffix
from autograder.results import atomic_write_text

#: Largest number of entries a submission zip may hold.
MAX_ZIP_ENTRIES = 200
#: Largest total uncompressed size of the files extracted from one zip (bytes).
MAX_ZIP_BYTES = 100 * 1024 * 1024
#: Names (case-insensitive) read as the zip's manifest.
MANIFEST_NAMES = ("manifest.json",)
#: How duplicate submissions of one student are resolved (``--keep``).
KEEP_RULES = ("latest", "earliest", "error")
#: nbgrader's submission time file, in ``submitted/<student>/<assignment>/``.
TIMESTAMP_FILE = "timestamp.txt"
#: Encodings tried, in order, for a notebook that is not UTF-8.
FALLBACK_ENCODINGS = ("cp1252", "latin-1")
#: Time sources, most trusted first (only the first three count for lateness).
TIME_SOURCES = ("nbgrader timestamp.txt", "LMS file name", "manifest created (the student's clock)",
                "file modification time")

_STUDENT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@+-]{0,127}$")


class SubmissionError(ValueError):
    """A submission path that cannot be read as any accepted layout (the message names it)."""


class UnsafeZipError(SubmissionError):
    """A zip that breaks a safety rule (path traversal, link, too many entries, too large)."""


@dataclass
class Submission:
    """One student's hand-in, ready to grade.

    Attributes:
        student: the student id (folder name, zip stem, manifest name or LMS name); safe as a folder name.
        notebooks: ``{notebook stem: path to .ipynb}``, e.g. ``{"fcn_segmentation": Path(...)}``.
        source: the path it was found at (folder or zip).
        error: why it cannot be graded (bad zip, no notebooks), or ``None``.
        submitted_at: when it was handed in (ISO 8601, UTC), or ``None`` when unknown.
        time_source: where ``submitted_at`` comes from (one of :data:`TIME_SOURCES`), or ``""``.
        manifest: the zip's ``manifest.json`` (``{}`` when there is none).
        lms: what an LMS file name said: ``{"system", "user_id", "late"}`` (``{}`` if none).
        warnings: intake messages for the feedback (encoding fallback, manifest name differs...).
        replaced: the other submissions of this student that were not graded, each
            ``{"source", "submitted_at", "time_source"}``, and ``keep``, the rule that chose.
        late: the late policy's verdict (:meth:`autograder.policy.LatePolicy.assess`), or ``{}``.
    """

    student: str
    notebooks: dict[str, Path] = field(default_factory=dict)
    source: Path | None = None
    error: str | None = None
    submitted_at: str | None = None
    time_source: str = ""
    manifest: dict = field(default_factory=dict)
    lms: dict = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    replaced: list[dict] = field(default_factory=list)
    keep: str = ""
    late: dict = field(default_factory=dict)

    def intake(self) -> dict:
        """What the reports show about this hand-in (``SubmissionResult.intake``), plain JSON data:
        ``source``, ``submitted_at``, ``time_source``, ``manifest`` (its ``created``, ``forced``,
        ``problems`` and ``run`` when present), ``lms``, ``warnings``, ``replaced``, ``keep``, ``late``."""
        facts = {k: self.manifest[k] for k in ("created", "forced", "problems", "run")
                 if k in self.manifest}
        return {"source": str(self.source) if self.source else "", "submitted_at": self.submitted_at,
                "time_source": self.time_source, "manifest": facts, "lms": dict(self.lms),
                "warnings": list(self.warnings), "replaced": list(self.replaced), "keep": self.keep,
                "late": dict(self.late)}

    def sha256(self) -> str:
        """sha256 over the notebooks' names and bytes (sorted by name) and the intake facts
        (time, lateness, warnings); identifies this hand-in, so a new extension regrades it."""
        h = hashlib.sha256()
        for name in sorted(self.notebooks):
            h.update(name.encode() + b"\0")
            h.update(Path(self.notebooks[name]).read_bytes())
            h.update(b"\0")
        if self.error:
            h.update(b"error\0" + self.error.encode())
        facts = self.intake()
        facts = {k: facts[k] for k in ("submitted_at", "time_source", "manifest", "lms", "warnings", "late")}
        if any(facts.values()):  # none: the same hash as before intake facts existed
            h.update(json.dumps(facts, sort_keys=True, default=str).encode())
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


# ----------------------------------------------------------------------------- times, encodings

def read_timestamp(folder: Path) -> str | None:
    """nbgrader's ``timestamp.txt`` in ``folder`` as ISO 8601 UTC, or ``None`` (absent or unreadable)."""
    path = Path(folder) / TIMESTAMP_FILE
    if not path.is_file():
        return None
    from autograder.policy import PolicyError, iso, parse_time

    try:
        return iso(parse_time(path.read_text(encoding="utf-8", errors="replace"), str(path)))
    except PolicyError:
        return None


def _manifest_time(manifest: dict) -> str | None:
    from autograder.policy import PolicyError, iso, parse_time

    created = manifest.get("created")
    if not isinstance(created, str) or not created.strip():
        return None
    try:
        return iso(parse_time(created, "manifest created"))
    except PolicyError:
        return None


def _mtime(paths) -> str | None:
    times = [Path(p).stat().st_mtime for p in paths if Path(p).exists()]
    return datetime.fromtimestamp(max(times), UTC).isoformat(timespec="seconds") if times else None


def decode_notebook_bytes(data: bytes) -> tuple[str, str]:
    """Text of a notebook file and the encoding that read it: UTF-8 (with or without a BOM),
    else the first of :data:`FALLBACK_ENCODINGS` that decodes it (latin-1 always does)."""
    try:
        return data.decode("utf-8-sig"), "utf-8"
    except UnicodeDecodeError:
        pass
    for enc in FALLBACK_ENCODINGS:
        try:
            return data.decode(enc), enc
        except UnicodeDecodeError:
            continue
    raise AssertionError("latin-1 decodes every byte string")  # pragma: no cover


def _transcode(sub: Submission, work_dir: Path) -> None:
    """Rewrite ``sub``'s non-UTF-8 notebooks as UTF-8 copies under ``work_dir`` and warn."""
    for name, path in list(sub.notebooks.items()):
        try:
            data = Path(path).read_bytes()
        except OSError:
            continue  # reported by the runner as a missing/unreadable notebook
        text, enc = decode_notebook_bytes(data)
        if enc == "utf-8":
            continue
        dest = work_dir / "transcoded" / sub.student / f"{name}.ipynb"
        atomic_write_text(dest, text)
        sub.notebooks[name] = dest
        sub.warnings.append(
            f"{name}.ipynb is not UTF-8: it was read as {enc} and graded. Accented letters may show "
            "wrongly; save notebooks from Jupyter (which writes UTF-8) next time.")


# ----------------------------------------------------------------------------- layouts

def _from_zip(zip_path: Path, work_dir: Path) -> Submission:
    stem = zip_path.stem
    lms = parse_lms_name(zip_path.name)
    fallback = lms.student if lms else slug(stem) if not _STUDENT_RE.match(stem) else stem
    dest = work_dir / "unzipped" / fallback
    try:
        notebooks, manifest = safe_extract(zip_path, dest)
        claimed = str(manifest.get("student") or "")
        student = lms.student if lms else (claimed or stem)
        check_student_id(student, zip_path)
    except SubmissionError as e:
        return Submission(student=fallback, source=zip_path, error=str(e), **_lms_fields(lms))
    if student != fallback:
        final = work_dir / "unzipped" / student
        if final.exists():
            shutil.rmtree(final)
        dest.rename(final)
        notebooks = _notebooks_in(final)
    sub = Submission(student, notebooks, source=zip_path, manifest=manifest, **_lms_fields(lms))
    if lms and claimed and claimed != student:
        sub.warnings.append(f"the zip's manifest names student {claimed!r}, but {lms.system} says "
                            f"{student!r}: graded as {student!r}.")
    if sub.submitted_at is None and (t := _manifest_time(manifest)):
        sub.submitted_at, sub.time_source = t, TIME_SOURCES[2]
    if not notebooks:
        sub.error = f"{zip_path}: the zip holds no .ipynb notebook"
    return sub


def _lms_fields(lms: LmsName | None) -> dict:
    if lms is None:
        return {}
    out = {"lms": {"system": lms.system, "user_id": lms.user_id, "late": lms.late}}
    if lms.submitted_at:
        out.update(submitted_at=lms.submitted_at, time_source=TIME_SOURCES[1])
    return out


def _folder_submission(folder: Path, student: str | None = None, source: Path | None = None) -> Submission:
    """One student's folder of notebooks (``student`` defaults to the folder name, or the Moodle name)."""
    lms = parse_lms_name(folder.name, folder=True) if student is None else None
    student = student or (lms.student if lms else folder.name)
    sub = Submission(check_student_id(student, folder), _notebooks_in(folder), source=source or folder,
                     **_lms_fields(lms))
    if t := read_timestamp(folder):
        sub.submitted_at, sub.time_source = t, TIME_SOURCES[0]
    return sub


def _lms_loose_files(folder: Path) -> list[Submission] | None:
    """Loose LMS-named notebooks in one folder grouped into one submission per student (and per
    Blackboard attempt), or ``None`` when no file has an LMS name."""
    groups: dict[tuple, Submission] = {}
    order: dict[tuple, int] = {}
    found = False
    for p in sorted(folder.glob("*.ipynb")):
        if not p.is_file() or p.name.startswith("."):
            continue
        lms = parse_lms_name(p.name)
        if lms is None:
            continue
        found = True
        key = (lms.student, lms.user_id, lms.submitted_at)
        sub = groups.setdefault(key, Submission(lms.student, source=folder, **_lms_fields(lms)))
        sub.lms["late"] = sub.lms["late"] or lms.late
        name = PurePosixPath(lms.original).stem or strip_copy_suffix(p.stem)
        if name in sub.notebooks and order[(*key, name)] > lms.order:
            continue  # an earlier upload of the same notebook
        if name in sub.notebooks:
            sub.warnings.append(f"two files named {name}.ipynb; graded the later upload ({p.name})")
        sub.notebooks[name] = p
        order[(*key, name)] = lms.order
    return list(groups.values()) if found else None


def _nbgrader_assignment(folder: Path, assignment: str | None) -> str | None:
    """The assignment of an nbgrader ``submitted/<student>/<assignment>/`` layout in ``folder``
    (``assignment``, or the one known assignment found there), or ``None`` for another layout.

    Raises:
        SubmissionError: the folder holds several known assignments and none was named.
    """
    from autograder.assignment import assignment_names

    names = [assignment] if assignment else assignment_names()
    found = sorted({n for d in folder.iterdir() if d.is_dir() for n in names if (d / n).is_dir()})
    if len(found) > 1:
        raise SubmissionError(f"{folder}: submissions of several assignments ({', '.join(found)}): "
                              "pass --assignment NAME")
    return found[0] if found else None


def _discover_one(path: Path, work_dir: Path, assignment: str | None) -> list[Submission]:
    if not path.exists():
        raise SubmissionError(f"{path}: no such file or folder")
    if path.is_file():
        if path.suffix.lower() == ".zip":
            return [_from_zip(path, work_dir)]
        raise SubmissionError(f"{path}: expected a folder or a .zip file, got a {path.suffix or 'plain'} file")
    if (path / "submitted").is_dir():  # an nbgrader course folder
        path = path / "submitted"
    lms_subs = _lms_loose_files(path)
    if lms_subs is not None:  # an LMS bulk download: loose files of many students
        return lms_subs + [_from_zip(z, work_dir) for z in sorted(path.glob("*.zip")) if z.is_file()]
    if _notebooks_in(path):  # one student's loose notebooks
        return [_folder_submission(path)]
    subs: list[Submission] = []
    nbgrader_name = _nbgrader_assignment(path, assignment)
    if nbgrader_name is not None:
        assignment = nbgrader_name
        for d in sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith(".")):
            folder = d / assignment
            if folder.is_dir():
                sub = _folder_submission(folder, student=d.name)
            else:
                sub = Submission(check_student_id(d.name, d), source=folder)
            if not sub.notebooks:
                sub.error = f"{d}: no notebooks in {assignment}/"
            subs.append(sub)
        return subs
    for entry in sorted(path.iterdir()):
        if entry.name.startswith("."):
            continue
        if entry.is_file() and entry.suffix.lower() == ".zip":
            subs.append(_from_zip(entry, work_dir))
        elif entry.is_dir() and _notebooks_in(entry):
            subs.append(_folder_submission(entry))
    if not subs:
        raise SubmissionError(
            f"{path}: found no submissions (expected submitted/<student>/{assignment or '<assignment>'}/*.ipynb, "
            "<student>/*.ipynb folders, *.ipynb files, .zip files or an LMS bulk download)"
        )
    return subs


# ----------------------------------------------------------------------------- duplicates

def _split_lms_namesakes(subs: list[Submission]) -> None:
    """Two LMS users with the same derived name (e.g. two ``smithjohn``) become ``name_userid``."""
    users: dict[str, set[str]] = {}
    for sub in subs:
        if sub.lms.get("user_id"):
            users.setdefault(sub.student, set()).add(sub.lms["user_id"])
    for sub in subs:
        if len(users.get(sub.student, ())) > 1:
            sub.student = check_student_id(f"{sub.student}_{sub.lms['user_id']}", sub.source or sub.student)


def _time_key(sub: Submission) -> str:
    if sub.submitted_at is None:
        sub.submitted_at = _mtime(sub.notebooks.values()) if sub.notebooks else None
        sub.time_source = TIME_SOURCES[3] if sub.submitted_at else ""
    return sub.submitted_at or ""


def select_submissions(found: list[Submission], keep: str = "latest") -> list[Submission]:
    """One submission per student, sorted by student id.

    ``keep``: ``"latest"`` or ``"earliest"`` by :attr:`Submission.submitted_at` (without one, the
    notebooks' modification time; an unknown time counts as the earliest; equal times: the one
    found last wins for ``latest``, first for ``earliest``), or ``"error"``. The
    kept submission lists the others in ``replaced`` and the rule in ``keep``.

    Raises:
        SubmissionError: ``keep="error"`` and a student appears twice (names both places), or
            an unknown rule.
    """
    if keep not in KEEP_RULES:
        raise SubmissionError(f"--keep must be one of {KEEP_RULES}, got {keep!r}")
    _split_lms_namesakes(found)
    by_student: dict[str, list[Submission]] = {}
    for sub in found:
        if keep == "error" and sub.student in by_student:
            raise SubmissionError(
                f"student {sub.student!r} submitted twice: {by_student[sub.student][0].source} and "
                f"{sub.source} (use --keep latest or --keep earliest to grade one of them)")
        by_student.setdefault(sub.student, []).append(sub)
    out = []
    for student in sorted(by_student):
        group = by_student[student]
        if len(group) > 1:
            ranked = sorted(enumerate(group), key=lambda iv: (_time_key(iv[1]), iv[0]))
            chosen = ranked[-1][1] if keep == "latest" else ranked[0][1]
            chosen.keep = keep
            chosen.replaced = [{"source": str(s.source), "submitted_at": s.submitted_at,
                                "time_source": s.time_source} for s in group if s is not chosen]
            group = [chosen]
        out.append(group[0])
    return out


def find_submissions(
    paths: list[str | Path], work_dir: str | Path, assignment: str | None = None, keep: str = "latest"
) -> list[Submission]:
    """Every submission under ``paths``, one per student, sorted by student id.

    Args:
        paths: folders or zip files in any of the accepted layouts (see the module docstring).
        work_dir: where zips are extracted (``work_dir/unzipped/<student>/``) and non-UTF-8
            notebooks rewritten (``work_dir/transcoded/<student>/``).
        assignment: the nbgrader assignment name, used in the ``submitted/`` layout (``None``: the
            one known assignment found there).
        keep: which of a student's several submissions is graded (:func:`select_submissions`).

    Raises:
        SubmissionError: a path that does not exist or holds no submission, an unusable student
            id, or (``keep="error"`` only) the same student found twice.
    """
    work_dir = Path(work_dir)
    found: list[Submission] = []
    for raw in paths:
        found += _discover_one(Path(raw), work_dir, assignment)
    subs = select_submissions(found, keep)
    for sub in subs:
        _transcode(sub, work_dir)
    return subs


def duplicates_report(subs: list[Submission]) -> list[str]:
    """One line per student who handed in more than once: which one was graded and why."""
    lines = []
    for sub in subs:
        if sub.replaced:
            others = "; ".join(f"{r['source']} ({r['submitted_at'] or 'time unknown'})" for r in sub.replaced)
            lines.append(f"{sub.student}: graded {sub.source} ({sub.submitted_at or 'time unknown'}, "
                         f"from {sub.time_source or 'nowhere'}; rule: keep {sub.keep}); not graded: {others}")
    return lines

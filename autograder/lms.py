"""LMS bulk-download names: who handed in, whether the LMS marked it late, when.

* Canvas files: ``lastfirst[_LATE]_<user id>_<file id>_<uploaded name>`` (Canvas appends ``-1``,
  ``-2`` to a second upload of the same name);
* Blackboard files: ``<assignment>_<user>_attempt_<YYYY-MM-DD-HH-MM-SS>[_<uploaded name>]``
  (the time is read as UTC);
* Moodle folders: ``<Full Name>_<id>_assignsubmission_file_``.

nbgrader's ``zip_collect`` does the same with a configurable regular expression
(``FileNameCollectorPlugin.named_regexp``); these are the three common ones, built in.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import PurePosixPath

_CANVAS_RE = re.compile(r"^(?P<name>[^_]+?)(?P<late>_LATE)?_(?P<user>\d+)_(?P<file_id>\d+)_(?P<file>.+)$")
_BLACKBOARD_RE = re.compile(r"^(?P<assignment>.+?)_(?P<name>[^_]+)_attempt_"
                            r"(?P<time>\d{4}-\d{2}-\d{2}-\d{2}-\d{2}-\d{2})(?:_(?P<file>.+))?$")
_MOODLE_RE = re.compile(r"^(?P<name>.+)_(?P<user>\d+)_assignsubmission_(?:file|onlinetext)_?$")
_COPY_SUFFIX_RE = re.compile(r"(?:-\d+| \(\d+\))$")


@dataclass(frozen=True)
class LmsName:
    """What an LMS bulk-download file or folder name says.

    Attributes:
        system: ``"canvas"``, ``"blackboard"`` or ``"moodle"``.
        student: the student id derived from it (safe as a folder name).
        user_id: the LMS's numeric id when the name has one, else ``""``.
        late: the LMS marked it late (Canvas ``_LATE``).
        submitted_at: the time in the name (Blackboard, read as UTC), ISO 8601, or ``None``.
        original: the file name the student uploaded, without the LMS's copy suffix (``-1``,
            `` (2)``), e.g. ``fcn_segmentation.ipynb``; ``""`` for a folder.
        order: a number that grows with later uploads (Canvas file id), for ties.
    """

    system: str
    student: str
    user_id: str = ""
    late: bool = False
    submitted_at: str | None = None
    original: str = ""
    order: int = 0


def slug(text: str) -> str:
    """``text`` made usable as a student id: runs of other characters become ``_``."""
    out = re.sub(r"[^A-Za-z0-9._@+-]+", "_", text).strip("._@+-")
    return out[:128] or "x"


def strip_copy_suffix(stem: str) -> str:
    """``fcn_segmentation-2`` or ``fcn_segmentation (1)`` -> ``fcn_segmentation`` (LMS and browser
    suffixes for a second file of the same name)."""
    return _COPY_SUFFIX_RE.sub("", stem)


def parse_lms_name(name: str, folder: bool = False) -> LmsName | None:
    """Read a Canvas, Blackboard (file names) or Moodle (folder names) bulk-download name.

    Examples: ``doecarol_LATE_222_333_fcn_segmentation-1.ipynb`` -> Canvas, student ``doecarol``,
    user 222, late; ``HW3_jdoe_attempt_2026-12-01-23-59-59_fcn_segmentation.ipynb`` -> Blackboard,
    student ``jdoe``, time 2026-12-01T23:59:59+00:00; folder ``Carol Doe_4411_assignsubmission_file_``
    -> Moodle, student ``Carol_Doe``. Returns ``None`` for any other name.
    """
    if folder:
        m = _MOODLE_RE.match(name)
        return LmsName("moodle", slug(m["name"]), user_id=m["user"]) if m else None
    p = PurePosixPath(name)
    stem, suffix = p.stem, p.suffix
    m = _CANVAS_RE.match(stem)
    if m:
        return LmsName("canvas", slug(m["name"]), user_id=m["user"], late=bool(m["late"]),
                       original=strip_copy_suffix(m["file"]) + suffix, order=int(m["file_id"]))
    m = _BLACKBOARD_RE.match(stem)
    if m:
        t = datetime.strptime(m["time"], "%Y-%m-%d-%H-%M-%S").replace(tzinfo=UTC)
        return LmsName("blackboard", slug(m["name"]), late=False,
                       submitted_at=t.isoformat(timespec="seconds"),
                       original=strip_copy_suffix(m["file"] or "") + (suffix if m["file"] else ""))
    return None

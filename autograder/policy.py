"""The course's late policy: a due date, per-student extensions, a penalty per day or hour, a cap.

One :class:`LatePolicy` per grading run (``asdict`` / :meth:`LatePolicy.from_dict`). It is read
from a TOML file (``--late-policy FILE``) and/or the ``grade`` flags (``--due``, ``--late-penalty``,
``--late-per``, ``--late-cap``, ``--extensions``)::

    due = "2026-12-01T23:59:00+01:00"   # ISO 8601; a time without a zone is read as UTC
    per = "day"                         # "day" or "hour": the penalty is per started unit
    penalty = 0.10                      # fraction lost per unit late (0.10 = 10 %)
    cap = 0.50                          # at most this fraction is lost
    grace_minutes = 5                   # lateness up to this is forgiven
    basis = "score"                     # "score": of the points earned; "max": of the points possible

    [extensions]                        # per student: a new due date, or extra hours
    alice = "2026-12-03T23:59:00+01:00"
    bob = 48

Extensions may also come from a CSV file with a ``student`` column and a ``due`` (ISO) or
``hours`` column. :meth:`LatePolicy.assess` turns a submission time into the facts every export
shows (``SubmissionResult.intake["late"]``), and :func:`penalty_points` into points.

Submission times and where they come from are found by :mod:`autograder.submissions`; a
submission with no known time is never penalised, and says so.
"""

from __future__ import annotations

import csv
import math
import tomllib
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime, timedelta
from pathlib import Path

UNITS = {"day": timedelta(days=1), "hour": timedelta(hours=1)}
BASES = ("score", "max")


class PolicyError(ValueError):
    """A late policy or extensions file that cannot be used (the message names the entry)."""


def parse_time(text: str | datetime, where: str = "time") -> datetime:
    """A timezone-aware UTC datetime from ISO 8601 text (or nbgrader's ``2026-11-30 12:00:00 UTC``).

    A time without a zone is read as UTC. Raises :class:`PolicyError` naming ``where``.
    """
    if isinstance(text, datetime):
        t = text
    else:
        from dateutil import parser

        try:
            t = parser.parse(str(text).strip())
        except (ValueError, OverflowError) as e:
            raise PolicyError(f"{where}: cannot read {text!r} as a date and time ({e}); "
                              "write it as ISO 8601, e.g. 2026-12-01T23:59:00+01:00") from None
    return (t if t.tzinfo else t.replace(tzinfo=UTC)).astimezone(UTC)


def iso(t: datetime | None) -> str | None:
    """``t`` as ISO 8601 text in UTC (seconds), or ``None``."""
    return None if t is None else t.astimezone(UTC).isoformat(timespec="seconds")


@dataclass
class LatePolicy:
    """The late policy of one grading run (see the module docstring).

    Attributes:
        due: the due date, ISO 8601 text, or ``None`` for no late policy (nothing is late).
        per: ``"day"`` or ``"hour"``: the penalty counts started units of lateness.
        penalty: fraction of the points lost per unit, in [0, 1].
        cap: largest fraction lost, in [0, 1].
        grace_minutes: lateness up to this many minutes counts as on time.
        basis: ``"score"`` (a fraction of the points earned) or ``"max"`` (of the points possible;
            never below 0).
        extensions: ``{student: new due date (ISO text)}``.
    """

    due: str | None = None
    per: str = "day"
    penalty: float = 0.0
    cap: float = 1.0
    grace_minutes: float = 0.0
    basis: str = "score"
    extensions: dict[str, str] = field(default_factory=dict)

    def __post_init__(self):
        if self.per not in UNITS:
            raise PolicyError(f"late policy: per must be one of {sorted(UNITS)}, got {self.per!r}")
        if self.basis not in BASES:
            raise PolicyError(f"late policy: basis must be one of {BASES}, got {self.basis!r}")
        for name in ("penalty", "cap"):
            value = float(getattr(self, name))
            if not 0 <= value <= 1:
                raise PolicyError(f"late policy: {name} is a fraction in [0, 1] (0.1 = 10 %), got {value}")
            setattr(self, name, value)
        if self.grace_minutes < 0:
            raise PolicyError(f"late policy: grace_minutes must be >= 0, got {self.grace_minutes}")
        if self.due is not None:
            self.due = iso(parse_time(self.due, "late policy: due"))
        self.extensions = {str(s): iso(parse_time(d, f"extension of {s!r}"))
                           for s, d in self.extensions.items()}

    @classmethod
    def from_dict(cls, d: dict) -> LatePolicy:
        """From :func:`dataclasses.asdict` output or a TOML table; unknown keys raise."""
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise PolicyError(f"late policy: unknown key(s) {sorted(unknown)}; known: {sorted(known)}")
        d = dict(d)
        if "extensions" in d:
            d["extensions"] = _extension_dates(d["extensions"], d.get("due"), "late policy [extensions]")
        return cls(**d)

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def active(self) -> bool:
        """True when there is a due date (otherwise nothing is late)."""
        return self.due is not None

    def due_for(self, student: str) -> datetime | None:
        """The due date that applies to ``student`` (their extension, else the course's)."""
        if student in self.extensions:
            return parse_time(self.extensions[student])
        return parse_time(self.due) if self.due else None

    def assess(self, student: str, submitted_at: datetime | str | None, time_source: str = "",
               lms_late: bool = False) -> dict:
        """The late facts of one submission, as plain JSON data.

        Returns ``{"policy": str, "due": iso|None, "extension": bool, "submitted_at": iso|None,
        "time_source": str, "basis": str, "per": str, "late": bool, "late_by_hours": float, "units": int, "fraction": float,
        "note": str}``; ``fraction`` is the share of points lost (0 when on time, when there is
        no due date, or when the submission time is unknown).
        """
        due = self.due_for(student)
        at = parse_time(submitted_at) if submitted_at is not None else None
        out = {"policy": self.describe(), "due": iso(due), "extension": student in self.extensions,
               "submitted_at": iso(at), "time_source": time_source, "basis": self.basis, "per": self.per, "late": False,
               "late_by_hours": 0.0, "units": 0, "fraction": 0.0, "note": ""}
        if due is None:
            if lms_late:
                out.update(late=True, note="marked late by the LMS; no due date is configured here, "
                                           "so no penalty was applied")
            return out
        if at is None:
            out["note"] = ("submission time unknown: no late penalty applied"
                           + (" (the LMS marked it late)" if lms_late else ""))
            out["late"] = lms_late
            return out
        late_by = at - due
        if late_by <= timedelta(minutes=self.grace_minutes):
            return out
        units = math.ceil(late_by / UNITS[self.per])
        fraction = min(self.cap, units * self.penalty)
        out.update(late=True, late_by_hours=round(late_by.total_seconds() / 3600, 2), units=units,
                   fraction=round(fraction, 6),
                   note=f"{units} {self.per}(s) late: {fraction:.0%} of the "
                        f"{'points earned' if self.basis == 'score' else 'points possible'} deducted")
        return out

    def describe(self) -> str:
        """One line for people, e.g. ``due 2026-12-01T22:59:00+00:00; 10% per day late, at most 50%``."""
        if not self.active:
            return "no due date configured"
        text = f"due {self.due}; {self.penalty:.0%} per {self.per} late (each started {self.per}), at most {self.cap:.0%}"
        if self.grace_minutes:
            text += f", {self.grace_minutes:g} min grace"
        text += ", of the points earned" if self.basis == "score" else ", of the points possible"
        if self.extensions:
            text += f"; {len(self.extensions)} extension(s)"
        return text


def penalty_points(late: dict | None, score: float, max_score: float, basis: str | None = None) -> float:
    """Points deducted for lateness: ``fraction`` of ``score`` (basis "score") or of ``max_score``
    (basis "max", never more than ``score``). ``late`` is :meth:`LatePolicy.assess`'s dict."""
    if not late or not late.get("fraction"):
        return 0.0
    basis = basis or late.get("basis", "score")
    base = score if basis == "score" else max_score
    return round(min(score, late["fraction"] * base), 4)


def _extension_dates(raw: dict, due: str | None, where: str) -> dict[str, str]:
    """``{student: ISO due}`` from values that are dates or numbers of extra hours."""
    out = {}
    for student, value in raw.items():
        if isinstance(value, int | float) and not isinstance(value, bool):
            if due is None:
                raise PolicyError(f"{where}: {student!r} gets {value} extra hours, but there is no "
                                  "due date to add them to (set due)")
            out[str(student)] = iso(parse_time(due) + timedelta(hours=float(value)))
        else:
            out[str(student)] = iso(parse_time(value, f"{where}: {student!r}"))
    return out


def load_extensions(path: str | Path, due: str | None) -> dict[str, str]:
    """Per-student extensions from a CSV (``student`` + ``due`` or ``hours`` columns) or a TOML
    file (an ``[extensions]`` table or top-level ``student = date-or-hours`` pairs).

    Raises:
        PolicyError: unreadable file, missing columns, a bad date, hours without a due date.
    """
    path = Path(path)
    if not path.is_file():
        raise PolicyError(f"{path}: no such extensions file")
    if path.suffix.lower() == ".toml":
        data = tomllib.loads(path.read_text(encoding="utf-8"))
        return _extension_dates(data.get("extensions", data), due, str(path))
    with path.open(newline="", encoding="utf-8-sig") as f:
        rows = list(csv.DictReader(f))
    raw = {}
    for i, row in enumerate(rows, start=2):
        student = (row.get("student") or "").strip()
        if not student:
            raise PolicyError(f"{path}, line {i}: needs a 'student' column with a value")
        if (row.get("due") or "").strip():
            raw[student] = row["due"].strip()
        elif (row.get("hours") or "").strip():
            try:
                raw[student] = float(row["hours"])
            except ValueError:
                raise PolicyError(f"{path}, line {i}: hours {row['hours']!r} is not a number") from None
        else:
            raise PolicyError(f"{path}, line {i}: give a 'due' date or extra 'hours' for {student!r}")
    return _extension_dates(raw, due, str(path))


def load_policy(path: str | Path | None = None, *, overrides: dict | None = None,
                extensions: str | Path | None = None) -> LatePolicy:
    """The run's :class:`LatePolicy`: the TOML file ``path`` (if any), then ``overrides`` (flags
    that were given, ``None`` values skipped), then the ``extensions`` file (added to the file's)."""
    d: dict = {}
    if path is not None:
        p = Path(path)
        try:
            d = tomllib.loads(p.read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as e:
            raise PolicyError(f"{p}: cannot read the late policy ({e})") from None
        d = d.get("late_policy", d)
    d.update({k: v for k, v in (overrides or {}).items() if v is not None})
    policy = LatePolicy.from_dict(d)
    if extensions is not None:
        policy.extensions.update(load_extensions(extensions, policy.due))
    return policy

"""A result's fingerprint: what it was graded from, so that a rerun regrades exactly what changed.

sha256 over the submission's sha256, the grader bundle's digest (hidden tests, rubric, source
notebooks, thresholds: the thresholds record the calibration data's checksum), the kit version and
the grading settings but those that cannot change a grade (:data:`NOT_GRADING`), and the injected
runner (the project's tests).
"""

from __future__ import annotations

import hashlib
import json

from autograder import __version__
from autograder.settings import GradingSettings

#: Settings that decide where scratch files go, not what a submission scores.
NOT_GRADING = ("scratch_root", "keep_scratch")


def fingerprint(submission_sha256: str, bundle_digest: str, settings: GradingSettings,
                runner: str | None = None) -> str:
    """Hex sha256 identifying one grading of one submission (see the module docstring)."""
    doc = {"submission": submission_sha256, "bundle": bundle_digest, "kit": __version__,
           "settings": {k: v for k, v in settings.to_dict().items() if k not in NOT_GRADING},
           "runner": runner}
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()

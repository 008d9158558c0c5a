"""Paths and switches shared by the library: the repository root and smoke mode.

Smoke mode (``ASSIGNMENT_SMOKE=1``) makes every training cell tiny so that a notebook runs end to
end in minutes on a laptop CPU; the results are then meaningless, only the plumbing is checked.
"""

from __future__ import annotations

import os
from pathlib import Path

#: The folder that holds ``assignment_lib/`` (the repository, or the unpacked student bundle).
REPO_ROOT = Path(__file__).resolve().parent.parent

#: True when the environment variable ``ASSIGNMENT_SMOKE`` is ``"1"``.
SMOKE = os.environ.get("ASSIGNMENT_SMOKE", "") == "1"


def smoke(normal, tiny):
    """Return ``tiny`` in smoke mode and ``normal`` otherwise (e.g. ``epochs = smoke(25, 1)``)."""
    return tiny if SMOKE else normal

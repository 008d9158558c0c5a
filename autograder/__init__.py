"""Instructor-only autograder for the FCN segmentation assignment.

Never shipped to students. See ``docs/ARCHITECTURE.md`` for how the parts fit together.
"""

from importlib import metadata as _metadata

try:
    __version__ = _metadata.version("fcn-assignment-kit")
except _metadata.PackageNotFoundError:  # a plain checkout, not installed
    __version__ = "0+unknown"

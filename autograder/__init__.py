"""Instructor-only autograder for the FCN segmentation assignment.

Never shipped to students. See ``docs/ARCHITECTURE.md`` for how the parts fit together.
"""

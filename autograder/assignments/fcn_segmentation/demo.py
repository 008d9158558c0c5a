"""The FCN assignment's demo students (``python -m autograder demo``; see :mod:`autograder.demo`).

* ``reference``: every answer cell holds the source notebook's solution;
* ``partly_wrong``: the solution with two bugs: FCN-32s crops at offset 18 instead of 19, and
  ``transposed_conv_padding`` returns ``((k - s) // 2, 0)`` (wrong whenever ``k - s`` is odd);
* ``broken``: a syntax error in the FCN-8s cell and ``while True: pass`` in the soft-IoU cell.

Every student also answers the inline questions (one answer carries a ``<script>`` tag, to show that
the reports escape student text).
"""

from __future__ import annotations

import re

from autograder.demo import bug, solution

STUDENTS = ("broken", "partly_wrong", "reference")
PADDING_BUG = re.compile(r"### BEGIN SOLUTION.*?### END SOLUTION", re.DOTALL)


def student_cells(student: str, solutions: dict[str, str]) -> dict[str, str]:
    """``{grade_id: new source}`` for the answer cells of ``student`` (see the module docstring)."""
    cells = {gid: solution(src) for gid, src in solutions.items()}
    if student == "partly_wrong":
        cells["fcn32s"] = bug(cells["fcn32s"], "19:19 +", "18:18 +", "FCN-32s crop offset")
        cells["transposed_conv_padding"] = PADDING_BUG.sub(
            "return (kernel_size - stride) // 2, 0  # forgot output_padding for odd k - s",
            solutions["transposed_conv_padding"])
    elif student == "broken":
        cells["fcn8s"] = cells["fcn8s"].replace("class FCN8s(nn.Module):", "class FCN8s(nn.Module)", 1)
        cells["soft_iou_loss"] = "while True:\n    pass\n\n" + cells["soft_iou_loss"]
    return cells


def inline_text(student: str, grade_id: str) -> str:
    if student == "partly_wrong" and grade_id == "q1_pretrained":
        return "Pretrained features help <script>alert('not escaped')</script> & converge faster."
    return f"{student}'s answer to {grade_id}: (demo text) the skips restore detail lost to pooling."

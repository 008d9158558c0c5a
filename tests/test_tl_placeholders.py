"""Answers that do nothing earn nothing in transfer_learning.

A ``set_trainable`` that returns the model untouched is "correct" for fine_tune on a fresh model, a
constant ``extract_features`` is deterministic and graph-free, a constant ``byol_loss`` lets no
gradient reach z, an ``ema_update`` that passes keeps the target for tau = 1, a single 1x1
convolution has ASPP's output shapes. Before the hidden tests were gated on the answer doing the
work, such placeholders (no exception, nothing learned) earned 15.4 of 40 points. Graded through the
real job, both notebooks, one run.
"""

from __future__ import annotations

import pytest
from _submissions import build_submission

from autograder.assignment import get_assignment

pytestmark = pytest.mark.slow

TL = get_assignment("transfer_learning")
#: answer cell -> a placeholder that runs without error and does nothing of what is asked.
PLACEHOLDERS = {
    "transfer_head": ('MODES = ("feature_extractor", "fine_tune", "scratch")\n\n'
                      "def replace_head(model, n_classes):\n    return model\n\n"
                      "def set_trainable(model, mode):\n    return model\n"),
    "extract_features": "def extract_features(model, images, batch_size=64):\n"
                        "    return torch.zeros(len(images), 256)\n",
    "aspp": ("class ASPP(nn.Module):\n"
             "    def __init__(self, in_channels, out_channels, rates=(6, 12, 18)):\n"
             "        super().__init__()\n"
             "        self.project = nn.Conv2d(in_channels, out_channels, 1)\n\n"
             "    def forward(self, x):\n        return self.project(x)\n"),
    "byol_loss": "def byol_loss(p, z):\n    return torch.zeros(())\n",
    "ema_update": "def ema_update(target, online, tau):\n    pass\n",
}


def test_placeholder_answers_score_zero_in_every_part(tmp_path):
    from autograder.bundle import Bundle
    from autograder.job import GradeJob, grade_job
    from autograder.settings import GradingSettings

    assert set(PLACEHOLDERS) <= set(TL.answer_cells)
    notebooks = {n: p.read_bytes() for n, p in build_submission(tmp_path / "sub", PLACEHOLDERS, TL).items()}
    settings = GradingSettings(scratch_root=str(tmp_path / "grading"), threads=2)
    result = grade_job(GradeJob("placeholders", notebooks, settings, bundle=Bundle.of(TL)))
    graded = [t for t in result.tests if t.part in PLACEHOLDERS]
    assert graded and result.max_score > 0
    assert [(t.name, t.score) for t in graded if t.score] == []
    # each zero says what is missing (a test that only counts once the answer does the work)
    assert all(t.output for t in graded)

"""A notebook saved as cp1252 by another editor is graded like its UTF-8 twin, with a warning in
the feedback (issue 13.4), through the real intake, runner and reports."""

from __future__ import annotations

import json

import nbformat
import pytest
from _submissions import build_submission

from autograder import __main__ as cli
from autograder import reports
from autograder.notebook import cells_by_grade_id

pytestmark = pytest.mark.slow

ANSWER = "Le noyau de taille k — avec un pas s — décale la sortie de (k − s) / 2 ; voilà."
#: The upsampling notebook alone (its tests are fast); the FCN notebook is left out on purpose.
PARTS = ("transposed_conv_padding", "soft_iou_loss")


def test_cp1252_notebook_is_graded_with_a_warning(tmp_path):
    nbs = build_submission(tmp_path / "in" / "amelie", {})
    nbs.pop("fcn_segmentation.ipynb").unlink()
    path = nbs["upsampling_and_iou.ipynb"]
    nb = nbformat.read(path, as_version=4)
    cells_by_grade_id(nb)["q6_padding_derivation"].source = ANSWER
    path.write_bytes(nbformat.writes(nb).encode("cp1252", errors="replace"))
    with pytest.raises(UnicodeDecodeError):
        path.read_text(encoding="utf-8")

    out = tmp_path / "out"
    assert cli.main(["grade", str(tmp_path / "in"), "--out", str(out), "--jobs", "1", "--timeout", "60",
                     "--no-progress", "--no-pdf"]) == 0
    (r,) = reports.load_all_results(out)
    ran = [t for t in r.tests if t.part in PARTS and t.status != "not_run"]
    assert ran and all(t.score == t.max_score for t in ran), [t for t in ran if t.score < t.max_score]
    assert not any("UTF-8" in p for p in r.problems), r.problems
    answers = {a.grade_id: a.answer for a in r.inline_answers}
    assert answers["q6_padding_derivation"] == ANSWER.replace("−", "?")  # cp1252 has no minus sign
    html = (tmp_path / "out" / "amelie" / "feedback.html").read_text()
    assert "upsampling_and_iou.ipynb is not UTF-8: it was read as cp1252 and graded" in html
    extra = json.loads((tmp_path / "out" / "amelie" / "results.json").read_text())["extra_data"]
    assert extra["intake"]["warnings"] and "is not UTF-8" in extra["intake"]["warnings"][0]

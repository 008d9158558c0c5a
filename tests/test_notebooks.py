"""The source notebooks: well-formed nbgrader metadata, outputs stripped, the contract's grade_ids,
and (slow) each one runs end to end in smoke mode on the real data, after which nbgrader's
validation logic finds every check cell passing."""

from __future__ import annotations

import json
import time
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = {
    "fcn_segmentation.ipynb": {
        "fcn_imports", "fcn32s", "check_fcn32s", "fcn8s", "check_fcn8s", "q1_pretrained",
        "q2_fcn32s_vs_fcn8s", "q3_skip_ablation", "q4_merged_classes", "q5_training_stages"},
    "upsampling_and_iou.ipynb": {
        "upsampling_imports", "transposed_conv_padding", "check_transposed_conv_padding",
        "soft_iou_loss", "check_soft_iou_loss", "q6_padding_derivation", "q7_upsampling_comparison",
        "q8_ce_vs_iou"},
}
#: Both notebooks together must run in smoke mode within this many seconds on 2 cores.
SMOKE_BUDGET_S = 300


def _read(repo_root, name):
    return nbformat.read(repo_root / "notebooks" / name, as_version=4)


@pytest.mark.parametrize("name", sorted(NOTEBOOKS))
def test_metadata_well_formed(repo_root, name):
    """nbgrader's own metadata check passes; ids are unique; the contract's grade_ids are there."""
    from nbgrader.preprocessors import CheckCellMetadata

    nb = _read(repo_root, name)
    nbformat.validate(nb)
    CheckCellMetadata().preprocess(nb, {})
    ids = [c.metadata["nbgrader"]["grade_id"] for c in nb.cells if "nbgrader" in c.metadata]
    assert len(ids) == len(set(ids)), f"duplicate grade_ids in {name}"
    assert NOTEBOOKS[name] <= set(ids), f"{name} lacks {NOTEBOOKS[name] - set(ids)}"
    for cell in nb.cells:
        meta = cell.metadata.get("nbgrader")
        if not meta:
            continue
        gid = meta["grade_id"]
        if meta["solution"] and cell.cell_type == "code":
            assert "### BEGIN SOLUTION" in cell.source and "### END SOLUTION" in cell.source, gid
        if meta["grade"] and cell.cell_type == "code":
            assert meta["locked"] and "checks.check_" in cell.source, gid
        if meta["grade"] and cell.cell_type == "markdown":
            assert meta["solution"] and meta["points"] > 0 and cell.source.strip() == "YOUR ANSWER HERE", gid


@pytest.mark.parametrize("name", sorted(NOTEBOOKS))
def test_outputs_stripped(repo_root, name):
    raw = json.loads((repo_root / "notebooks" / name).read_text())
    for cell in raw["cells"]:
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [] and cell["execution_count"] is None, cell["source"][:60]


@pytest.fixture(scope="module")
def smoke_env(repo_root, full_data_root, vgg16_features_path, tmp_path_factory):
    return {"PYTHONPATH": str(repo_root), "ASSIGNMENT_SMOKE": "1", "CMP_FACADE_ROOT": str(full_data_root),
            "VGG16_WEIGHTS": str(vgg16_features_path), "OMP_NUM_THREADS": "2", "MKL_NUM_THREADS": "2"}


_elapsed: dict[str, float] = {}


def _validate_executed(path: Path) -> dict:
    """nbgrader's ``validate`` logic on an already executed notebook (no second execution)."""
    from nbgrader.preprocessors import CheckCellMetadata
    from nbgrader.validator import Validator
    from traitlets import List

    class ExecutedValidator(Validator):
        preprocessors = List([CheckCellMetadata])

    return ExecutedValidator().validate(str(path))


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(NOTEBOOKS))
def test_source_notebook_runs_in_smoke_mode(repo_root, name, smoke_env, monkeypatch, tmp_path):
    for key, value in smoke_env.items():
        monkeypatch.setenv(key, value)
    nb = _read(repo_root, name)
    start = time.monotonic()
    NotebookClient(nb, timeout=240, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    _elapsed[name] = time.monotonic() - start
    out = tmp_path / name
    nbformat.write(nb, out)
    results = _validate_executed(out)
    assert results == {}, f"nbgrader validation of the executed {name}: {results}"
    checks = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id", "").startswith("check_")]
    for cell in checks:
        text = "".join(o.get("text", "") for o in cell.outputs)
        assert "\u2713" in text, f"{cell.metadata.nbgrader.grade_id} printed no passed check"
    if len(_elapsed) == len(NOTEBOOKS):
        total = sum(_elapsed.values())
        assert total < SMOKE_BUDGET_S, f"smoke runs took {total:.0f} s: {_elapsed}"

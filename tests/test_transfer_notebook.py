"""The transfer-learning source notebook ``notebooks/transfer_learning/transfer_and_features.ipynb``:
well-formed nbgrader metadata, outputs stripped, the contract's grade_ids, and (slow) it runs end to
end in smoke mode on the real data in under a minute, every check cell passing and every figure shown.
(Kept apart from tests/test_notebooks.py, which covers the FCN notebooks.)"""

from __future__ import annotations

import json
import time

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOK = "transfer_learning/transfer_and_features.ipynb"
GRADE_IDS = {"tl_imports", "tl_setup", "transfer_head", "check_transfer_head", "extract_features",
             "check_extract_features", "q1_imagenet_init", "q2_transfer_modes", "q3_tsne_vs_pca"}
#: Bound on the smoke run on 2 shared cores: measured 42 s at load 2 (the target is under a minute
#: on an idle machine); the bound leaves room for a loaded CI machine.
SMOKE_BUDGET_S = 120


def _read(repo_root):
    return nbformat.read(repo_root / "notebooks" / NOTEBOOK, as_version=4)


def test_metadata_well_formed(repo_root):
    from nbgrader.preprocessors import CheckCellMetadata

    nb = _read(repo_root)
    nbformat.validate(nb)
    CheckCellMetadata().preprocess(nb, {})
    ids = [c.metadata["nbgrader"]["grade_id"] for c in nb.cells if "nbgrader" in c.metadata]
    assert len(ids) == len(set(ids))
    assert GRADE_IDS <= set(ids), GRADE_IDS - set(ids)
    for cell in nb.cells:
        meta = cell.metadata.get("nbgrader")
        if not meta:
            continue
        if meta["solution"] and cell.cell_type == "code":
            assert "### BEGIN SOLUTION" in cell.source and "### END SOLUTION" in cell.source
        if meta["grade"] and cell.cell_type == "code":
            assert meta["locked"] and "checks.check_" in cell.source
        if meta["grade"] and cell.cell_type == "markdown":
            assert meta["solution"] and meta["points"] > 0 and cell.source.strip() == "YOUR ANSWER HERE"


def test_outputs_stripped(repo_root):
    raw = json.loads((repo_root / "notebooks" / NOTEBOOK).read_text())
    for cell in raw["cells"]:
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [] and cell["execution_count"] is None, cell["source"][:60]


@pytest.mark.slow
def test_runs_in_smoke_mode(repo_root, full_data_root, vgg16_features_path, monkeypatch, tmp_path):
    for key, value in {"PYTHONPATH": str(repo_root), "ASSIGNMENT_SMOKE": "1",
                       "CMP_FACADE_ROOT": str(full_data_root), "VGG16_WEIGHTS": str(vgg16_features_path),
                       "OMP_NUM_THREADS": "2", "MKL_NUM_THREADS": "2"}.items():
        monkeypatch.setenv(key, value)
    nb = _read(repo_root)
    start = time.monotonic()
    NotebookClient(nb, timeout=240, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    elapsed = time.monotonic() - start
    out = tmp_path / "transfer_and_features.ipynb"
    nbformat.write(nb, out)
    for cell in nb.cells:
        gid = cell.metadata.get("nbgrader", {}).get("grade_id", "")
        if gid.startswith("check_"):
            text = "".join(o.get("text", "") for o in cell.outputs)
            assert "\u2713" in text, f"{gid} printed no passed check: {text[-500:]}"
        if cell.cell_type == "code" and "plt.subplots" in cell.source:
            assert any("image/png" in o.get("data", {}) for o in cell.outputs), cell.source[:200]
    text = "".join(o.get("text", "") for c in nb.cells for o in c.get("outputs", []))
    for mode in ("feature_extractor", "fine_tune", "scratch"):
        assert f"{mode}: " in text and "test accuracy" in text
    from assignment_lib.submit import read_run_record
    record = read_run_record(out)
    assert record is not None and record["smoke"] is True
    assert elapsed < SMOKE_BUDGET_S, f"the smoke run took {elapsed:.0f} s"

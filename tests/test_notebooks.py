"""The source notebooks: well-formed nbgrader metadata, outputs stripped, the contract's grade_ids,
and (slow) each one runs end to end in smoke mode on the real data, after which nbgrader's
validation logic finds every check cell passing, every cell that draws shows an image, and the
run record and smoke banner are in the outputs."""

from __future__ import annotations

import ast
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
    return nbformat.read(repo_root / "notebooks" / "fcn_segmentation" / name, as_version=4)


#: Functions that load the ImageNet VGG-16 weights; the notebooks must let them download the file.
WEIGHT_LOADERS = {"load_vgg16_state_dict", "vgg16_imagenet"}


def test_every_source_notebook_downloads_missing_vgg16_weights(repo_root):
    """A student with internet but without the weights file must get it downloaded (as the FCN
    notebook always did), not a FileNotFoundError: every call that loads the weights in a source
    notebook of any assignment passes ``download=True``."""
    calls = 0
    for path in sorted((repo_root / "notebooks").glob("*/*.ipynb")):
        for cell in nbformat.read(path, as_version=4).cells:
            if cell.cell_type != "code" or not any(f in cell.source for f in WEIGHT_LOADERS):
                continue
            for node in ast.walk(ast.parse(cell.source)):
                name = getattr(node, "func", None)
                name = getattr(name, "id", None) or getattr(name, "attr", None)
                if isinstance(node, ast.Call) and name in WEIGHT_LOADERS:
                    calls += 1
                    download = {k.arg: k.value for k in node.keywords}.get("download")
                    assert isinstance(download, ast.Constant) and download.value is True, (
                        f"{path.relative_to(repo_root)}: {name}(...) without download=True in\n{cell.source}")
    assert calls >= 3  # FCN, transfer_and_features, byol_and_aspp


def check_metadata(nb, name: str, grade_ids: set[str]) -> None:
    """nbgrader's own metadata check passes on source notebook ``nb``; grade_ids are unique and
    include ``grade_ids``; solution cells hold the markers, graded code cells are locked checks,
    graded markdown cells are answers with points. (Shared by every assignment's notebook tests.)"""
    from nbgrader.preprocessors import CheckCellMetadata

    nbformat.validate(nb)
    CheckCellMetadata().preprocess(nb, {})
    ids = [c.metadata["nbgrader"]["grade_id"] for c in nb.cells if "nbgrader" in c.metadata]
    assert len(ids) == len(set(ids)), f"duplicate grade_ids in {name}"
    assert grade_ids <= set(ids), f"{name} lacks {grade_ids - set(ids)}"
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


def check_outputs_stripped(path) -> None:
    """Every code cell of the notebook file ``path`` has no outputs and no execution count."""
    raw = json.loads(path.read_text())
    for cell in raw["cells"]:
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [] and cell["execution_count"] is None, cell["source"][:60]


@pytest.mark.parametrize("name", sorted(NOTEBOOKS))
def test_metadata_well_formed(repo_root, name):
    check_metadata(_read(repo_root, name), name, NOTEBOOKS[name])


@pytest.mark.parametrize("name", sorted(NOTEBOOKS))
def test_outputs_stripped(repo_root, name):
    check_outputs_stripped(repo_root / "notebooks" / "fcn_segmentation" / name)


@pytest.fixture(scope="module")
def smoke_env(repo_root, full_data_root, vgg16_features_path, tmp_path_factory):
    return {"PYTHONPATH": str(repo_root), "ASSIGNMENT_SMOKE": "1", "CMP_FACADE_ROOT": str(full_data_root),
            "VGG16_WEIGHTS": str(vgg16_features_path), "OMP_NUM_THREADS": "2", "MKL_NUM_THREADS": "2"}


_elapsed: dict[str, float] = {}

#: Calls that draw a figure: viz's plots and pyplot figures (module attribute, or a name).
_DRAWING_ATTRS = {("viz", "show_samples"), ("viz", "plot_history"), ("viz", "plot_iou_bars"),
                  ("viz", "plot_confusion_matrix"), ("plt", "subplots"), ("plt", "figure")}
_DRAWING_NAMES = {"show_stages"}


def _draws(source: str) -> bool:
    """True when the cell calls a drawing function at top level or in a loop, i.e. not only
    inside a ``def`` (a helper definition draws nothing when it runs)."""
    import ast

    def calls(node):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)):
            return
        if isinstance(node, ast.Call):
            f = node.func
            if isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) and \
                    (f.value.id, f.attr) in _DRAWING_ATTRS:
                yield node
            if isinstance(f, ast.Name) and f.id in _DRAWING_NAMES:
                yield node
        for child in ast.iter_child_nodes(node):
            yield from calls(child)

    try:
        tree = ast.parse(source)
    except SyntaxError:
        return False
    return any(True for _ in calls(tree))


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
    # every cell that draws shows its figure where it is drawn (a fresh kernel, Run All)
    drawing = [c for c in nb.cells if c.cell_type == "code" and _draws(c.source)]
    assert drawing, f"{name}: no drawing cell found"
    for cell in drawing:
        assert any("image/png" in o.get("data", {}) for o in cell.outputs), (
            f"{name}: this cell draws but shows no image:\n{cell.source[:300]}")
    # the run record submit reads, and the smoke banner
    from assignment_lib.submit import read_run_record
    record = read_run_record(out)
    assert record is not None and record["smoke"] is True and record["budget"] == "smoke"
    assert any("SMOKE MODE" in o.get("data", {}).get("text/html", "") for c in nb.cells
               for o in c.get("outputs", [])), f"{name}: no smoke banner"
    if len(_elapsed) == len(NOTEBOOKS):
        total = sum(_elapsed.values())
        assert total < SMOKE_BUDGET_S, f"smoke runs took {total:.0f} s: {_elapsed}"

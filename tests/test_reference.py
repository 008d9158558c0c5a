"""The trusted reference is built from the source notebooks and is a correct FCN."""

import pytest
import torch

from autograder import reference as R
from autograder.assignment import Assignment, get_assignment

FCN = get_assignment("fcn_segmentation")


@pytest.fixture(scope="module")
def ref():
    return R.load_reference(FCN)


def test_parameter_counts_pinned(ref):
    assert sum(p.numel() for p in ref.FCN32s(n_classes=12).parameters()) == 134_899_532
    assert sum(p.numel() for p in ref.FCN8s(n_classes=12).parameters()) == 134_360_420


@pytest.mark.parametrize("name", ["FCN32s", "FCN8s"])
def test_output_has_input_size_for_odd_sizes(ref, name):
    model = getattr(ref, name)(n_classes=12).eval()
    with torch.no_grad():
        for h, w in ((33, 47), (37, 29)):
            assert model(torch.randn(1, 3, h, w)).shape == (1, 12, h, w)


def test_functions_come_from_the_source_notebook(ref):
    assert ref.transposed_conv_padding(4, 2) == (1, 0)
    assert ref.transposed_conv_padding(5, 2) == (2, 1)
    assert "### BEGIN SOLUTION" in R.cell_source("soft_iou_loss", FCN)


def test_locked_source_is_the_released_import_cell():
    assert "from assignment_lib.layers import bilinear_kernel" in R.locked_source("fcn_imports", FCN)
    with pytest.raises(R.ReferenceSolutionError):
        R.locked_source("fcn32s", FCN)  # an answer cell is never "locked source"


def test_missing_source_cell_is_a_clear_error(tmp_path):
    import nbformat
    for name in FCN.notebook_files:
        nb = nbformat.read(f"{FCN.source_dir}/{name}", as_version=4)
        nb.cells = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") != "fcn8s"]
        nbformat.write(nb, tmp_path / name)
    with pytest.raises(R.ReferenceSolutionError, match="fcn8s"):
        R.load_reference(Assignment.load(FCN.toml, tmp_path))

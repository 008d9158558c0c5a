"""``python -m autograder release``: nbgrader course folder, release notebooks with stubs, and a
student bundle that holds no solution, no hidden test and nothing of the autograder."""

from __future__ import annotations

import ast
import json
import zipfile
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

from autograder import release as rel

SOLUTION_MARKERS = ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS", "END HIDDEN TESTS",
                    "hidden_tests", "import autograder", "from autograder", "autograder/",
                    "autograder.")

#: Solution lines too generic to betray anything (they occur in ordinary library code).
GENERIC = {"super().__init__()", "with torch.no_grad():"}


@pytest.fixture(scope="module")
def released(tmp_path_factory):
    return rel.release(tmp_path_factory.mktemp("release"), "fcn_segmentation")


def _solution_lines(repo_root: Path) -> set[str]:
    """Distinctive lines inside the ### BEGIN/END SOLUTION regions of the source notebooks."""
    lines = set()
    for nb_path in (repo_root / "notebooks").glob("*/*.ipynb"):
        nb = nbformat.read(nb_path, as_version=4)
        for cell in nb.cells:
            inside = False
            for line in cell.source.splitlines():
                s = line.strip()
                if "BEGIN SOLUTION" in s:
                    inside = True
                elif "END SOLUTION" in s:
                    inside = False
                elif inside and len(s) >= 25 and not s.startswith("#") and s not in GENERIC:
                    lines.add(s)
    assert len(lines) > 40, "expected the FCN, padding and loss solutions in the source notebooks"
    return lines


def _hidden_test_names(repo_root: Path) -> set[str]:
    names = set()
    for path in (repo_root / "autograder" / "assignments").glob("*/hidden_tests/*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef) and node.name.startswith("test_"):
                names.add(node.name)
    return names


def test_layout(released):
    b = released.bundle
    assert sorted(p.name for p in b.iterdir()) == sorted(
        ["README.md", "assignment_lib", "datasets", "environment.yml", "fcn_segmentation.ipynb",
         "pyproject.toml", "upsampling_and_iou.ipynb"])
    assert (b / "assignment_lib" / "download.py").is_file()
    assert (b / "datasets" / "cmp_facade_base.sha256").is_file()
    assert (b / "datasets" / "splits" / "train.txt").is_file()
    assert not list(b.rglob("__pycache__")) and not list(b.rglob("*.pyc"))
    assert (released.course / "nbgrader_config.py").is_file()
    assert (released.course / "gradebook.db").is_file()
    for name in released.notebooks:
        assert (released.course / "source" / "fcn_segmentation" / name).is_file()
    with zipfile.ZipFile(released.zip) as zf:
        in_zip = sorted(n for n in zf.namelist() if not n.endswith("/"))
    on_disk = sorted(str(Path("fcn_segmentation") / p.relative_to(b)) for p in b.rglob("*") if p.is_file())
    assert in_zip == on_disk


def test_bundle_holds_no_solution_or_grader_text(released, repo_root):
    solution = _solution_lines(repo_root)
    hidden = _hidden_test_names(repo_root)
    checked = 0
    for path in released.bundle.rglob("*"):
        if not path.is_file() or path.suffix in (".jpg", ".png"):
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        checked += 1
        for marker in SOLUTION_MARKERS:
            assert marker not in text, f"{path}: contains {marker!r}"
        for line in solution:
            assert line not in text, f"{path}: contains solution line {line!r}"
        for name in hidden:
            assert name not in text, f"{path}: names hidden test {name}"
    assert checked > 15


def test_release_notebooks_have_hinted_stubs_and_keep_locked_cells(released, repo_root):
    for name in released.notebooks:
        source = nbformat.read(repo_root / "notebooks" / "fcn_segmentation" / name, as_version=4)
        released_nb = nbformat.read(released.bundle / name, as_version=4)
        src_cells = {c.metadata["nbgrader"]["grade_id"]: c for c in source.cells if "nbgrader" in c.metadata}
        rel_cells = {c.metadata["nbgrader"]["grade_id"]: c for c in released_nb.cells if "nbgrader" in c.metadata}
        assert rel_cells.keys() == src_cells.keys()
        for gid, cell in rel_cells.items():
            meta = cell.metadata["nbgrader"]
            if meta.get("solution") and cell.cell_type == "code":
                assert "raise NotImplementedError(\"Replace this line with your code" in cell.source, gid
            elif meta.get("solution"):
                assert cell.source.strip() == "YOUR ANSWER HERE", gid
            else:
                assert cell.source == src_cells[gid].source, f"{gid} changed in the release"
            if meta.get("locked") or meta.get("grade"):
                assert "checksum" in meta, gid


def test_expected_cells_manifest(released):
    manifest = json.loads(released.expected_cells.read_text())
    fcn = manifest["notebooks"]["fcn_segmentation.ipynb"]
    assert {"fcn_imports", "fcn32s", "check_fcn32s", "fcn8s", "check_fcn8s", "q1_pretrained",
            "q5_training_stages"} <= set(fcn["grade_ids"])
    up = manifest["notebooks"]["upsampling_and_iou.ipynb"]
    assert up["answers"] == ["q6_padding_derivation", "q7_upsampling_comparison", "q8_ce_vs_iou"]


@pytest.mark.slow
@pytest.mark.parametrize("name, first_stub_check", [
    ("fcn_segmentation.ipynb", "check_fcn32s"),
    ("upsampling_and_iou.ipynb", "check_transposed_conv_padding"),
])
def test_release_notebook_stops_at_first_stub(released, name, first_stub_check, sample_root,
                                              monkeypatch, tmp_path):
    """Run the student's notebook as released (with the bundled sample data, smoke mode): the
    first error is the NotImplementedError of the first exercise, in its check cell; nbgrader's
    validation logic then reports that check cell as failed."""
    monkeypatch.setenv("ASSIGNMENT_SMOKE", "1")
    monkeypatch.setenv("CMP_FACADE_ROOT", str(sample_root))
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    monkeypatch.setenv("FCN_KIT_CACHE", str(tmp_path / "cache"))
    nb = nbformat.read(released.bundle / name, as_version=4)
    client = NotebookClient(nb, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": str(released.bundle)}})
    with pytest.raises(CellExecutionError) as info:
        client.execute()
    assert "NotImplementedError" in str(info.value)
    failed = [c for c in nb.cells if c.cell_type == "code"
              and any(o.get("output_type") == "error" for o in c.get("outputs", []))]
    assert len(failed) == 1
    assert failed[0].metadata["nbgrader"]["grade_id"] == first_stub_check
    assert "Replace this line with your code" in str(info.value)

    out = tmp_path / name
    nbformat.write(nb, out)
    results = _validate_executed(out)
    assert "changed" not in results
    assert any(first_stub_check.replace("check_", "checks.check_") in f["source"]
               for f in results.get("failed", []))


def _validate_executed(path: Path) -> dict:
    """nbgrader's ``validate`` logic on an already executed notebook (no second execution)."""
    from nbgrader.preprocessors import CheckCellMetadata
    from nbgrader.validator import Validator
    from traitlets import List

    class ExecutedValidator(Validator):
        preprocessors = List([CheckCellMetadata])

    return ExecutedValidator().validate(str(path))

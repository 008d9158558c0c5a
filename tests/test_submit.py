"""``python -m assignment_lib.submit``: each problem is reported and blocks the zip; a clean
folder gives a zip with the notebooks and a manifest."""

from __future__ import annotations

import copy
import hashlib
import json
import zipfile

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from assignment_lib import submit
from assignment_lib.run_record import RUN_RECORD_MIME


def _meta(gid, grade=False, solution=False, locked=False):
    return {"nbgrader": {"grade": grade, "grade_id": gid, "locked": locked, "schema_version": 3,
                         "solution": solution, "task": False, **({"points": 1} if grade else {})}}


def _record(**changes):
    return {"budget": "cpu", "smoke": False, "dataset": "full", "dataset_sha256": "ab" * 32,
            "kit_version": "0.1.0", **changes}


def _notebook(answer="Skips add detail.", run=True, error=False, drop=(), duplicate=(), record=None):
    record = _record() if record is None else record
    setup = new_code_cell("RUN = record_run()")
    if record:
        setup.outputs = [new_output("display_data", data={RUN_RECORD_MIME: record,
                                                          "text/plain": "run record"})]
    cells = [
        new_markdown_cell("# Title"),
        new_code_cell("import math", metadata=_meta("imports", locked=True)),
        setup,
        new_markdown_cell("## 2. The exercise"),
        new_code_cell("def f(x):\n    return x", metadata=_meta("f", solution=True)),
        new_code_cell("assert f(1) == 1", metadata=_meta("check_f", grade=True, locked=True)),
        new_code_cell("print(f(2))"),
        new_markdown_cell("**Question.** Why?", metadata=_meta("q1_prompt", locked=True)),
        new_markdown_cell(answer, metadata=_meta("q1", grade=True, solution=True)),
    ]
    for i, c in enumerate(cells):
        if c.cell_type == "code" and run:
            c.execution_count = i
    if error:
        cells[5].outputs = [new_output("error", ename="AssertionError", evalue="f is wrong",
                                       traceback=[])]
    cells = [c for c in cells if c.metadata.get("nbgrader", {}).get("grade_id") not in drop]
    for gid in duplicate:
        for c in [c for c in cells if c.metadata.get("nbgrader", {}).get("grade_id") == gid]:
            c = copy.deepcopy(c)
            c["id"] = c["id"] + "-copy"
            cells.append(c)
    return new_notebook(cells=cells)


EXPECTED = {"assignment": "fcn_segmentation",
            "notebooks": {"a.ipynb": {"grade_ids": ["imports", "f", "check_f", "q1_prompt", "q1"],
                                      "answers": ["q1"]},
                          "b.ipynb": {"grade_ids": ["imports", "f", "check_f", "q1_prompt", "q1"],
                                      "answers": ["q1"]}}}


@pytest.fixture
def folder(tmp_path):
    d = tmp_path / "work"
    d.mkdir()
    for name in ("a.ipynb", "b.ipynb"):
        nbformat.write(_notebook(), d / name)
    (tmp_path / "expected.json").write_text(json.dumps(EXPECTED))
    return d


def run(folder, *extra):
    return submit.main(["--dir", str(folder), "--expected", str(folder.parent / "expected.json"),
                        "--student", "s123", *extra])


def test_clean_folder_gives_zip_with_manifest(folder, capsys):
    assert run(folder) == 0
    out = folder / "s123_fcn_segmentation.zip"
    assert str(out) in capsys.readouterr().out
    with zipfile.ZipFile(out) as zf:
        assert sorted(zf.namelist()) == ["a.ipynb", "b.ipynb", "manifest.json"]
        manifest = json.loads(zf.read("manifest.json"))
        assert zf.read("a.ipynb") == (folder / "a.ipynb").read_bytes()
    assert manifest["student"] == "s123" and manifest["forced"] is False
    assert manifest["problems"] == []
    assert manifest["notebooks"]["b.ipynb"]["sha256"] == hashlib.sha256(
        (folder / "b.ipynb").read_bytes()).hexdigest()
    assert manifest["created"].endswith("+00:00")
    assert manifest["run"] == {**_record(), "allowed": []}
    assert manifest["notebooks"]["a.ipynb"]["run"] == _record()


def test_allow_flags_accept_smoke_and_sample_and_are_recorded(folder, capsys):
    nbformat.write(_notebook(record=_record(smoke=True, budget="smoke")), folder / "a.ipynb")
    nbformat.write(_notebook(record=_record(dataset="sample", dataset_sha256="cd" * 32)), folder / "b.ipynb")
    assert run(folder, "--allow-smoke") == 1  # the sample run is still refused
    assert "ran on the 24-image sample" in capsys.readouterr().err
    assert run(folder, "--allow-smoke", "--allow-sample") == 0
    with zipfile.ZipFile(folder / "s123_fcn_segmentation.zip") as zf:
        manifest = json.loads(zf.read("manifest.json"))
    assert manifest["forced"] is False and manifest["problems"] == []
    assert manifest["run"] == {"budget": "smoke", "smoke": True, "dataset": "sample",
                               "dataset_sha256": "cd" * 32, "kit_version": "0.1.0",
                               "allowed": ["sample", "smoke"]}


@pytest.mark.parametrize("kwargs, message", [
    ({"run": False}, (r"a.ipynb: 5 code cell\(s\) were not run: 'imports' \(code cell 1\), code cell 2 in 'Title', "
                     r"'f' \(code cell 3\), 'check_f' \(code cell 4\), code cell 5 in '2. The exercise'.*Restart & Run All")),
    ({"error": True}, (r"a.ipynb: cell\(s\) ended with an error: 'check_f' \(code cell 4 \(In \[5\]\)\) "
                      r"\(AssertionError: f is wrong\)")),
    ({"record": {}}, r"a.ipynb: no run record found"),
    ({"record": _record(smoke=True, budget="smoke")}, r"a.ipynb ran in smoke mode.*--allow-smoke"),
    ({"record": _record(dataset="sample")}, r"a.ipynb ran on the 24-image sample.*--allow-sample"),
    ({"drop": ("check_f",)}, r"a.ipynb: graded cell\(s\) deleted: check_f"),
    ({"drop": ("q1",)}, r"a.ipynb: graded cell\(s\) deleted: q1"),
    ({"duplicate": ("f",)}, r"a.ipynb: graded cell\(s\) duplicated: f"),
    ({"answer": "YOUR ANSWER HERE"}, r"a.ipynb: inline question 'q1' is not answered"),
    ({"answer": "   \n"}, r"a.ipynb: inline question 'q1' is not answered"),
])
def test_each_problem_blocks_the_zip(folder, capsys, kwargs, message):
    nbformat.write(_notebook(**kwargs), folder / "a.ipynb")
    assert run(folder) == 1
    err = capsys.readouterr().err
    assert __import__("re").search(message, err), err
    assert "b.ipynb" not in err
    assert not list(folder.glob("*.zip"))


def test_missing_and_broken_notebooks(folder, capsys):
    (folder / "a.ipynb").unlink()
    (folder / "b.ipynb").write_text("{not json")
    assert run(folder) == 1
    err = capsys.readouterr().err
    assert "a.ipynb: missing" in err and "b.ipynb: cannot be read as a notebook" in err


def test_force_packs_and_records_problems(folder, capsys, tmp_path):
    nbformat.write(_notebook(answer="YOUR ANSWER HERE"), folder / "a.ipynb")
    out = tmp_path / "hand_in.zip"
    assert run(folder, "--force", "--out", str(out)) == 0
    with zipfile.ZipFile(out) as zf:
        manifest = json.loads(zf.read("manifest.json"))
    assert manifest["forced"] is True
    assert any("'q1' is not answered" in p for p in manifest["problems"])


def test_bad_student_id_and_dir(folder, capsys):
    assert submit.main(["--dir", str(folder), "--student", "../evil"]) == 2
    assert submit.main(["--dir", str(folder / "nope"), "--student", "s1"]) == 2
    assert "not a folder" in capsys.readouterr().err


def test_bad_manifest(folder, capsys):
    (folder.parent / "expected.json").write_text("[]")
    assert run(folder) == 2
    assert "not a valid expected-cells manifest" in capsys.readouterr().err


def test_repo_manifest_lists_graded_cells_and_answers(tmp_path):
    """In the repository (no expected_cells.json) the manifest comes from the source notebooks of
    the assignment whose notebooks are being handed in."""
    (tmp_path / "fcn_segmentation.ipynb").write_text("{}")
    expected = submit.load_expected(submit.EXPECTED_CELLS.with_name("no_such_file.json"), tmp_path)
    assert expected["assignment"] == "fcn_segmentation"
    fcn = expected["notebooks"]["fcn_segmentation.ipynb"]
    assert {"fcn32s", "check_fcn32s", "fcn8s", "check_fcn8s"} <= set(fcn["grade_ids"])
    assert fcn["answers"] == ["q1_pretrained", "q2_fcn32s_vs_fcn8s", "q3_skip_ablation",
                              "q4_merged_classes", "q5_training_stages"]
    up = expected["notebooks"]["upsampling_and_iou.ipynb"]
    assert up["answers"] == ["q6_padding_derivation", "q7_upsampling_comparison", "q8_ce_vs_iou"]

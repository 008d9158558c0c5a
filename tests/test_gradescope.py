"""Gradescope's autograder.zip: built here, unpacked into a fake AUTOGRADER_ROOT, set up (the Python
part of setup.sh, not apt) and run against the reference, a wrong submission and an empty upload.

results.json is checked against Gradescope's specification
(https://gradescope-autograders.readthedocs.io/en/latest/specs/).
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from _submissions import build_submission

from autograder import gradescope, gradescope_run, reference
from autograder.assignment import get_assignment
from autograder.assignments.fcn_segmentation import demo as fcn_demo
from autograder.results import VISIBILITIES
from autograder.rubric import load_rubric

FCN_RUBRIC = get_assignment("fcn_segmentation").rubric

NUMBER = (int, float)


def unpack(zip_path: Path, dest: Path) -> None:
    """Extract like Gradescope does, keeping the executable bits that the zip records."""
    with zipfile.ZipFile(zip_path) as zf:
        for info in zf.infolist():
            zf.extract(info, dest)
            mode = info.external_attr >> 16
            if mode & 0o111:
                os.chmod(dest / info.filename, stat.S_IMODE(mode))


def check_spec(results: dict) -> None:
    """Fields and types of Gradescope's results.json."""
    assert isinstance(results["score"], NUMBER) and isinstance(results["execution_time"], NUMBER)
    assert isinstance(results["output"], str) and results["stdout_visibility"] in VISIBILITIES
    assert results["visibility"] in VISIBILITIES and isinstance(results["extra_data"], dict)
    assert "result" not in results["extra_data"]  # the internal result would repeat hidden messages
    assert isinstance(results["tests"], list) and results["tests"]
    for t in results["tests"]:
        assert isinstance(t["name"], str) and isinstance(t["output"], str)
        assert isinstance(t["score"], NUMBER) and isinstance(t["max_score"], NUMBER)
        assert 0 <= t["score"] <= t["max_score"]
        assert t["visibility"] in VISIBILITIES
        assert t.get("status", "passed") in ("passed", "failed")
    assert results["score"] == pytest.approx(sum(t["score"] for t in results["tests"]))


@pytest.fixture(scope="module")
def autograder_root(tmp_path_factory, repo_root):
    """A fake /autograder: source/ from the zip, a venv that is this test's Python, setup.sh run."""
    build = tmp_path_factory.mktemp("gs_build")
    proc = subprocess.run([sys.executable, "-m", "autograder", "gradescope", "--assignment", "fcn_segmentation", "--out", str(build / "autograder.zip")],
                          cwd=repo_root, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    root = tmp_path_factory.mktemp("autograder")
    unpack(build / "autograder.zip", root / "source")
    venv_python = root / "venv" / "bin" / "python"  # "the venv exists": setup.sh reuses it
    venv_python.parent.mkdir(parents=True)
    venv_python.write_text(f'#!/bin/sh\nexec {sys.executable} "$@"\n')
    venv_python.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    # no index: pip may only confirm that the pinned versions are the installed ones, never download
    env.update(AUTOGRADER_ROOT=str(root), SKIP_APT="1", PIP_NO_INDEX="1", PIP_DISABLE_PIP_VERSION_CHECK="1")
    proc = subprocess.run(["bash", str(root / "source" / "setup.sh")], env=env, capture_output=True, text=True,
                          timeout=600, check=False)
    assert proc.returncode == 0 and "setup.sh: done" in proc.stdout, proc.stdout[-2000:] + proc.stderr[-2000:]
    shutil.copy2(root / "source" / "run_autograder", root / "run_autograder")  # as Gradescope does
    return root, env


def run_autograder(root: Path, env: dict, upload) -> dict:
    shutil.rmtree(root / "submission", ignore_errors=True)
    shutil.rmtree(root / "results", ignore_errors=True)
    (root / "submission").mkdir()
    upload(root / "submission")
    proc = subprocess.run([str(root / "run_autograder")], env=env, cwd="/", capture_output=True, text=True,
                          timeout=900, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads((root / "results" / "results.json").read_text())


def test_zip_holds_the_grader_and_the_reference_executable_scripts(autograder_root):
    root, _ = autograder_root
    src = root / "source"
    assert os.access(src / "setup.sh", os.X_OK) and os.access(src / "run_autograder", os.X_OK)
    assert {p.name for p in (src / "autograder" / "assignments" / "fcn_segmentation" / "hidden_tests").glob("test_*.py")} >= {"test_fcn.py", "test_miou.py"}
    assert "### BEGIN SOLUTION" in (src / "notebooks" / "fcn_segmentation" / "fcn_segmentation.ipynb").read_text()
    assert not list(src.rglob("__pycache__")) and not (src / "datasets" / "cmp_facade").exists()
    pins = (src / "requirements.txt").read_text().splitlines()
    assert "torch==2.14.1" in pins and all("==" in p for p in pins if not p.startswith("#"))
    assert json.loads((src / "gradescope.json").read_text())["miou"] == "none"


@pytest.mark.slow
def test_reference_and_wrong_submission(autograder_root):
    root, env = autograder_root
    rubric = load_rubric(FCN_RUBRIC)
    ref = run_autograder(root, env, lambda d: build_submission(d, {}))
    check_spec(ref)
    tests = {t["name"]: t for t in ref["tests"]}
    assert set(tests) == set(rubric)
    for name, t in tests.items():
        assert t["visibility"] == rubric[name].visibility
        if name == "test_fcn8s_miou_gpu":  # Gradescope has no GPU: not run, 0 of 0, said why
            assert "status" not in t and t["max_score"] == 0 and t["output"] == gradescope_run.GPU_NOT_RUN
        elif "status" in t:
            assert t["status"] == "passed" and t["score"] == t["max_score"] > 0, t
    assert ref["score"] == sum(e.points for n, e in rubric.items() if "miou" not in n)
    assert "leaderboard" not in ref  # the CPU tier is off in this package
    isolation = ref["extra_data"]["isolation"]
    assert ("bubblewrap" in isolation) != (gradescope_run.WEAKER_ISOLATION in ref["output"])

    # The wrong one: the demo's padding bug, in a sub-folder (a student dragging a folder), and
    # without fcn_segmentation.ipynb (its tests score 0 quickly: the grading stays short).
    def upload_wrong(d: Path) -> None:
        fcn = get_assignment("fcn_segmentation")
        solutions = {gid: reference.cell_source(gid, fcn) for gid in fcn.answer_cells}
        cell = fcn_demo.student_cells("partly_wrong", solutions)["transposed_conv_padding"]
        build_submission(d / "my work", {"transposed_conv_padding": cell})
        (d / "my work" / "fcn_segmentation.ipynb").unlink()

    wrong = run_autograder(root, env, upload_wrong)
    check_spec(wrong)
    w = {t["name"]: t for t in wrong["tests"]}
    assert "fcn_segmentation.ipynb is missing" in wrong["output"]
    assert all(t["score"] == 0 for n, t in w.items() if n.startswith("test_fcn"))
    stride2 = w["test_transposed_conv_padding_stride2"]
    assert stride2["status"] == "failed" and 0 < stride2["score"] < stride2["max_score"]
    assert "kernel_size=3" in stride2["output"] and w["test_transposed_conv_padding_invalid"]["score"] == 0
    assert all(t["score"] == tests[n]["score"] for n, t in w.items() if n.startswith("test_soft_iou"))

def test_empty_upload_is_told_what_to_upload(autograder_root):
    root, env = autograder_root
    res = run_autograder(root, env, lambda d: (d / "notes.txt").write_text("forgot the notebooks"))
    check_spec(res)
    assert res["score"] == 0 and "upload fcn_segmentation.ipynb and upsampling_and_iou.ipynb" in res["output"]


def test_gpu_tier_refused_and_settings_round_trip():
    with pytest.raises(ValueError, match="no GPUs"):
        gradescope.GradescopeSettings(miou="gpu")
    with pytest.raises(ValueError, match="unknown assignment 'hw2'"):
        gradescope.GradescopeSettings(assignment="hw2")
    s = gradescope.GradescopeSettings(assignment="fcn_segmentation", miou="cpu", submission_timeout=900.0)
    assert gradescope.GradescopeSettings.from_dict(s.to_dict()) == s
    with pytest.raises(ValueError, match="unknown settings"):
        gradescope.GradescopeSettings.from_dict({"jobs": 2})


def test_leaderboard_and_weaker_isolation_note():
    payload = {"score": 1.0, "output": "Autograded score: 1 / 3.", "tests": [
        {"name": "test_fcn8s_miou_cpu", "score": 1.0, "max_score": 2.0, "status": "failed",
         "output": "FCN-8s ...\nmIoU 0.041 (threshold 0.050)", "visibility": "after_published"},
        {"name": "test_fcn8s_miou_gpu", "score": 0.0, "max_score": 0.0, "output": "not run: needs a GPU",
         "visibility": "after_published"}],
        "extra_data": {"isolation": "subprocess (weaker: no filesystem or network isolation)", "result": {}}}
    cpu = gradescope_run.to_gradescope(payload, gradescope.GradescopeSettings("fcn_segmentation", miou="cpu"))
    assert cpu["leaderboard"] == [{"name": "CPU-tier mIoU", "value": 0.041, "order": "desc"}]
    assert cpu["output"].endswith(gradescope_run.WEAKER_ISOLATION)
    assert cpu["tests"][1]["output"] == gradescope_run.GPU_NOT_RUN and "result" not in cpu["extra_data"]
    assert payload["tests"][1]["output"] == "not run: needs a GPU"  # the input is not changed
    payload["tests"][0]["output"] = "cell 'fcn8s' raised SyntaxError"  # never reached training
    fcn = gradescope_run.tier_recipes("fcn_segmentation")
    assert gradescope_run.leaderboard_entry(payload, fcn)[0]["value"] == 0.0
    assert "leaderboard" not in gradescope_run.to_gradescope(payload, gradescope.GradescopeSettings("fcn_segmentation"))


def test_student_id_from_metadata(tmp_path):
    assert gradescope_run.student_id(tmp_path) == "submission"
    (tmp_path / "submission_metadata.json").write_text(json.dumps(
        {"users": [{"email": "Ann Lee <ann@uni.edu>", "name": "Ann", "sid": ""}]}))
    assert gradescope_run.student_id(tmp_path) == "Ann_Lee__ann@uni.edu_"


def test_leaderboard_of_the_transfer_probe():
    payload = {"score": 2.0, "output": "", "extra_data": {}, "tests": [
        {"name": "test_probe_accuracy_cpu", "score": 2.0, "max_score": 2.0, "status": "passed",
         "output": "probe accuracy 0.427 (threshold 0.355)", "visibility": "after_published"},
        {"name": "test_replace_head_output_shape", "score": 2.0, "max_score": 2.0, "status": "passed",
         "output": "", "visibility": "visible"}]}
    out = gradescope_run.to_gradescope(payload, gradescope.GradescopeSettings("transfer_learning", miou="cpu"))
    assert out["leaderboard"] == [{"name": "CPU-tier probe accuracy", "value": 0.427, "order": "desc"}]
    # the FCN recipes do not name the probe: no entry from another assignment's test
    assert gradescope_run.leaderboard_entry(payload, gradescope_run.tier_recipes("fcn_segmentation")) == []

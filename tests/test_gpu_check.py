"""scripts/gpu_check.py: the parts that decide what a GPU run reports, checked on made-up inputs.
(The whole script runs end to end on CPU with `bash scripts/gpu_check.sh --device cpu`.)"""

import importlib.util
import sys
import zipfile

import pytest

from assignment_lib import data as D


@pytest.fixture(scope="module")
def gc():
    spec = importlib.util.spec_from_file_location("gpu_check", D.REPO_ROOT / "scripts" / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _wheel(folder, name, module):
    with zipfile.ZipFile(folder / name, "w") as z:
        z.writestr(f"{module}/__init__.py", "")


def test_only_wheels_for_this_python_are_unpacked_once(gc, tmp_path):
    here = f"cp{sys.version_info.major}{sys.version_info.minor}"
    wheels = tmp_path / "bundle" / "wheels"
    wheels.mkdir(parents=True)
    _wheel(wheels, "purepkg-1.0-py3-none-any.whl", "purepkg")
    _wheel(wheels, f"binpkg-1.0-{here}-{here}-manylinux_2_17_x86_64.whl", "binpkg")
    _wheel(wheels, "otherpkg-1.0-cp27-cp27mu-manylinux1_x86_64.whl", "otherpkg")
    _wheel(wheels, "abipkg-1.0-cp38-abi3-manylinux_2_17_x86_64.whl", "abipkg")
    site, lines = tmp_path / "site", []
    gc.unpack_wheels(site, [tmp_path / "bundle"], lines.append)
    assert sorted(p.name for p in site.iterdir() if p.is_dir()) == ["abipkg", "binpkg", "purepkg"]
    gc.unpack_wheels(site, [tmp_path / "bundle"], lines.append)
    assert lines[-1].startswith("unpacked 0 new wheel(s)")


def test_targets_verdicts(gc):
    doc = {"recipes": {"gpu_fcn8s": {"reference": [{"mean_iou": 0.58, "train_s": 52.0},
                                                   {"mean_iou": 0.57, "train_s": 55.0}]}}}
    figures = {"grading": {"reference": {"wall_s": 80.0}, "partly_wrong": {"wall_s": 70.0}},
               "fcn8s_share_of_matmul_peak_pct": 41.0}
    figures["transfer_learning_budget"] = {"budget": "gpu", "total_s": 29 * 60.0,
                                           "totals_s": {"transfer_and_features": 900.0, "byol_and_aspp": 840.0}}
    assert [v for _, _, v in gc.targets(figures, doc, "gpu")] == ["met"] * 4
    doc["recipes"]["gpu_fcn8s"]["reference"][1]["train_s"] = 75.0
    figures["grading"]["reference"]["wall_s"] = 120.0
    figures["fcn8s_share_of_matmul_peak_pct"] = 20.0
    figures["transfer_learning_budget"]["total_s"] = (gc.TRANSFER_GPU_MINUTES + 1) * 60.0
    rows = gc.targets(figures, doc, "gpu")
    assert [v.split(" (")[0] for _, _, v in rows] == ["NOT met"] * 4
    assert "transfer_and_features 15.0" in rows[3][1]
    figures["transfer_learning_budget"]["budget"] = "smoke"  # the CPU practice decides nothing
    assert gc.targets(figures, doc, "gpu")[3][2] == "-"
    rows = gc.targets({"grading": "not measured: the sandbox cannot start here",
                       "fcn8s_share_of_matmul_peak_pct": None}, {}, "gpu")
    assert [v for _, _, v in rows] == ["-"] * 4 and "cannot start" in rows[1][1]

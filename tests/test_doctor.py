"""``python -m autograder doctor`` reports isolation, limits, GPUs, data and weights, and fails
clearly when the asked-for mode cannot work."""

from pathlib import Path

import pytest

from autograder import doctor
from autograder.__main__ import main
from autograder.sandbox import isolation_mode


def test_doctor_reports_this_machine(monkeypatch, repo_root):
    sample = repo_root / "datasets" / "sample"
    monkeypatch.setenv("CMP_FACADE_ROOT", str(sample))
    lines = []
    assert doctor.run_doctor(need_data=True, log=lines.append), lines
    text = "\n".join(lines)
    assert f"isolation: {isolation_mode()}:" in text
    assert "CPU sandbox limits: memory:" in text and "processes:" in text
    assert "CPU sandbox: starts and runs a matmul" in text
    n = len(list((sample / "base").glob("*.jpg")))
    assert f"data: {sample} ({n} images)" in text
    assert text.endswith("verdict: OK, this machine can grade as asked")


@pytest.mark.skipif(Path("/dev/nvidia0").exists(), reason="this machine has a GPU 0")
def test_doctor_fails_clearly_without_the_gpu_asked_for(monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("VGG16_WEIGHTS", str(tmp_path / "missing.pth"))
    assert main(["doctor", "--gpus", "0", "--need-weights"]) == 1
    out = capsys.readouterr().out
    assert "GPU 0: FAILED" in out and "/dev/nvidia0 does not exist" in out
    assert "weights: NOT FOUND" in out and "missing.pth" in out
    assert "CANNOT grade as asked" in out


def test_missing_data_fails_only_when_asked_for(monkeypatch, tmp_path):
    monkeypatch.setattr(doctor, "_sandbox_check", lambda *a, **k: True)  # tested above; skip the start
    monkeypatch.setenv("CMP_FACADE_ROOT", str(tmp_path))  # no base/ inside
    lines = []
    assert doctor.run_doctor(log=lines.append)
    assert any(line.startswith("  data: NOT FOUND") for line in lines), lines
    assert not doctor.run_doctor(need_data=True, log=lines.append)

"""The run record: the data set's checksum, sample detection, what record_run shows."""

from __future__ import annotations

import shutil

from assignment_lib import run_record
from assignment_lib.data import SAMPLE_ROOT


def test_sample_facts_and_checksum(tmp_path, capsys):
    facts = run_record.record_run(SAMPLE_ROOT)
    assert set(facts) == set(run_record.RUN_KEYS)
    assert facts["dataset"] == "sample" and len(facts["dataset_sha256"]) == 64
    out = capsys.readouterr().out
    assert "WARNING: Running on the 24-image SAMPLE" in out and "run record: budget" in out
    # a copy with one changed label file has another checksum and is not "the sample"
    copy = tmp_path / "copy"
    shutil.copytree(SAMPLE_ROOT, copy)
    assert run_record.dataset_sha256(copy) == facts["dataset_sha256"]
    assert not run_record.is_sample(copy)
    png = min((copy / "base").glob("*.png"))
    png.write_bytes(png.read_bytes() + b"\0")
    run_record._dataset_sha256.cache_clear()
    assert run_record.dataset_sha256(copy) != facts["dataset_sha256"]


def test_warnings_name_the_flag():
    facts = {"budget": "smoke", "smoke": True, "dataset": "sample", "dataset_sha256": "0" * 64,
             "kit_version": "0"}
    sample, smoke = sorted(run_record.warnings_for(facts), key=lambda w: "SMOKE" in w)
    assert "--allow-sample" in sample and "--allow-smoke" in smoke
    assert run_record.warnings_for({**facts, "smoke": False, "dataset": "full"}) == []

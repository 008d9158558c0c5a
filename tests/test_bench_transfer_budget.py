"""benchmarks/bench_transfer_budget.py, which the GPU check runs (step 7) where no second try is
cheap: it runs on the notebooks' own cells, writes its JSON, and counts batches from the full
data's part counts when given them. Smoke budget, one probe batch: about 25 s for both runs."""

import json
import os
import re
import subprocess
import sys


def _run(repo_root, tmp_path, data_root, weights, *extra):
    out = tmp_path / f"estimate{len(extra)}.json"
    env = {**os.environ, "CMP_FACADE_ROOT": str(data_root), "VGG16_WEIGHTS": str(weights),
           "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
    r = subprocess.run([sys.executable, "benchmarks/bench_transfer_budget.py", "--budget", "smoke",
                        "--device", "cpu", "--probe-batches", "1", "--json", str(out), *extra],
                       cwd=repo_root, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    return json.loads(out.read_text()), r.stdout


def _batches(doc, prefix):
    (what,) = [w for nb, w, _ in doc["rows"] if nb == "byol_and_aspp" and w.startswith(prefix)]
    return int(re.search(r"(\d+) batches", what).group(1))


def test_estimate_covers_every_training_run_and_uses_the_full_part_counts(repo_root, tmp_path, full_data_root,
                                                                        vgg16_features_path):
    doc, stdout = _run(repo_root, tmp_path, full_data_root, vgg16_features_path)
    assert doc["budget"] == "smoke" and set(doc["totals_s"]) == {"transfer_and_features", "byol_and_aspp"}
    whats = [w for _, w, _ in doc["rows"]]
    for run in ("feature_extractor:", "fine_tune:", "scratch:", "FCN head:", "ASPP head:", "BYOL pre-training:",
                "supervised pre-training:", "downstream, fine-tune all:", "downstream, frozen backbone:"):
        assert any(w.startswith(run) for w in whats), run
    assert all(s >= 0 for _, _, s in doc["rows"])
    assert abs(doc["total_s"] - sum(doc["totals_s"].values())) < 1e-6
    assert f"estimated {doc['total_s']:.0f} s" in stdout

    # given part counts, the runs over a split's parts count their batches from them (here: none
    # left, so no batch), not from the parts of the data at hand
    counts = tmp_path / "counts.json"
    counts.write_text(json.dumps({"train": [0] * 10, "test": [0] * 10}))
    scaled, _ = _run(repo_root, tmp_path, full_data_root, vgg16_features_path, "--parts-counts", str(counts),
                     "--notebooks", "byol_and_aspp")
    assert scaled["parts_counts"]["train"] == [0] * 10
    for run in ("supervised pre-training", "downstream, fine-tune all"):
        assert _batches(doc, run) > 0 and _batches(scaled, run) == 0, run

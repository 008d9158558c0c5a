"""The data-and-metrics tour runs on the bundled sample and its numbers are consistent."""

from __future__ import annotations

import re

import numpy as np
import pytest

from assignment_lib import tour
from assignment_lib.data import CLASS_NAMES, split_ids


def test_tour_on_sample(sample_root, tmp_path, capsys):
    out = tmp_path / "pics" / "samples.png"
    assert tour.main(["--root", str(sample_root), "--out", str(out), "--max-side", "128"]) == 0
    text = capsys.readouterr().out
    assert out.is_file() and out.stat().st_size > 10_000

    rows = {}
    for name in CLASS_NAMES:
        m = re.search(rf"^\s*\d+ {name}\s+([\d.]+)%\s+([\d.]+)%\s+([\d.]+)%", text, re.MULTILINE)
        assert m, f"no table row for {name}"
        rows[name] = [float(v) for v in m.groups()]
    shares = np.array(list(rows.values()))  # (class, split) in percent
    np.testing.assert_allclose(shares.sum(0), 100, atol=0.05)
    images = re.search(r"^images\s+(\d+)\s+(\d+)\s+(\d+)", text, re.MULTILINE).groups()
    assert [int(v) for v in images] == [len(split_ids(s, sample_root)) for s in tour.SPLITS]

    # "always facade": pixel accuracy = facade share of val; IoU(facade) = that share too, the
    # other classes present in val get IoU 0, absent ones are left out of the mean.
    m = re.search(r'^"always facade"\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)', text, re.MULTILINE)
    pix, mean_acc, miou, _ = (float(v) for v in m.groups())
    facade_val = rows["facade"][1] / 100
    present = int((shares[:, 1] > 0).sum())
    assert pix == pytest.approx(facade_val, abs=6e-4)
    assert mean_acc == pytest.approx(1 / present, abs=6e-4)
    assert miou == pytest.approx(facade_val / present, abs=6e-4)

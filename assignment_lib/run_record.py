"""The run record: what a notebook ran with (budget, smoke mode, data set and its checksum, kit
version), written into the notebook's output so that :mod:`assignment_lib.submit` can read it.

Each notebook's setup cell calls :func:`record_run`. In Jupyter it displays the facts as one
output with the MIME type :data:`RUN_RECORD_MIME` (saved with the notebook, shown as a one-line
text), plus a visible banner when the run is on the bundled sample or in smoke mode.
"""

from __future__ import annotations

import hashlib
import html
import os
from functools import lru_cache
from pathlib import Path

from assignment_lib import __version__
from assignment_lib.config import BUDGET, SMOKE
from assignment_lib.data import SAMPLE_ROOT, SPLITS, find_data_root, split_ids

#: MIME type of the run-record output in a notebook cell.
RUN_RECORD_MIME = "application/vnd.fcn-kit.run-record+json"

#: Keys of a run record (the manifest's ``run`` dict adds ``allowed``).
RUN_KEYS = ("budget", "smoke", "dataset", "dataset_sha256", "kit_version")


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@lru_cache(maxsize=4)
def _dataset_sha256(root: str) -> str:
    lines = []
    for image_id in sorted({i for split in SPLITS for i in split_ids(split, root)}):
        for ext in ("jpg", "png"):
            lines.append(f"{_file_sha256(Path(root) / 'base' / f'{image_id}.{ext}')}  base/{image_id}.{ext}\n")
    return hashlib.sha256("".join(lines).encode()).hexdigest()


def dataset_sha256(root: str | os.PathLike | None = None) -> str:
    """Checksum of the data a notebook trains and evaluates on: sha256 of the ``sha256sum``-style
    lines (``<sha256>  base/<id>.jpg|png``, sorted) of every photo and label map of the three
    splits under ``root`` (default :func:`~assignment_lib.data.find_data_root`). 64 hex digits;
    about 0.2 s for the full base set, cached per root.

    Raises:
        DataError: no data, or a listed file is missing.
    """
    return _dataset_sha256(str(find_data_root(root).resolve()))


def is_sample(root: str | os.PathLike | None = None) -> bool:
    """True when ``root`` (default: the data the notebooks find) is the bundled 24-image sample."""
    return find_data_root(root).resolve() == SAMPLE_ROOT.resolve()


def run_facts(root: str | os.PathLike | None = None) -> dict:
    """The run record of this process: ``{"budget": "gpu"|"cpu"|"smoke", "smoke": bool,
    "dataset": "full"|"sample", "dataset_sha256": str, "kit_version": str}``."""
    return {"budget": BUDGET, "smoke": SMOKE, "dataset": "sample" if is_sample(root) else "full",
            "dataset_sha256": dataset_sha256(root), "kit_version": __version__}


def _summary(facts: dict) -> str:
    return (f"run record: budget {facts['budget']}, data set {facts['dataset']} "
            f"(sha256 {facts['dataset_sha256'][:12]}...), assignment_lib {facts['kit_version']}")


def warnings_for(facts: dict) -> list[str]:
    """Plain-text warnings for a run record: one for a sample run, one for a smoke run."""
    out = []
    if facts["dataset"] == "sample":
        out.append("Running on the 24-image SAMPLE, not the CMP Facade data set: scores and figures "
                   "mean little. Get the data with `python -m assignment_lib.download` (or set "
                   "CMP_FACADE_ROOT), then restart the kernel and run all cells. `submit` refuses a "
                   "sample run unless you pass --allow-sample.")
    if facts["smoke"]:
        out.append("SMOKE MODE (ASSIGNMENT_SMOKE=1 or ASSIGNMENT_BUDGET=smoke): every training run is "
                   "tiny and the numbers are meaningless. Unset it and restart before you hand in; "
                   "`submit` refuses a smoke run unless you pass --allow-smoke.")
    return out


def _banner_html(lines: list[str]) -> str:
    body = "<br>".join(html.escape(line) for line in lines)
    return ('<div style="border:3px solid #E20134;background:#FFF3C4;color:#000;padding:8px 12px;'
            f'font-size:110%;font-weight:bold">&#9888; {body}</div>')


def record_run(root: str | os.PathLike | None = None) -> dict:
    """Record this run's facts (:func:`run_facts`) in the notebook and warn about sample or smoke
    runs with a visible banner. Outside Jupyter it prints the summary (and the warning as text).

    Returns:
        the facts dict.
    """
    facts = run_facts(root)
    warnings = warnings_for(facts)
    try:
        from IPython import get_ipython
        from IPython.display import HTML, display
    except ImportError:  # pragma: no cover - IPython ships with Jupyter
        get_ipython = None
    if get_ipython is not None and get_ipython() is not None:
        if warnings:
            display(HTML(_banner_html(warnings)))
        display({RUN_RECORD_MIME: facts, "text/plain": _summary(facts)}, raw=True)
    else:
        for line in warnings:
            print("WARNING: " + line)
        print(_summary(facts))
    return facts

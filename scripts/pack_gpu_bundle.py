"""Pack what a GPU machine needs for ``scripts/gpu_check.sh``, within 64 MiB per call.

A lent GPU machine gets only the repository (64 MiB per call) and has no network and no
``../shared``; it runs Python 3.12 with torch and torchvision but no nbformat, pytest, nbgrader or
bubblewrap. This writes, into ignored folders of the repository:

- ``cmp_facade/``: every pair of the base set shrunk so its longer side is at most ``--max-side``
  (default 512, the GPU recipe's resolution; photo re-encoded as JPEG quality 90, label NEAREST),
  in the original layout, so ``CMP_FACADE_ROOT`` can point at it;
- ``vgg16_features_fp16.pth``: the features-only VGG-16 state dict in float16 (half the bytes;
  ``copy_vgg16_weights`` casts back to the model's float32), for ``VGG16_WEIGHTS``;
- ``parts_counts.json``: the transfer_learning facade parts per class of the train and test splits,
  cut from the FULL-resolution label maps (``{"train": [10 counts], "test": [...]}``): the shrunk
  copy yields fewer parts, and ``benchmarks/bench_transfer_budget.py`` counts batches from these;
- ``wheels/``: wheels (``--python-versions``, default 3.12 and this interpreter's) of what calibration,
  the benchmark and the hidden tests import beyond torch: nbformat, pytest, tqdm and their
  dependencies (``pip download --only-binary=:all: --no-deps``);
- ``bwrap/``: Debian's bubblewrap package unpacked with ``dpkg -x`` (``apt-get download bubblewrap``);

and, into ``--grading-out`` (default ``.device_bundle_grading/``), the wheels of nbgrader and its
import chain (``autograder.notebook`` checks cells with nbgrader's checksum, and importing nbgrader
imports jupyter_server, nbconvert, sqlalchemy...: about 31 MiB). Data, weights and those wheels do
not fit in one 64 MiB call, so the GPU session carries ``.device_bundle_grading`` in a first call
that only unpacks it (``bash scripts/gpu_check.sh install``; what it unpacks, ``.device_site/``,
stays on the warm machine) and ``.device_bundle`` in the second, which runs the check.

Thresholds calibrated on this copy differ from ones on the original JPEGs only by the
re-encoding; recalibrate on the grading machine's own data where it has them.

Usage::

    python scripts/pack_gpu_bundle.py [--data DIR] [--weights FILE] [--out .device_bundle]

then on the GPU machine: see ``scripts/gpu_check.sh``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "datasets"))
sys.path.insert(0, str(REPO))
from make_sample import shrink_copy

from assignment_lib.data import find_data_root
from assignment_lib.facade_parts import N_PART_CLASSES, load_parts
from assignment_lib.weights import load_vgg16_state_dict

LIMIT = 60 * 2**20  # leave room for the repository itself under the 64 MiB a call carries
#: What the check imports beyond torch/torchvision (which the GPU machine has), dependencies included.
CORE_WHEELS = ("nbformat", "fastjsonschema", "jsonschema", "jsonschema-specifications", "referencing",
               "rpds-py", "attrs", "jupyter-core", "platformdirs", "traitlets", "typing-extensions",
               "pytest", "pluggy", "iniconfig", "packaging", "pygments", "tqdm")
#: nbgrader and what importing it imports (measured: the modules ``import nbgrader.utils`` loads).
GRADING_WHEELS = (
    "nbgrader>=0.9,<0.10", "arrow", "bleach", "beautifulsoup4", "certifi", "charset-normalizer",
    "python-dateutil", "defusedxml", "fqdn", "idna", "isoduration", "jsonpointer", "jupyter-client",
    "jupyter-server", "jupyterlab-pygments", "lark", "mistune", "nbclient", "nbconvert", "notebook",
    "pandocfilters", "prometheus-client", "rapidfuzz", "requests", "rfc3339-validator",
    "rfc3986-validator", "rfc3987-syntax", "six", "soupsieve", "sqlalchemy", "tinycss2", "tornado",
    "uri-template", "urllib3", "webcolors", "webencodings", "pyyaml", "pyzmq", "setuptools",
    "jinja2", "markupsafe", "greenlet", "tzdata", "types-python-dateutil", "anyio", "sniffio",
    "argon2-cffi", "argon2-cffi-bindings", "cffi", "pycparser", "send2trash", "terminado",
    "websocket-client", "overrides", "jupyter-events", "python-json-logger", "jupyter-server-terminals",
    "ptyprocess", "h11", "jupyterlab-server", "babel", "json5", "alembic", "mako", "rpds-py",
    "jsonschema", "jsonschema-specifications", "referencing", "attrs", "fastjsonschema",
    "jupyter-core", "platformdirs", "traitlets", "nbformat", "packaging", "pygments", "typing-extensions")


def download_wheels(names, dest: Path, versions) -> None:
    """``pip download --only-binary=:all: --no-deps`` of ``names`` for each Python version."""
    dest.mkdir(parents=True, exist_ok=True)
    for v in versions:
        cmd = [sys.executable, "-m", "pip", "download", "-qq", "--no-deps", "--only-binary=:all:",
               "--python-version", v, "--implementation", "cp", "--platform", "manylinux_2_28_x86_64",
               "--platform", "manylinux_2_17_x86_64", "--platform", "manylinux2014_x86_64",
               "--platform", "manylinux_2_5_x86_64", "--platform", "manylinux1_x86_64",
               "--platform", "any", "-d", str(dest), *names]
        subprocess.run(cmd, check=True)


def unpack_bubblewrap(dest: Path) -> bool:
    """``apt-get download bubblewrap`` and ``dpkg -x`` it into ``dest``; False when apt is missing."""
    if shutil.which("apt-get") is None or shutil.which("dpkg") is None:
        return False
    with tempfile.TemporaryDirectory() as tmp:
        r = subprocess.run(["apt-get", "download", "-q", "bubblewrap"], cwd=tmp, capture_output=True, check=False)
        debs = list(Path(tmp).glob("bubblewrap_*.deb"))
        if r.returncode != 0 or not debs:
            print(f"note: apt-get download bubblewrap failed: {r.stderr.decode()[-300:]}", file=sys.stderr)
            return False
        subprocess.run(["dpkg", "-x", str(debs[0]), str(dest)], check=True)
    return (dest / "usr" / "bin" / "bwrap").is_file()


def folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=None, help="CMP Facade base set (default: the usual search)")
    p.add_argument("--weights", type=Path, default=None, help="VGG-16 state dict (default: VGG16_WEIGHTS, ...)")
    p.add_argument("--out", type=Path, default=REPO / ".device_bundle")
    p.add_argument("--max-side", type=int, default=512)
    p.add_argument("--python-versions", nargs="+",
                   default=sorted({"3.12", f"{sys.version_info.major}.{sys.version_info.minor}"}),
                   help="wheels for these Pythons (the GPU machines run 3.12; this one practises)")
    p.add_argument("--no-wheels", action="store_true", help="data and weights only (no downloads)")
    p.add_argument("--grading-out", type=Path, default=REPO / ".device_bundle_grading")
    args = p.parse_args(argv)

    src = find_data_root(args.data)
    ids = sorted(f.stem for f in (src / "base").glob("*.jpg"))
    if len(ids) != 378:
        print(f"note: {src} holds {len(ids)} images, not the 378 of the full base set", file=sys.stderr)
    shutil.rmtree(args.out, ignore_errors=True)
    shrink_copy(src, args.out / "cmp_facade", ids, max_side=args.max_side, xml=False)
    if (src / "splits").is_dir():  # a partial set (the sample) carries its own split lists
        shutil.copytree(src / "splits", args.out / "cmp_facade" / "splits")

    counts = {split: np.bincount(load_parts(split, src, verbose=False).labels, minlength=N_PART_CLASSES).tolist()
              for split in ("train", "test")}
    (args.out / "parts_counts.json").write_text(json.dumps(counts) + "\n")

    state = load_vgg16_state_dict(args.weights)
    half = {k: v for k, v in state.items() if k.startswith("features.")}
    torch.save({k: v.to(torch.float16) for k, v in half.items()}, args.out / "vgg16_features_fp16.pth")

    if not args.no_wheels:
        download_wheels(CORE_WHEELS, args.out / "wheels", args.python_versions)
        print(f"bubblewrap unpacked: {unpack_bubblewrap(args.out / 'bwrap')}")
        shutil.rmtree(args.grading_out, ignore_errors=True)
        download_wheels(GRADING_WHEELS, args.grading_out / "wheels", args.python_versions)
        grading = folder_bytes(args.grading_out)
        print(f"{args.grading_out}: nbgrader's import chain, {grading / 2**20:.1f} MiB")
        if grading > LIMIT:
            print(f"{args.grading_out} is too large to carry: over {LIMIT / 2**20:.0f} MiB", file=sys.stderr)
            return 1

    size = folder_bytes(args.out)
    print(f"{args.out}: {len(ids)} pairs at max side {args.max_side}, {len(half)} weight tensors "
          f"(float16); {size / 2**20:.1f} MiB")
    if size > LIMIT:
        print(f"too large to carry: over {LIMIT / 2**20:.0f} MiB; lower --max-side", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Helpers of the FCN hidden tests (the generic fixtures and hooks are :mod:`autograder.hidden_plugin`,
which every assignment's hidden tests get); run by pytest in the TRUSTED grader process, never shipped.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from pathlib import Path

import torch

from autograder import reference as reference_mod
from autograder.assignment import Assignment
from autograder.hidden_plugin import WEIGHT_SEED, make_weights, weight_spec

__all__ = ["FCN_SIZES", "WEIGHT_SEED", "disk_cached", "fcn_inputs", "make_weights",
           "skip_default_init", "weight_spec"]

#: Input (H, W) of the FCN forward tests. Each is padded by 100 pixels by conv1_1, so the cost
#: of a forward pass grows with (H + 198) * (W + 198): these cost 36 % less than the earlier
#: ((64, 64), (97, 131), (33, 47)) and catch every wrong FCN of tests/test_fcn_sizes.py at as many
#: sizes as those did (more for floor pooling and swapped crop dimensions): both orientations, a
#: square, odd and even sides, a 2x2 score map (so the upsampling strides show).
FCN_SIZES = ((6, 27), (27, 6), (27, 27))


def pytest_configure(config):
    config.addinivalue_line("markers", "miou_cpu: CPU mIoU tier (opt-in)")


@contextlib.contextmanager
def skip_default_init():
    """Build models whose every parameter is overwritten next without their random conv/linear
    initialisation (``reset_parameters``): seconds saved per FCN. The trusted twin of the worker's
    ``_construct(..., default_init=False)``."""
    saved = {c: c.reset_parameters for c in (torch.nn.modules.conv._ConvNd, torch.nn.Linear)}
    try:
        for c in saved:
            c.reset_parameters = lambda self: None
        yield
    finally:
        for c, f in saved.items():
            c.reset_parameters = f


def fcn_inputs(sizes=FCN_SIZES, seed=WEIGHT_SEED) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed + 1)
    return [torch.randn(1, 3, h, w, generator=g) for h, w in sizes]


def disk_cached(cache_dir: Path | None, key: str, fn, bundle: dict):
    """Cache trusted reference results on disk (the sandbox never sees ``cache_dir``), keyed by
    ``key`` and the answer cells of the bundle's (``grading["bundle"]``) source notebooks."""
    if cache_dir is None:
        return fn()
    spec = Assignment.load(bundle["assignment"], bundle["notebooks"])
    src = "".join(reference_mod.cell_source(g, spec) for g in spec.answer_cells)
    digest = hashlib.sha256((src + key).encode()).hexdigest()[:24]
    path = cache_dir / f"ref_{digest}.pt"
    if path.is_file():
        try:
            return torch.load(path, weights_only=True)
        except Exception:
            path.unlink(missing_ok=True)
    value = fn()
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.{id(value)}.tmp")  # parallel graders share the cache
    torch.save(value, tmp)
    tmp.replace(path)
    return value

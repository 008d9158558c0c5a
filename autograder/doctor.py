"""``python -m autograder doctor``: can this machine grade, and how?

Prints the isolation mode and the limits a sandbox gets here, starts a real sandbox and runs a
small matrix product inside it, and for each GPU asked for (``--gpus 0,1``) its name and whether a
small CUDA matmul runs *inside* a CUDA sandbox under those limits (seeing only that GPU, as
``cuda:0``); then whether the CMP Facade data and the VGG-16 weights are found (with their
checksums). :func:`run_doctor` returns False, and the command exits 1, when the grading mode asked
for cannot work: no sandbox starts at all, an asked-for GPU fails, or data or weights asked for
(``--need-data``, ``--need-weights``) are missing. A weaker but working isolation mode is a warning,
not a failure; the report says why the stronger one is not available.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

CHECK_CELL = r'''
def doctor_check(device):
    import time, torch
    t0 = time.perf_counter()
    out = {"device": device, "count": torch.cuda.device_count() if device != "cpu" else 0}
    if device != "cpu" and out["count"] == 0:
        out.update(ok=False, error="no CUDA device is visible inside the sandbox")
        return out
    g = torch.Generator().manual_seed(0)
    a = torch.randn(512, 512, generator=g)
    want = a @ a
    x = a.to(device)
    got = (x @ x).cpu()
    err = float((got - want).abs().max() / want.abs().max())
    out.update(ok=err < 1e-2, max_rel_err=err, seconds=time.perf_counter() - t0)
    if device != "cpu":
        out["name"] = torch.cuda.get_device_name(0)
    return out
'''


def _sandbox_check(device: str, scratch: Path, slot: int, log) -> bool:
    """Start a sandbox for ``device`` and run the matmul inside; logs one line."""
    from autograder.sandbox import Sandbox, SandboxError

    what = "CPU sandbox" if device == "cpu" else f"GPU {device.split(':')[-1]}"
    t0 = time.monotonic()
    try:
        sb = Sandbox([{"grade_id": "doctor", "source": CHECK_CELL}], scratch / f"sb{slot}", slot=slot,
                     device=None if device == "cpu" else device, request_timeout=180, start_timeout=180)
    except (ValueError, OSError) as err:
        log(f"  {what}: FAILED to set up: {err}")
        return False
    try:
        if device != "cpu":
            log(f"  {what} sandbox limits: {sb.limits}")
        sb.start()
        r = sb.request("call", name="doctor_check", calls=[{"args": ["cpu" if device == "cpu" else "cuda:0"]}])
        res = r["results"][0]
    except (SandboxError, OSError) as err:
        _, errout = sb.output_tail(600)
        log(f"  {what}: FAILED: the sandbox did not run the check: {err}"
            + (f"\n    worker stderr: {errout.strip()[-600:]}" if errout.strip() else ""))
        return False
    finally:
        sb.close()
    if not res.get("ok"):
        log(f"  {what}: FAILED inside the sandbox: {res.get('error', '')[-800:]}")
        return False
    v = res["value"]
    if device != "cpu":
        name = v.get("name", "?")
        if v["count"] != 1 and sb.use_bwrap:
            log(f"  {what} ({name}): FAILED: the sandbox sees {v['count']} GPUs, should see only its own")
            return False
        if not v["ok"]:
            log(f"  {what} ({name}): FAILED: wrong matmul result (max relative error {v['max_rel_err']:.2g})")
            return False
        log(f"  {what} ({name}): CUDA matmul inside the sandbox ok as cuda:0, sees {v['count']} GPU(s), "
            f"{time.monotonic() - t0:.1f} s with start")
        return True
    if not v["ok"]:
        log(f"  {what}: FAILED: wrong matmul result (max relative error {v['max_rel_err']:.2g})")
        return False
    log(f"  {what}: starts and runs a matmul ({time.monotonic() - t0:.1f} s with start)")
    return True


def _data_report(log) -> bool:
    from assignment_lib.data import DataError, find_data_root
    from assignment_lib.download import MANIFEST, read_manifest, sha256_file

    try:
        root = find_data_root()
    except DataError as err:
        log(f"  data: NOT FOUND: {str(err).splitlines()[0]}")
        return False
    n = len(list((root / "base").glob("*.jpg")))
    line = f"  data: {root} ({n} images)"
    try:
        manifest = read_manifest(MANIFEST)
    except Exception:  # noqa: BLE001 - a report line, never a failure
        manifest = {}
    present = {rel: digest for rel, digest in manifest.items() if (root / rel).is_file()}
    if present:
        bad = [rel for rel, digest in present.items() if sha256_file(root / rel) != digest]
        line += (f"; sha256 of {len(present)} file(s) checked: "
                 + ("all match" if not bad else f"{len(bad)} differ from the original base set "
                    f"(e.g. {bad[0]}; a re-encoded copy such as the GPU bundle's, or damaged)"))
    log(line)
    return True


def _weights_report(log) -> bool:
    import warnings

    from assignment_lib.weights import WeightsError, find_vgg16_weights, load_vgg16_state_dict

    try:
        path = find_vgg16_weights()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            sd = load_vgg16_state_dict(path)
    except (FileNotFoundError, WeightsError, RuntimeError) as err:
        log(f"  weights: NOT FOUND or unusable: {str(err).splitlines()[0]}")
        return False
    check = "checksum not known (keys and shapes checked)" if caught else "sha256 verified"
    log(f"  weights: {path} ({len(sd)} tensors; {check})")
    return True


def run_doctor(gpus: list[int] | None = None, *, need_data: bool = False, need_weights: bool = False,
               log=print) -> bool:
    """Check that this machine can grade in the asked-for mode and print what applies.

    Args:
        gpus: GPU ids (PCI bus order, as ``grade --gpus``) to check inside a CUDA sandbox each.
        need_data: the CMP Facade data must be found (the mIoU tiers need it).
        need_weights: the VGG-16 weights must be found and load.
        log: called with each report line (str).

    Returns:
        True when the asked-for mode can work (a weaker isolation mode is reported, not failed).
    """
    from autograder import cgroups
    from autograder import gpus as gpus_mod
    from autograder.sandbox import MODES, isolation_mode, isolation_problems

    ok = True
    mode = isolation_mode()
    log(f"isolation: {mode}: {MODES[mode]}")
    for why in isolation_problems():
        log(f"  stronger isolation not available: {why}")
    if mode == "plain-process":
        log("  WARNING: submissions would run without filesystem or network isolation")
    layout = cgroups.detect_layout()
    if layout is None:
        log("cgroups: no memory controller found for this process")
    else:
        can = cgroups.available()
        log(f"cgroups: v{layout.version}, groups under {layout.memory_parent}: "
            + ("can be made (memory and process limits per sandbox)" if can else
               "cannot be made here (needs root or a delegated v2 subtree, e.g. "
               "`systemd-run --user --scope -p Delegate=yes ...`); falling back to rlimits"))
    with tempfile.TemporaryDirectory(prefix="fcn-doctor-") as tmp:
        scratch = Path(tmp)
        log("sandbox:")
        from autograder.sandbox import Sandbox

        probe = Sandbox([], scratch / "limits", slot=0)
        log(f"  CPU sandbox limits: {probe.limits}")
        probe.close()
        ok &= _sandbox_check("cpu", scratch, 0, log)
        if gpus:
            found = gpus_mod.list_gpus()
            log(f"GPUs: the driver reports {len(found)}" + (": " + ", ".join(
                f"{g.index}={g.model or '?'} ({g.pci}, /dev/nvidia{g.minor})" for g in found) if found else
                " (no /proc/driver/nvidia: no NVIDIA driver, or hidden, e.g. under gVisor)"))
            for i in gpus:
                ok &= _sandbox_check(f"cuda:{i}", scratch, 1 + i, log)
    log("data and weights:")
    data_ok = _data_report(log)
    weights_ok = _weights_report(log)
    if need_data and not data_ok:
        ok = False
    if need_weights and not weights_ok:
        ok = False
    log("verdict: " + ("OK, this machine can grade as asked" if ok else
                       "CANNOT grade as asked (see FAILED / NOT FOUND above)"))
    return ok

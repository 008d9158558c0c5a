"""Time one source notebook end to end, the way a student runs it: top to bottom in a fresh kernel.

Executes the notebook (solutions filled in) with nbclient under an assignment budget
(``ASSIGNMENT_BUDGET=cpu|gpu``, or ``ASSIGNMENT_SMOKE=1`` with ``--budget smoke``) and prints, per
code cell, its wall seconds and the kernel process's CPU seconds (user + system, from
``/proc/<pid>/stat``: the figure that does not depend on what else runs on the machine), then the
totals and the 1-minute load average. ``--out FILE`` keeps the executed notebook (its printed
results and figures); nothing is written into the repository.

    python benchmarks/bench_notebook.py notebooks/transfer_learning/byol_and_aspp.ipynb --budget cpu
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` and its waited-for children (Linux ``/proc``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = sum(int(x) for x in fields[11:15])  # utime, stime, cutime, cstime
    return ticks / os.sysconf("SC_CLK_TCK")


def main(argv=None) -> int:
    import nbformat
    from nbclient import NotebookClient

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("notebook", type=Path)
    p.add_argument("--budget", choices=("cpu", "gpu", "smoke"), default="cpu")
    p.add_argument("--timeout", type=int, default=7200, help="seconds per cell")
    p.add_argument("--out", type=Path, default=None, help="write the executed notebook here")
    args = p.parse_args(argv)

    if args.budget == "smoke":
        os.environ["ASSIGNMENT_SMOKE"] = "1"
    else:
        os.environ.pop("ASSIGNMENT_SMOKE", None)
        os.environ["ASSIGNMENT_BUDGET"] = args.budget
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    nb = nbformat.read(args.notebook, as_version=4)
    client = NotebookClient(nb, timeout=args.timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(args.notebook.parent)}})
    rows = []
    start = time.perf_counter()
    with client.setup_kernel():
        pid = client.km.provisioner.process.pid
        for index, cell in enumerate(nb.cells):
            if cell.cell_type != "code":
                continue
            t0, c0 = time.perf_counter(), _cpu_seconds(pid)
            client.execute_cell(cell, index)
            wall, cpu = time.perf_counter() - t0, _cpu_seconds(pid) - c0
            gid = cell.metadata.get("nbgrader", {}).get("grade_id") or f"cell {index}"
            rows.append((gid, wall, cpu))
            print(f"{gid:<32} {wall:8.1f} s wall {cpu:8.1f} CPU-s", flush=True)
        total_cpu = _cpu_seconds(pid)
    total = time.perf_counter() - start
    if args.out is not None:
        nbformat.write(nb, args.out)
    print(f"{args.notebook.name} [{args.budget}]: {total:.0f} s wall, {total_cpu:.0f} CPU-s in the kernel, "
          f"{len(rows)} code cells, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

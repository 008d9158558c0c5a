"""Grading throughput: seconds per submission (CPU tests), local --jobs 1 / --jobs 2 and a Dask
LocalCluster of 2 workers, as ratios to local --jobs 1.

    python benchmarks/bench_grade.py [--copies 4] [--out DIR]

Builds the release, makes the demo's reference submission, copies it ``--copies`` times (one
student folder each) and grades them with the real runner (sandbox included, mIoU tier off),
with the local executor at ``--jobs 1`` and ``--jobs 2`` and with ``--executor dask`` (a
LocalCluster of 2 workers), each with ``--force`` into a fresh output folder. Prints the wall-clock
seconds, seconds per submission and each run's time as a ratio to local ``--jobs 1``, and the same
for ``nbgrader autograde`` in smoke mode (``ASSIGNMENT_SMOKE=1``, the plain-nbgrader route) on the
same copies (``--no-nbgrader`` skips it). Every copy must score full marks,
otherwise the figures would be measuring failures.

Before the timed runs, one untimed job fills the trusted reference cache (as the first submission
of a course does). After the ``--jobs 1`` run it prints where a submission's time went (median
over the copies), from the ``timings.json`` each hidden-tests process writes
(:mod:`autograder.hidden_run`), and at the end the Dask run's overhead over local ``--jobs 2``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

# Only light imports at the top: a Dask LocalCluster's worker processes (spawned) import this
# script again as __mp_main__, so anything heavy here (torch, nbformat: autograder.release)
# would be paid by every worker and counted as Dask overhead, which `python -m autograder grade`
# (whose __main__ is light) does not pay.
from autograder import demo
from autograder.assignment import get_assignment
from autograder.grade import GradeOptions, grade_all
from autograder.settings import GradingSettings
from autograder.submissions import find_submissions


def nbgrader_autograde(course: Path, copies: Path, n: int) -> float:
    """Seconds for ``nbgrader autograde`` (smoke mode) of the copies in ``course``."""
    import subprocess

    ASSIGNMENT = "fcn_segmentation"

    for d in sorted(copies.iterdir()):
        dest = course / "submitted" / d.name / ASSIGNMENT
        shutil.rmtree(dest, ignore_errors=True)
        dest.mkdir(parents=True)
        for nb in d.glob("*.ipynb"):
            shutil.copy2(nb, dest / nb.name)
    env = dict(os.environ, ASSIGNMENT_SMOKE="1", CMP_FACADE_ROOT=str(demo.demo_data_root()))
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "nbgrader", "autograde", ASSIGNMENT, "--force"],
                          cwd=course, env=env, capture_output=True, text=True, check=False)
    took = time.perf_counter() - t0
    status = "ok" if proc.returncode == 0 else f"FAILED (exit {proc.returncode})"
    print(f"nbgrader autograde (smoke): {took:.1f} s wall for {n} submissions = {took / n:.1f} s per "
          f"submission ({status})")
    return took


#: Hidden tests grouped for the breakdown: group -> test-name prefixes.
TEST_GROUPS = {
    "FCN forward passes in the sandbox (output size, same weights)": ("test_fcn32s_output_size",
        "test_fcn8s_output_size", "test_fcn32s_same_weights", "test_fcn8s_same_weights"),
    "FCN layer tests (models built in the sandbox, described)": ("test_fcn32s_layer", "test_fcn8s_layer",
        "test_fcn32s_param", "test_fcn8s_param", "test_fcn32s_upsampling", "test_fcn8s_upsampling"),
    "soft IoU and transposed-conv padding tests": ("test_soft_iou", "test_transposed_conv"),
}


def print_phases(scratch: Path, job_walls: list[float]) -> None:
    """Median per-phase seconds of the jobs whose ``timings.json`` (written by
    :mod:`autograder.hidden_run`) lie under ``scratch``."""
    from statistics import median

    runs = [json.loads(p.read_text()) for p in scratch.glob("*/timings.json")]
    if not runs:
        print("  (no timings.json found: no per-phase breakdown)")
        return
    rows = {}
    for t in runs:
        ph, tests = t["phases"], t["tests"]
        setup = sum(d.get("setup", 0.0) for d in tests.values())
        def run(d):
            return d.get("call", 0.0) + d.get("teardown", 0.0)

        calls = {g: sum(run(d) for n, d in tests.items() if n.startswith(pre))
                 for g, pre in TEST_GROUPS.items()}
        grouped = sum(calls.values())
        every = sum(run(d) for d in tests.values())
        row = {"pytest process start-up (interpreter, pytest, torch, conftest; the sandbox worker "
               "starts meanwhile)": ph["configured"],
               "collection": ph["collected"] - ph["configured"],
               "sandbox start: the cells run (fixture setup)": setup}
        row.update(calls)
        row["other tests"] = every - grouped
        row["pytest process total"] = ph["finished"]
        row["pytest process CPU (trusted side only)"] = t["cpu_s"]
        rows[len(rows)] = row
    print(f"  per-phase breakdown, median over {len(runs)} submissions (seconds):")
    for key in rows[0]:
        print(f"    {key}: {median(r[key] for r in rows.values()):.2f}")
    print(f"    the whole job (parse, pytest process, outcomes): {median(job_walls):.2f}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--copies", type=int, default=4)
    p.add_argument("--out", default=None, help="work folder (default: a temporary one)")
    p.add_argument("--no-nbgrader", action="store_true", help="skip the nbgrader autograde run")
    args = p.parse_args(argv)
    from autograder import release  # (not at the top: see the imports)

    out = Path(args.out or tempfile.mkdtemp(prefix="bench_grade_"))
    paths = release.release(out / "release", "fcn_segmentation")
    demo.make_submissions(paths.release, get_assignment("fcn_segmentation"), paths.expected_cells, out / "made")
    copies = out / "copies"
    shutil.rmtree(copies, ignore_errors=True)
    for i in range(args.copies):
        shutil.copytree(out / "made" / "reference", copies / f"ref{i}")
    subs = find_submissions([copies], out / "work")
    print(f"{len(subs)} copies of the reference submission; {os.cpu_count()} CPU cores; data {demo.demo_data_root()}")
    times = {}
    # scratch kept (in the work folder) for the per-phase breakdown of the --jobs 1 run
    settings = GradingSettings(data_root=str(demo.demo_data_root()), keep_scratch=True,
                               scratch_root=str(out / "scratch"))
    # untimed: one job fills the trusted reference cache (as the first submission of a course does)
    from autograder.job import GradeJob, grade_job

    t0 = time.perf_counter()
    grade_job(GradeJob("warm-up", {f.name: f.read_bytes() for f in (copies / "ref0").glob("*.ipynb")},
                       dataclasses.replace(settings, keep_scratch=False), cpu_threads=1))
    print(f"warm-up job (fills the reference cache, not timed): {time.perf_counter() - t0:.1f} s")
    for name, executor, jobs in (("local --jobs 1", "local", 1), ("local --jobs 2", "local", 2),
                                 ("dask LocalCluster 2 workers", "dask", 2)):
        opts = GradeOptions(out=out / f"{executor}{jobs}", settings=settings, jobs=jobs, force=True,
                            executor=executor, progress=False, pdf=False)
        t0 = time.perf_counter()
        summary = grade_all(subs, opts, log=lambda *a: None)
        times[name] = time.perf_counter() - t0
        bad = [r.student for r in summary.results if r.score != r.max_score or r.max_score == 0]
        if bad or summary.failed or summary.infrastructure:
            print(f"error: not full marks with {name}: {bad or summary.failed or summary.infrastructure}",
                  file=sys.stderr)
            return 1
        per = [r.wall_s for r in summary.results]
        print(f"{name}: {times[name]:.1f} s wall for {len(subs)} submissions = "
              f"{times[name] / len(subs):.1f} s per submission (job's own time per submission: "
              f"{min(per):.1f}-{max(per):.1f} s)")
        if jobs == 1 and executor == "local":
            print_phases(out / "scratch", per)
        for d in (out / "scratch").glob("*.slot*"):
            shutil.rmtree(d, ignore_errors=True)
    if not args.no_nbgrader:
        times["nbgrader autograde (smoke)"] = nbgrader_autograde(paths.course, copies, len(subs))
    base = times["local --jobs 1"]
    for name, t in times.items():
        print(f"ratio to local --jobs 1: {name}: {t / base:.2f}")
    over = times["dask LocalCluster 2 workers"] / times["local --jobs 2"] - 1
    print(f"Dask LocalCluster overhead over local --jobs 2 (same parallelism): {100 * over:+.1f} %")
    return 0


if __name__ == "__main__":
    sys.exit(main())

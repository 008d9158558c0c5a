"""Grading throughput: seconds per submission (CPU tests) and the speed-up of --jobs 2 over --jobs 1.

    python benchmarks/bench_grade.py [--copies 4] [--out DIR]

Builds the release, makes the demo's reference submission, copies it ``--copies`` times (one
student folder each) and grades them with the real runner (sandbox included, mIoU tier off),
once with ``--jobs 1`` and once with ``--jobs 2`` (``--force``, fresh output folders). Prints the
wall-clock seconds, seconds per submission and the speed-up. Every copy must score full marks,
otherwise the figures would be measuring failures.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from autograder import demo, release
from autograder.grade import GradeOptions, grade_all
from autograder.submissions import find_submissions


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--copies", type=int, default=4)
    p.add_argument("--out", default=None, help="work folder (default: a temporary one)")
    args = p.parse_args(argv)
    out = Path(args.out or tempfile.mkdtemp(prefix="bench_grade_"))
    paths = release.release(out / "release")
    demo.make_submissions(paths.release, demo.REPO / "notebooks", paths.expected_cells, out / "made")
    copies = out / "copies"
    shutil.rmtree(copies, ignore_errors=True)
    for i in range(args.copies):
        shutil.copytree(out / "made" / "reference", copies / f"ref{i}")
    subs = find_submissions([copies], out / "work")
    print(f"{len(subs)} copies of the reference submission; {os.cpu_count()} CPU cores; data {demo.demo_data_root()}")
    times = {}
    for jobs in (1, 2):
        opts = GradeOptions(out=out / f"jobs{jobs}", jobs=jobs, force=True, progress=False, pdf=False,
                            data_root=demo.demo_data_root())
        t0 = time.perf_counter()
        summary = grade_all(subs, opts, log=lambda *a: None)
        times[jobs] = time.perf_counter() - t0
        bad = [r.student for r in summary.results if r.score != r.max_score or r.max_score == 0]
        if bad or summary.failed:
            print(f"error: not full marks with --jobs {jobs}: {bad or summary.failed}", file=sys.stderr)
            return 1
        per = [r.wall_s for r in summary.results]
        print(f"--jobs {jobs}: {times[jobs]:.1f} s wall for {len(subs)} submissions = "
              f"{times[jobs] / len(subs):.1f} s per submission (runner's own time per submission: "
              f"{min(per):.1f}-{max(per):.1f} s)")
    print(f"speed-up of --jobs 2 over --jobs 1: {times[1] / times[2]:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())

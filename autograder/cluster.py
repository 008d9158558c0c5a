"""Grading workers for the Dask executor: ``python -m autograder worker`` and ``cluster slurm``.

A worker serves exactly one kind of job: ``--gpu I`` (resource ``GPU=1``, one thread,
``CUDA_VISIBLE_DEVICES=I`` so the job's ``cuda:0`` is that GPU) or ``--cpu-slots K`` (resource
``CPU=K``, K threads). Before it joins the scheduler it checks itself (the sandbox starts, and for a
GPU worker the GPU is visible) and refuses to start, saying why, when a check fails. The data and
weights for an mIoU tier are checked by every job against the calibration's checksum.

``python -m autograder cluster slurm`` submits such workers as SLURM jobs through dask-jobqueue
(the optional extra ``[cluster]``), or prints their job script with ``--print-script``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys


def self_check(gpu: int | None, log=print) -> bool:
    """True when this machine can grade: ``autograder.doctor.run_doctor`` where it exists (a GPU
    worker also needs the data and the VGG-16 weights of the mIoU tier), else a sandbox that starts
    and answers a ping (and a visible GPU)."""
    try:
        from autograder.doctor import run_doctor
    except ImportError:
        run_doctor = None
    if run_doctor is not None:
        gpu_worker = gpu is not None
        return bool(run_doctor([gpu] if gpu_worker else None, need_data=gpu_worker,
                               need_weights=gpu_worker, log=log))
    import tempfile
    from pathlib import Path

    from autograder.sandbox import Sandbox, SandboxError

    ok = True
    with tempfile.TemporaryDirectory(prefix="fcn-worker-check-") as tmp:
        try:
            with Sandbox([], Path(tmp) / "scratch") as sb:
                sb.request("ping")
                log(f"ok: the sandbox starts ({sb.isolation})")
        except (SandboxError, OSError) as err:
            log(f"FAILED: the sandbox does not start: {err}")
            ok = False
    if gpu is not None:
        import torch

        if not torch.cuda.is_available() or torch.cuda.device_count() <= gpu:
            log(f"FAILED: GPU {gpu} is not visible to torch (CUDA_VISIBLE_DEVICES="
                f"{os.environ.get('CUDA_VISIBLE_DEVICES')!r})")
            ok = False
        else:
            log(f"ok: GPU {gpu} visible ({torch.cuda.get_device_name(gpu)})")
    return ok


def worker_command(scheduler: str, gpu: int | None = None, cpu_slots: int = 1,
                   name: str | None = None) -> tuple[list[str], dict[str, str]]:
    """``(argv, environment)`` of a ``dask worker`` serving one kind of grading job."""
    env = dict(os.environ)
    if gpu is not None:
        env["CUDA_VISIBLE_DEVICES"] = str(gpu)
        threads, resources = 1, "GPU=1"
    else:
        from autograder.executors import JOB_THREADS_ENV
        from autograder.job import usable_cores

        env["CUDA_VISIBLE_DEVICES"] = ""
        env[JOB_THREADS_ENV] = str(max(1, usable_cores() // cpu_slots))
        threads, resources = cpu_slots, f"CPU={cpu_slots}"
    argv = [sys.executable, "-m", "distributed.cli.dask_worker", scheduler, "--nthreads",
            str(threads), "--nworkers", "1", "--resources", resources, "--no-dashboard"]
    if name:
        argv += ["--name", name]
    return argv, env


def run_worker(scheduler: str, gpu: int | None = None, cpu_slots: int = 1,
               check_only: bool = False, log=print) -> int:
    """Self-check, then run the Dask worker until it stops; returns an exit code (3: check failed)."""
    if not self_check(gpu, log=log):
        log("error: this worker's self-check failed; not starting (fix the above and retry)")
        return 3
    if check_only:
        return 0
    if not scheduler:
        log("error: --scheduler ADDR is needed to start a worker")
        return 2
    argv, env = worker_command(scheduler, gpu, cpu_slots)
    log(f"starting: {' '.join(argv)}")
    return subprocess.call(argv, env=env)


# ----------------------------------------------------------------------------- SLURM


def add_slurm_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--scheduler-host", default=None,
                   help="interface or address the scheduler listens on (default: dask-jobqueue's)")
    p.add_argument("--gpu-workers", type=int, default=0, help="SLURM jobs with one GPU each")
    p.add_argument("--cpu-workers", type=int, default=0, help="SLURM jobs of --cpu-slots CPU jobs each")
    p.add_argument("--cpu-slots", type=int, default=2, help="CPU jobs per CPU worker (default 2)")
    p.add_argument("--queue", default=None, help="SLURM partition")
    p.add_argument("--account", default=None, help="SLURM account")
    p.add_argument("--walltime", default="04:00:00")
    p.add_argument("--memory", default="16GB", help="memory per worker job")
    p.add_argument("--print-script", action="store_true",
                   help="print the job scripts and exit (submits nothing)")


def slurm_cluster(kind: str, args: argparse.Namespace):
    """A ``dask_jobqueue.SLURMCluster`` whose jobs run one grading worker of ``kind`` (``gpu`` or
    ``cpu``), each after ``python -m autograder worker --check-only``.

    Raises:
        SystemExit: dask-jobqueue is not installed (``pip install .[cluster]``).
    """
    try:
        from dask_jobqueue import SLURMCluster
    except ImportError:
        raise SystemExit("cluster slurm needs dask-jobqueue: pip install 'fcn-assignment-kit[cluster]'") from None
    gpu = kind == "gpu"
    slots = 1 if gpu else args.cpu_slots
    check = f"{sys.executable} -m autograder worker --check-only" + (" --gpu 0" if gpu else "")
    return SLURMCluster(
        queue=args.queue, account=args.account, walltime=args.walltime, memory=args.memory,
        cores=slots, processes=1, python=sys.executable,
        job_extra_directives=["--gres=gpu:1"] if gpu else [],
        job_script_prologue=[f"cd {os.getcwd()}", f"{check} || exit 3"],
        worker_extra_args=["--resources", "GPU=1" if gpu else f"CPU={slots}"],
        scheduler_options={"host": args.scheduler_host} if args.scheduler_host else {},
    )


def cmd_slurm(args: argparse.Namespace) -> int:
    kinds = [k for k, n in (("gpu", args.gpu_workers), ("cpu", args.cpu_workers)) if n > 0]
    if len(kinds) != 1:
        print("error: ask for either --gpu-workers N or --cpu-workers N (one scheduler each; more "
              "workers can join it by hand: python -m autograder worker --scheduler ADDR)",
              file=sys.stderr)
        return 2
    clusters = {k: slurm_cluster(k, args) for k in kinds}
    if args.print_script:
        for k, c in clusters.items():
            print(f"# --- {k} worker job ---\n{c.job_script()}")
            c.close()
        return 0
    for k, c in clusters.items():
        c.scale(jobs=args.gpu_workers if k == "gpu" else args.cpu_workers)
    print("scheduler(s): " + ", ".join(f"{k}: {c.scheduler_address}" for k, c in clusters.items()))
    print("grade with: python -m autograder grade SUBMISSIONS --out OUT --executor dask "
          f"--scheduler {next(iter(clusters.values())).scheduler_address}; Ctrl-C stops the workers")
    try:
        import time

        while True:
            time.sleep(60)
    except KeyboardInterrupt:
        pass
    finally:
        for c in clusters.values():
            c.close()
    return 0

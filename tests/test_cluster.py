"""Worker start-up (self-check, resources) and the SLURM job script, as text."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

from autograder import cluster


def test_worker_command_declares_one_resource_and_binds_its_gpu():
    argv, env = cluster.worker_command("tcp://head:8786", gpu=2)
    assert argv[argv.index("--resources") + 1] == "GPU=1" and argv[argv.index("--nthreads") + 1] == "1"
    assert env["CUDA_VISIBLE_DEVICES"] == "2" and "tcp://head:8786" in argv
    argv, env = cluster.worker_command("tcp://head:8786", cpu_slots=3)
    assert argv[argv.index("--resources") + 1] == "CPU=3" and argv[argv.index("--nthreads") + 1] == "3"
    assert env["CUDA_VISIBLE_DEVICES"] == ""  # a CPU worker never sees a GPU


def test_a_gpu_worker_without_a_visible_gpu_refuses_to_start(monkeypatch):
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    lines = []
    monkeypatch.setattr(cluster, "worker_command", lambda *a, **k: pytest.fail("must not start"))
    assert cluster.run_worker("tcp://127.0.0.1:1", gpu=0, log=lines.append) == 3
    assert any("GPU" in line for line in lines) and "not starting" in lines[-1]


def test_worker_needs_a_scheduler_unless_only_checking(monkeypatch):
    monkeypatch.setattr(cluster, "self_check", lambda gpu, log=print: True)
    assert cluster.run_worker(None, check_only=True, log=lambda *a: None) == 0
    assert cluster.run_worker(None, log=lambda *a: None) == 2


def test_slurm_job_script_runs_the_self_check_then_a_gpu_worker():
    pytest.importorskip("dask_jobqueue")
    args = argparse.Namespace(queue="gpu", account="course", walltime="02:00:00", memory="16GB",
                              cpu_slots=2, scheduler_host=None)
    c = cluster.slurm_cluster("gpu", args)
    try:
        script = c.job_script()
    finally:
        c.close()
    assert "#SBATCH -p gpu" in script and "#SBATCH -A course" in script
    assert "#SBATCH --gres=gpu:1" in script and "#SBATCH -t 02:00:00" in script
    lines = script.splitlines()
    check = next(i for i, line in enumerate(lines) if "-m autograder worker --check-only --gpu 0" in line)
    start = next(i for i, line in enumerate(lines) if "distributed.cli.dask_worker" in line)
    assert check < start and lines[check].endswith("|| exit 3")
    assert "--resources GPU=1" in lines[start] and "--nthreads 1" in lines[start]


def test_cluster_slurm_print_script_cli(repo_root):
    pytest.importorskip("dask_jobqueue")
    out = subprocess.run([sys.executable, "-m", "autograder", "cluster", "slurm", "--cpu-workers", "2",
                          "--cpu-slots", "4", "--print-script"], cwd=repo_root, capture_output=True,
                         text=True, timeout=120, check=True).stdout
    assert "--resources CPU=4" in out and "--cpus-per-task=4" in out and "--gres" not in out

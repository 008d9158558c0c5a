"""The Dask executor: same results as the local one, one resource per task, lost workers retried
or reported as infrastructure errors (never zeros), and the grader bundle cached by its sha256.

Fake runners (``test_grade:fake_runner``) keep these fast; the workers import them because the
tests folder is on ``sys.path`` when the LocalCluster spawns them.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

distributed = pytest.importorskip("distributed")

from test_grade import graded, make_students, options

from autograder import grade
from autograder.bundle import Bundle, unpack_cached
from autograder.cluster import worker_command
from autograder.executors import DaskExecutor
from autograder.job import GradeJob
from autograder.settings import GradingSettings
from autograder.submissions import find_submissions


@pytest.fixture
def runner_log(tmp_path, monkeypatch):
    log = tmp_path / "runner.log"
    monkeypatch.setenv("FAKE_RUNNER_LOG", str(log))
    return log


def _scores(summary):
    return {r.student: (r.score, r.max_score, [t.status for t in r.tests]) for r in summary.results}


def test_local_and_dask_give_identical_results(tmp_path, runner_log):
    root = make_students(tmp_path / "in", {"alice": "good", "bob": "wrong", "carl": "good"})
    subs = find_submissions([root], tmp_path / "w")
    local = grade.grade_all(subs, options(tmp_path / "local"), log=lambda *a: None)
    dask = grade.grade_all(subs, options(tmp_path / "dask", executor="dask"), log=lambda *a: None)
    assert sorted(dask.graded) == ["alice", "bob", "carl"]
    assert _scores(dask) == _scores(local)
    assert (tmp_path / "dask" / "grades.csv").read_text() == (tmp_path / "local" / "grades.csv").read_text()
    assert all("fake runner on " in r.isolation and "this process" not in r.isolation for r in dask.results)


def _wait_for_workers(client, n, timeout=60):
    deadline = time.time() + timeout
    while len(client.scheduler_info()["workers"]) < n:
        assert time.time() < deadline, "workers did not join"
        time.sleep(0.2)


def test_gpu_tasks_land_only_on_the_worker_with_the_gpu_resource(tmp_path, runner_log):
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=0, processes=True, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        procs = []
        for name, gpu in (("cpu-worker", None), ("gpu-worker", 0)):
            argv, env = worker_command(cluster.scheduler_address, gpu=gpu, cpu_slots=2, name=name)
            env["PYTHONPATH"] = os.pathsep.join(sys.path)
            procs.append(subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        try:
            _wait_for_workers(client, 2)
            res = {w["name"]: w["resources"] for w in client.scheduler_info()["workers"].values()}
            assert res == {"cpu-worker": {"CPU": 2}, "gpu-worker": {"GPU": 1}}
            root = make_students(tmp_path / "in", {f"s{i}": "good" for i in range(6)})
            subs = find_submissions([root], tmp_path / "w")
            jobs = [GradeJob(s.student, {"a.ipynb": b"x"},
                             GradingSettings(miou="gpu" if i % 2 else "none"),
                             Bundle.for_assignment("fcn_segmentation"),
                             runner="test_grade:fake_runner") for i, s in enumerate(subs)]
            done = list(DaskExecutor(cluster.scheduler_address).run(jobs))
            assert len(done) == len(jobs)
            for j, r in done:
                gpu = j.settings.miou == "gpu"
                assert r.isolation == f"fake runner on {'gpu-worker' if gpu else 'cpu-worker'}", (j.student, r.isolation)
                assert r.device == ("cuda:0" if gpu else "None")
        finally:
            for p in procs:
                p.terminate()
                p.wait(timeout=30)


@pytest.mark.parametrize("allowed_failures", [3, 0])
def test_a_worker_killed_mid_job_is_retried_or_an_infrastructure_error(tmp_path, runner_log, monkeypatch,
                                                                        allowed_failures):
    import threading

    import dask

    monkeypatch.setenv("FAKE_RUNNER_SLEEP", "30")
    monkeypatch.setenv("FAKE_RUNNER_SLOW_ONCE", "1")  # a retry is fast
    root = make_students(tmp_path / "in", {"slow1": "good"})
    subs = find_submissions([root], tmp_path / "w")
    out = tmp_path / "out"

    def kill_when_started():
        deadline = time.time() + 60
        while not graded(runner_log) and time.time() < deadline:
            time.sleep(0.1)
        pid = int(runner_log.read_text().split()[1])
        os.kill(pid, signal.SIGKILL)

    killer = threading.Thread(target=kill_when_started, daemon=True)
    killer.start()
    with dask.config.set({"distributed.scheduler.allowed-failures": allowed_failures}):
        s = grade.grade_all(subs, options(out, executor="dask", jobs=1), log=lambda *a: None)
    killer.join()
    if allowed_failures:
        assert s.graded == ["slow1"] and s.results[0].score == 5.0  # retried on the restarted worker
        return
    assert s.infrastructure == ["slow1"] and s.graded == []
    r = s.results[0]
    assert r.infrastructure_error and r.max_score == 0 and "KilledWorker" in r.infrastructure_error
    # never up to date: the rerun grades it
    s = grade.grade_all(subs, options(out, executor="dask", jobs=1), log=lambda *a: None)
    assert s.graded == ["slow1"] and s.skipped == [] and s.results[0].score == 5.0


def test_bundle_is_content_addressed_and_cached(tmp_path):
    b = Bundle.for_assignment("fcn_segmentation")
    data, digest = b.pack(), b.digest()
    first = unpack_cached(data, digest, tmp_path)
    assert first.digest() == digest and first.hidden_tests.startswith(str(tmp_path / digest))
    assert unpack_cached(b"not even read", digest, tmp_path) == first  # cached by digest
    with pytest.raises(ValueError, match="digest mismatch"):
        unpack_cached(data, "0" * 64, tmp_path)
    assert not (tmp_path / ("0" * 64)).exists()

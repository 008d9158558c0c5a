"""Where grading jobs run: threads on this machine, or Dask workers anywhere.

Both executors take :class:`~autograder.job.GradeJob` objects and yield ``(job, result)`` as jobs
finish, in any order. Neither writes anything: the coordinator (:func:`autograder.grade.grade_all`)
stores each result as it arrives.

* :class:`LocalExecutor` (``--executor local``, the default): ``jobs`` threads, each calling
  :func:`~autograder.job.grade_job` (whose pytest subprocess is the crash boundary); GPU-tier jobs
  take a device from the GPU pool for their duration.
* :class:`DaskExecutor` (``--executor dask [--scheduler ADDR]``): one Dask task per submission, the
  submission's bytes inside the task, the grader bundle (a small zip) with it, unpacked once per
  worker and cached by its sha256. Every task declares exactly one resource, ``GPU=1`` for GPU-tier jobs and ``CPU=1``
  otherwise, so a CPU job never takes a GPU worker's thread (dask/distributed#3552). Without a
  scheduler a ``distributed.LocalCluster`` with ``jobs`` single-thread workers is started here. A
  task whose worker dies is retried by Dask; when it still fails, its result is an infrastructure
  error (never a zero, never "up to date").
"""

from __future__ import annotations

import dataclasses
import os
import queue
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed

from autograder.bundle import Bundle, unpack_cached
from autograder.job import GradeJob, grade_job, infrastructure_result, rubric_tests, usable_cores
from autograder.results import SubmissionResult

EXECUTORS = ("local", "dask")
#: Environment variable of a Dask worker: CPU threads per grading job (set by ``autograder worker``).
JOB_THREADS_ENV = "FCN_GRADER_JOB_THREADS"


def task_resource(job: GradeJob) -> dict[str, int]:
    """The one resource a job's task declares: ``{"GPU": 1}`` for the GPU tier, else ``{"CPU": 1}``."""
    return {"GPU": 1} if job.settings.miou == "gpu" else {"CPU": 1}


class LocalExecutor:
    """``jobs`` jobs at once on this machine; GPU-tier jobs lease one of ``gpus``.

    Raises:
        ValueError: ``jobs < 1``.
    """

    def __init__(self, jobs: int = 1, gpus: list[int] | tuple[int, ...] = ()):
        if jobs < 1:
            raise ValueError(f"--jobs must be >= 1, got {jobs}")
        self.jobs = jobs
        self.gpus: queue.Queue = queue.Queue()
        for g in gpus:
            self.gpus.put(g)

    def _one(self, job: GradeJob) -> SubmissionResult:
        job = dataclasses.replace(job, cpu_threads=max(1, usable_cores() // self.jobs))
        if task_resource(job) != {"GPU": 1}:
            return grade_job(job)
        gpu = self.gpus.get()
        try:
            return grade_job(dataclasses.replace(job, device=f"cuda:{gpu}"))
        finally:
            self.gpus.put(gpu)

    def run(self, jobs: list[GradeJob]) -> Iterator[tuple[GradeJob, SubmissionResult]]:
        with ThreadPoolExecutor(max_workers=self.jobs, thread_name_prefix="grade") as ex:
            futures = {ex.submit(self._one, j): j for j in jobs}
            for fut in as_completed(futures):
                yield futures[fut], fut.result()


def run_task(job: dict, bundle_digest: str, bundle_zip: bytes) -> str:
    """The Dask task: grade ``GradeJob.to_dict()`` with the bundle unpacked (once per worker) from
    ``bundle_zip``; returns ``SubmissionResult.to_json()``. A GPU task runs on ``cuda:0``: its
    worker sees only its own GPU (``CUDA_VISIBLE_DEVICES``, set by ``python -m autograder worker``)."""
    from distributed import get_worker

    j = GradeJob.from_dict(job)
    bundle = unpack_cached(bundle_zip, bundle_digest)
    if j.cpu_threads is None:  # the cores this worker process may use, shared by its slots
        env = os.environ.get(JOB_THREADS_ENV)
        j = dataclasses.replace(j, cpu_threads=int(env) if env else
                                max(1, usable_cores() // max(1, get_worker().state.nthreads)))
    j = dataclasses.replace(j, bundle=bundle,
                            device="cuda:0" if task_resource(j) == {"GPU": 1} else None)
    return grade_job(j).to_json()


class DaskExecutor:
    """One Dask task per job (see the module docstring).

    Args:
        scheduler: ``tcp://HOST:PORT`` (or ``tls://...``) of a running scheduler; ``None`` starts a
            ``LocalCluster`` of ``jobs`` single-thread workers with ``CPU=1`` each.
        jobs: workers of the LocalCluster (ignored with a scheduler).
        bundle: the grader bundle to send (default: the first job's).
        retries: extra tries of a task that raised (a lost worker is retried by the scheduler's
            ``distributed.scheduler.allowed-failures`` on top).
    """

    def __init__(self, scheduler: str | None = None, jobs: int = 1, bundle: Bundle | None = None,
                 retries: int = 1):
        self.scheduler, self.jobs, self.retries = scheduler, jobs, retries
        self.bundle = bundle

    def run(self, jobs: list[GradeJob]) -> Iterator[tuple[GradeJob, SubmissionResult]]:
        from distributed import Client, LocalCluster
        from distributed import as_completed as dask_completed

        if not jobs:
            return
        if self.scheduler is None and any(task_resource(j) == {"GPU": 1} for j in jobs):
            raise ValueError("--executor dask --miou gpu needs a scheduler with GPU workers: start "
                             "`python -m autograder worker --scheduler ADDR --gpu I` per GPU")
        cluster = None
        if self.scheduler is None:
            import dask

            # no dashboard, so no use for the workers' statistical profiler (a thread sampling every
            # thread's stack 100 times a second in each worker, beside the grading)
            with dask.config.set({"distributed.worker.profile.enabled": False}):
                cluster = LocalCluster(n_workers=self.jobs, threads_per_worker=1, processes=True,
                                       resources={"CPU": 1}, dashboard_address=None)
        client = Client(cluster if cluster is not None else self.scheduler)
        try:
            if cluster is not None:  # our own workers end at once when we close them
                from autograder.dask_exit import QuickExit

                client.register_plugin(QuickExit())
            # The bundle zip is small (tens of kB): it rides in each task rather than being scattered,
            # so losing a worker never loses it; workers unpack it once per digest.
            bundle = self.bundle or jobs[0].bundle
            zipped = bundle.pack()
            digest = bundle.digest()
            futures = {}
            if cluster is not None:  # all workers share this machine's cores
                jobs = [dataclasses.replace(j, cpu_threads=max(1, usable_cores() // self.jobs))
                        for j in jobs]
            for j in jobs:
                f = client.submit(run_task, j.to_dict(), digest, zipped, pure=False,
                                  key=f"grade-{j.student}-{id(j)}", resources=task_resource(j),
                                  retries=self.retries)
                futures[f] = j
            for f in dask_completed(list(futures)):
                j = futures[f]
                try:
                    result = SubmissionResult.from_json(f.result())
                except Exception as err:  # noqa: BLE001 - KilledWorker, lost connection, ...
                    result = infrastructure_result(
                        j.student, f"the Dask task failed after its retries ({type(err).__name__}: "
                                   f"{err})", rubric_tests(j.bundle, j.settings) if j.runner is None else [])
                yield j, result
        finally:
            client.close()
            if cluster is not None:
                cluster.close()

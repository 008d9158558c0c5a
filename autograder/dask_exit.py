"""Quick exit of the Dask workers the grader starts itself (``--executor dask`` without a scheduler).

When the grader closes its ``LocalCluster``, each worker process ends with the interpreter's
teardown, whose final garbage collection walks every object of the modules a grading job imported
(nbformat, nbgrader, ...): 1 to 2 s per worker on this project's 2-core machine, and past the
nanny's 4 s patience under load (it then kills the worker and logs a warning). :class:`QuickExit`
freezes the collector (``gc.freeze``) when the worker closes, so the teardown skips that walk.
The worker has finished every task and closed its connections by then: nothing is lost.
"""

from __future__ import annotations

import gc

from distributed.diagnostics.plugin import WorkerPlugin


class QuickExit(WorkerPlugin):
    """``gc.freeze()`` at the worker's teardown (see the module docstring)."""

    name = "fcn-grader-quick-exit"
    idempotent = True

    def teardown(self, worker) -> None:
        gc.freeze()

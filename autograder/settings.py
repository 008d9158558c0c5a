"""The settings of a grading run: ONE frozen dataclass, the same in every process it crosses.

The coordinator builds a :class:`GradingSettings` from the ``grade`` flags; each grading job carries
it (``to_dict`` / ``from_dict``: plain JSON data) to wherever it runs (a thread here, a Dask worker
elsewhere) and into the hidden tests' pytest process, which builds the sandbox from it. Each default
is stated once, here. :meth:`GradingSettings.request_timeouts` lists every wall-clock limit a request
to the sandbox can get, and construction refuses settings where one of them would not fit inside the
submission budget (a limit that can never be reached is a setting that lies). The training timeout
of a trained-model tier belongs to the assignment's recipe; :func:`autograder.recipes.graded_recipes`
checks it against the same budget before grading starts.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

#: Where the trained-model mIoU test runs: not at all, the opt-in CPU tier, or a GPU.
MIOU_TIERS = ("none", "cpu", "gpu")
#: Requests that build or run a full FCN get this many request timeouts (a loaded machine must not
#: cost an honest submission points).
HEAVY_REQUESTS = {"describe": 4, "forward": 4, "loss_grad": 2, "new": 4, "invoke": 4, "load": 2,
                  "state": 2}
#: Seconds the sandbox may take to start, on top of one request timeout (imports torch).
START_GRACE_S = 30.0
#: Seconds the pytest process may run past the submission budget before it counts as an
#: infrastructure failure (the trusted side's own work: reference models, data loading).
PYTEST_GRACE_S = 600.0


@dataclass(frozen=True)
class GradingSettings:
    """Everything that decides how a submission is graded (part of each result's fingerprint).

    Attributes:
        request_timeout: wall-clock seconds per request to the sandboxed worker (heavy requests get a
            multiple, see :data:`HEAVY_REQUESTS`).
        submission_budget: wall-clock seconds of sandboxed worker time per submission, over all its
            requests and restarts.
        memory_bytes: address-space limit of the sandboxed worker, bytes.
        threads: CPU threads of the sandboxed worker; 0 (default) = this machine's cores divided by
            the jobs it runs at once (set by the executor), so ``--jobs 1`` uses every core.
        miou: mIoU tier, one of :data:`MIOU_TIERS`.
        data_root: CMP Facade folder for the mIoU tiers (``None``: ``$CMP_FACADE_ROOT``, then the
            usual places, as :func:`assignment_lib.data.find_data_root` looks).
        scratch_root: where each job makes its scratch folder (on the machine running the job).
        use_bwrap: force bubblewrap on or off; ``None`` detects.
        keep_scratch: keep each job's scratch folder (debugging).

    Raises:
        ValueError: an unknown tier, a non-positive limit, or a request timeout longer than
            ``submission_budget``.
    """

    request_timeout: float = 120.0
    submission_budget: float = 2400.0
    memory_bytes: int = 10 * 2**30
    threads: int = 0
    miou: str = "none"
    data_root: str | None = None
    scratch_root: str = "/tmp/fcn_grading"
    use_bwrap: bool | None = None
    keep_scratch: bool = False

    def __post_init__(self):
        if self.miou not in MIOU_TIERS:
            raise ValueError(f"--miou must be one of {MIOU_TIERS}, got {self.miou!r}")
        if self.request_timeout <= 0 or self.submission_budget <= 0 or self.threads < 0:
            raise ValueError("request_timeout and submission_budget must be positive, threads >= 0")
        too_long = {k: v for k, v in self.request_timeouts().items() if v > self.submission_budget}
        if too_long:
            raise ValueError(
                f"request timeouts {too_long} do not fit in the submission budget of "
                f"{self.submission_budget:g} s: lower --timeout or raise the budget")

    @property
    def start_timeout(self) -> float:
        """Seconds the sandbox may take to start."""
        return self.request_timeout + START_GRACE_S

    def request_timeouts(self) -> dict[str, float]:
        """Every wall-clock limit one request can get: ``{request: seconds}``."""
        out = {"start": self.start_timeout, "request": self.request_timeout}
        out.update({op: k * self.request_timeout for op, k in HEAVY_REQUESTS.items()})
        return out

    def to_dict(self) -> dict:
        """Plain JSON data."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> GradingSettings:
        """The inverse of :meth:`to_dict`; unknown keys raise ``ValueError`` (a stale peer)."""
        names = {f.name for f in fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"unknown grading settings {sorted(unknown)} (grader versions differ?)")
        return cls(**d)

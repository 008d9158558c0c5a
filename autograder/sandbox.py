"""Run a submission's code in an isolated worker process and talk to it with plain data.

Isolation (:func:`isolation_mode`, named in every report through :attr:`Sandbox.isolation`):

- ``root+setpriv`` (grader is root): bubblewrap builds a new root holding, read-only, only ``/usr``,
  the Python install, the virtual environment, ``assignment_lib`` and the worker script, plus a
  writable scratch folder; the repository (``autograder/``, ``notebooks/``, the hidden tests),
  ``/root``, ``/work/shared`` (data), the grading outputs and other submissions are simply absent.
  Network, PID, IPC and UTS namespaces are new; the worker dies with the grader. Inside, ``setpriv``
  drops to an unprivileged uid (one per sandbox slot, so that ``RLIMIT_NPROC`` counts only this
  sandbox), with no new privileges.
- ``user-namespace`` (grader is not root, e.g. a TA on a shared GPU server): the same view, made by
  bubblewrap inside a new user namespace (``--unshare-user``), without capabilities and unable to
  make further user namespaces; the code runs as the grader's own (unprivileged) uid.
- ``plain-process``: a plain subprocess with the same resource limits, when bubblewrap is missing or
  cannot start (weaker: no filesystem or network isolation).

Limits (:attr:`Sandbox.limits`, also in the reports): memory through a per-sandbox cgroup where the
grader can make one (:mod:`autograder.cgroups`; resident memory, which CUDA survives), else
``RLIMIT_AS`` for CPU sandboxes and ``RLIMIT_DATA`` for CUDA ones (CUDA reserves huge virtual
ranges, so a CUDA sandbox never gets ``RLIMIT_AS``); processes through the cgroup's ``pids.max``
and ``RLIMIT_NPROC``; file size (stops gigabytes of output); no core files; CPU threads via
environment. A CUDA sandbox sees only its leased GPU (:mod:`autograder.gpus`), as ``cuda:0``.

Every request has a wall-clock timeout and the sandbox a total budget; on a timeout or a crash the
whole worker is killed, the reason recorded, and the next request restarts it (a cell that hung or
killed the worker while being defined is skipped on restart and reported). Responses are read with
``torch.load(weights_only=True)`` and then checked to hold only exact plain types
(:func:`check_plain`), so no custom object (e.g. an always-equal one) can reach the grader.
"""

from __future__ import annotations

import os
import resource
import select
import shutil
import signal
import subprocess
import sys
import time
import weakref
from functools import lru_cache
from pathlib import Path

from autograder import cgroups, gpus

# torch is imported where it is used (check_plain, the request files), not here: the hidden tests'
# process spawns the sandboxed worker (which imports torch itself) BEFORE it imports torch, so that
# the two imports overlap (Sandbox.spawn, autograder.hidden_run).

WORKER = Path(__file__).resolve().parent / "worker.py"
SANDBOX_SCRATCH = "/scratch"
SANDBOX_WORKER = "/opt/grader/worker.py"
#: First unprivileged uid; slot ``k`` runs as ``BASE_UID + k``.
BASE_UID = 61000
#: The isolation modes, as the reports name them.
MODES = {
    "root+setpriv": "bubblewrap as root, then setpriv to an unprivileged uid (private read-only "
                    "filesystem view, no network)",
    "user-namespace": "bubblewrap in a user namespace, grader not root (private read-only filesystem "
                      "view, no network, no capabilities)",
    "plain-process": "subprocess (weaker: no filesystem or network isolation)",
}
BWRAP_ISOLATION = MODES["root+setpriv"]
FALLBACK_ISOLATION = MODES["plain-process"]
#: How the memory limit may be applied; ``auto`` picks the best available (see :func:`memory_limits`).
MEMORY_LIMIT_MODES = ("auto", "cgroup", "rlimit_as", "rlimit_data", "none")


class SandboxError(RuntimeError):
    """The worker did not answer a request; the message is written for the student."""


class WorkerTimeout(SandboxError):
    pass


class WorkerCrashed(SandboxError):
    pass


class BadResponse(SandboxError):
    pass


class BudgetExceeded(SandboxError):
    pass


class SandboxUnavailable(SandboxError):
    """The grading machine could not give this submission a sandbox (a missing GPU device file,
    a cgroup that cannot be made): an infrastructure failure, never the student's fault. The
    grading job turns it into an infrastructure error, which is retried and never scored."""


def check_plain(x, path="response", depth=0):
    """Raise :class:`BadResponse` unless ``x`` is built only of exact plain types.

    Allowed: ``torch.Tensor`` (exact type, not a subclass), ``bool``, ``int``, ``float``, ``str``,
    ``None``, ``list`` and ``dict`` with ``str`` keys.
    """
    import torch

    if depth > 30:
        raise BadResponse(f"{path}: nested too deeply")
    t = type(x)
    if t is torch.Tensor:
        if x.requires_grad or x.is_sparse or x.device.type != "cpu":
            raise BadResponse(f"{path}: tensor must be a plain dense CPU tensor")
        return
    if x is None or t in (bool, int, float, str):
        return
    if t is list:
        for i, v in enumerate(x):
            check_plain(v, f"{path}[{i}]", depth + 1)
        return
    if t is dict:
        for k, v in x.items():
            if type(k) is not str:
                raise BadResponse(f"{path}: non-string key of type {type(k).__name__}")
            check_plain(v, f"{path}.{k}", depth + 1)
        return
    raise BadResponse(f"{path}: value of type {t.__name__} is not plain data")


# ------------------------------------------------------------------------------------ bubblewrap


def _lib_dir() -> Path:
    """The folder that holds ``assignment_lib`` (found without importing it)."""
    import importlib.util

    spec = importlib.util.find_spec("assignment_lib")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("assignment_lib is not importable by the grader")
    return Path(next(iter(spec.submodule_search_locations))).resolve().parent


def _python() -> str:
    return sys.executable


def _is_cuda(device: str | None) -> bool:
    return bool(device) and device.startswith("cuda")


def _gpu_index(device: str) -> int:
    """``"cuda:3"`` -> 3, ``"cuda"`` -> 0."""
    try:
        return int(device.split(":", 1)[1]) if ":" in device else 0
    except ValueError:
        raise ValueError(f"device must look like 'cuda:N', got {device!r}") from None


@lru_cache(maxsize=1)
def _bwrap_can_disable_userns() -> bool:
    try:
        r = subprocess.run(["bwrap", "--help"], capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return False
    return "--disable-userns" in r.stdout + r.stderr


def _site_dirs() -> set[Path]:
    """Installed-package folders on ``sys.path`` outside the prefixes (user site, a ``.pth``-added
    ``site-packages``): torch may live there. Never the grader's repository or anything above it."""
    repo = WORKER.resolve().parent.parent
    out = set()
    for entry in sys.path:
        if not entry:
            continue
        p = Path(entry).resolve()
        if (p.name in ("site-packages", "dist-packages") and p.is_dir() and p != repo
                and repo not in p.parents and p not in repo.parents):
            out.add(p)
    return out


def bwrap_command(scratch: Path, uid: int, device: str | None = None, *, userns: bool | None = None,
                  gpu_nodes: list[Path] | None = None,
                  driver_views: tuple[str, ...] = gpus.DRIVER_VIEWS) -> list[str]:
    """The bubblewrap command prefix for one sandbox (up to the uid drop in ``root+setpriv`` mode).

    Args:
        scratch: the sandbox's writable folder (bound at ``/scratch``).
        uid: the unprivileged uid to drop to (``root+setpriv`` mode only).
        device: ``"cuda:N"`` binds GPU ``N``'s device files and the driver's read-only views.
        userns: bubblewrap in a user namespace (default: when the grader is not root).
        gpu_nodes: the device files to bind for ``device`` (default: :func:`autograder.gpus.device_nodes`).
        driver_views: read-only paths the CUDA driver and NVML read (bound when present).

    Raises:
        FileNotFoundError: ``device`` names a GPU whose device file is missing.
    """
    userns = os.geteuid() != 0 if userns is None else userns
    lib = _lib_dir()
    ro = {Path(sys.base_prefix).resolve(), Path(sys.prefix), lib / "assignment_lib"} | _site_dirs()
    exe = Path(sys.executable)
    ro.add(exe.parent)
    ro = {q for q in ro if not any(o in q.parents for o in ro)}  # a folder inside another is already there
    cmd = ["bwrap", "--die-with-parent", "--new-session", "--unshare-net", "--unshare-pid",
           "--unshare-ipc", "--unshare-uts", "--hostname", "sandbox"]
    if userns:
        cmd += ["--unshare-user"] + (["--disable-userns"] if _bwrap_can_disable_userns() else [])
    cmd += ["--ro-bind", "/usr", "/usr"]
    for link in ("bin", "lib", "lib64", "sbin"):
        p = Path("/") / link
        if p.is_symlink():
            cmd += ["--symlink", os.readlink(p), str(p)]
        elif p.is_dir():
            cmd += ["--ro-bind", str(p), str(p)]
    for etc in ("/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/etc/localtime",
                "/etc/nsswitch.conf", "/etc/alternatives"):
        cmd += ["--ro-bind-try", etc, etc]
    cmd += ["--proc", "/proc", "--dev", "/dev", "--perms", "1777", "--tmpfs", "/tmp"]
    made: set[str] = set()

    def parents(target: str) -> list[str]:
        # bwrap makes missing parent folders 0700, which the unprivileged uid cannot traverse
        out = []
        for anc in reversed(Path(target).parents):
            a = str(anc)
            # (a checkout under /tmp, e.g. a CI clone, needs its parents made inside the tmpfs too)
            if a not in ("/", "/tmp") and a not in made and not a.startswith(("/usr", "/proc", "/dev", "/sys")):
                made.add(a)
                out += ["--perms", "0755", "--dir", a]
        return out

    for p in sorted(ro, key=lambda q: len(str(q))):
        cmd += parents(str(p)) + ["--ro-bind", str(p), str(p)]
    if _is_cuda(device):
        # only the leased GPU's device file (plus the shared control files): another GPU cannot be
        # opened even with CUDA_VISIBLE_DEVICES unset
        nodes = gpus.device_nodes(_gpu_index(device)) if gpu_nodes is None else gpu_nodes
        for dev in nodes:
            cmd += ["--dev-bind", str(dev), str(dev)]
        for view in driver_views:
            if Path(view).exists():
                cmd += ["--ro-bind-try", view, view]
    cmd += parents(SANDBOX_WORKER) + ["--ro-bind", str(WORKER), SANDBOX_WORKER,
            "--bind", str(scratch), SANDBOX_SCRATCH, "--chdir", SANDBOX_SCRATCH, "--"]
    if not userns:
        cmd += ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--no-new-privs", "--"]
    return cmd


def _probe(userns: bool) -> str:
    """Start a trivial sandbox; ``""`` when it works, else why not (for :func:`isolation_problems`)."""
    probe = Path(f"/tmp/.bwrap_probe_{os.getpid()}")
    probe.mkdir(exist_ok=True)
    try:
        r = subprocess.run(bwrap_command(probe, BASE_UID, userns=userns) + [_python(), "-I", "-c", "print(1)"],
                           capture_output=True, timeout=60, check=False)
        if r.returncode == 0 and r.stdout.strip() == b"1":
            return ""
        return f"exit code {r.returncode}: {r.stderr.decode(errors='replace').strip()[-300:]}"
    except (OSError, subprocess.SubprocessError) as err:
        return f"{type(err).__name__}: {err}"
    finally:
        shutil.rmtree(probe, ignore_errors=True)


@lru_cache(maxsize=1)
def isolation_problems() -> tuple[str, ...]:
    """Why stronger isolation modes than :func:`isolation_mode`'s are not used (for ``doctor``)."""
    if shutil.which("bwrap") is None:
        return (("bubblewrap (bwrap) is not installed: `apt-get install bubblewrap`, or put an "
                "unpacked bubblewrap .deb's usr/bin on PATH"),)
    out = []
    if os.geteuid() == 0:
        if shutil.which("setpriv") is None:
            out.append("setpriv (util-linux) is missing, needed to drop root inside the sandbox")
        elif why := _probe(userns=False):
            out.append(f"bubblewrap as root failed: {why}")
        return tuple(out)
    if why := _probe(userns=True):
        out.append(f"bubblewrap in a user namespace failed: {why} (are unprivileged user namespaces "
                   "allowed? see /proc/sys/user/max_user_namespaces, kernel.unprivileged_userns_clone, "
                   "AppArmor's restrict_unprivileged_userns)")
    return tuple(out)


@lru_cache(maxsize=1)
def isolation_mode() -> str:
    """``"root+setpriv"``, ``"user-namespace"`` or ``"plain-process"`` (a key of :data:`MODES`):
    the strongest mode whose trivial sandbox starts here (checked once per process)."""
    if shutil.which("bwrap") is None:
        return "plain-process"
    if os.geteuid() == 0 and shutil.which("setpriv") is not None and not _probe(userns=False):
        return "root+setpriv"
    if os.geteuid() != 0 and not _probe(userns=True):  # (root never needs it: it drops to a uid)
        return "user-namespace"
    return "plain-process"


def bwrap_works() -> bool:
    """True when bubblewrap isolates submissions here (as root, or in a user namespace)."""
    return isolation_mode() != "plain-process"


def memory_limits(mode: str, cuda: bool, cgroup_ok: bool) -> tuple[str, ...]:
    """Which memory limits apply: a subset of ``("cgroup", "rlimit_as", "rlimit_data")``.

    ``auto``: the cgroup where available (plus ``RLIMIT_AS`` for CPU sandboxes: it turns one huge
    allocation into a ``MemoryError`` the student can read); without one, ``RLIMIT_AS`` for CPU and
    ``RLIMIT_DATA`` for CUDA (``RLIMIT_AS`` would stop CUDA's initialisation).

    Raises:
        ValueError: unknown ``mode``; ``"rlimit_as"`` for a CUDA sandbox; ``"cgroup"`` without one.
    """
    if mode not in MEMORY_LIMIT_MODES:
        raise ValueError(f"memory_limit_mode must be one of {MEMORY_LIMIT_MODES}, got {mode!r}")
    if mode == "auto":
        if cgroup_ok:
            return ("cgroup",) if cuda else ("cgroup", "rlimit_as")
        return ("rlimit_data",) if cuda else ("rlimit_as",)
    if mode == "rlimit_as" and cuda:
        raise ValueError("RLIMIT_AS stops CUDA's initialisation: use 'cgroup', 'rlimit_data' or 'auto'")
    if mode == "cgroup" and not cgroup_ok:
        raise ValueError("memory_limit_mode='cgroup' but this grader cannot make cgroups here "
                         "(needs root, or a delegated cgroup v2 subtree); see `python -m autograder doctor`")
    return () if mode == "none" else (mode,)


def _tasks_of_uid(uid: int) -> int:
    """Processes and threads whose real uid is ``uid`` (what ``RLIMIT_NPROC`` counts)."""
    n = 0
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            fields = dict(line.split(":", 1) for line in (d / "status").read_text().splitlines() if ":" in line)
            if int(fields["Uid"].split()[0]) == uid:
                n += int(fields["Threads"])
        except (OSError, KeyError, ValueError):
            pass
    return n


def _size(n: int) -> str:
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.0f} MiB"


# ---------------------------------------------------------------------------------------- sandbox


class Sandbox:
    """One submission's worker, restarted as needed.

    Args:
        cells: ``[{"grade_id", "source"}]`` executed in order at start (locked cells from the
            source, answer cells from the submission).
        scratch: a private folder for this sandbox (created; must not be shared).
        slot: sandbox slot; parallel sandboxes need distinct slots (distinct uids).
        request_timeout: default wall-clock seconds per request.
        total_budget: wall-clock seconds for all requests of this submission together.
        memory_bytes: memory limit of the worker (bytes; see ``memory_limit_mode``).
        max_procs: process/thread limit of the worker.
        max_file_bytes: largest file the worker may write (its stdout/stderr included).
        threads: CPU threads for torch in the worker.
        device: ``None``/``"cpu"``, or ``"cuda:N"`` to expose GPU ``N`` (PCI bus order) as ``cuda:0``.
        use_bwrap: force (True/False) or auto-detect (None) bubblewrap.
        memory_limit_mode: one of :data:`MEMORY_LIMIT_MODES` (see :func:`memory_limits`).
        gpu_nodes: the device files bound for a CUDA ``device`` (default: found under ``/dev``).

    Attributes:
        mode: the isolation mode, a key of :data:`MODES`.
        limits: a sentence for the reports saying which limits apply.
        isolation: mode and limits in one sentence, for the reports.
        cells: ``{grade_id: {"ok", "skipped", "error"}}`` from the latest start.
        events: what went wrong (timeouts, crashes, restarts), written for the student.

    Raises:
        ValueError: a ``memory_limit_mode`` that cannot apply here (see :func:`memory_limits`).
    """

    def __init__(self, cells, scratch, slot=0, *, request_timeout=120.0, total_budget=1200.0,
                 memory_bytes=10 * 2**30, max_procs=128, max_file_bytes=256 * 2**20, threads=1,
                 device=None, use_bwrap=None, start_timeout=120.0, memory_limit_mode="auto",
                 gpu_nodes=None):
        self._cells = list(cells)
        self.scratch = Path(scratch)
        self.slot = int(slot)
        self.request_timeout = request_timeout
        self.total_budget = total_budget
        self.memory_bytes = int(memory_bytes)
        self.max_procs = int(max_procs)
        self.max_file_bytes = int(max_file_bytes)
        self.threads = int(threads)
        self.device = device
        self.gpu_nodes = gpu_nodes
        self.start_timeout = start_timeout
        if use_bwrap is None:
            self.mode = isolation_mode()
        elif use_bwrap:
            self.mode = "root+setpriv" if os.geteuid() == 0 else "user-namespace"
        else:
            self.mode = "plain-process"
        self.use_bwrap = self.mode != "plain-process"
        self.uid = BASE_UID + self.slot if self.mode == "root+setpriv" else os.getuid()
        cuda = _is_cuda(device)
        self._cgroup = None
        self._oom_seen = 0
        if memory_limit_mode in ("auto", "cgroup"):
            self._cgroup = cgroups.create(self.slot, self.memory_bytes, self.max_procs)
        self.memory_limits = memory_limits(memory_limit_mode, cuda, self._cgroup is not None)
        if "cgroup" not in self.memory_limits and self._cgroup is not None:
            self._cgroup.remove()
            self._cgroup = None
        if self._cgroup is not None:
            self._finalizer = weakref.finalize(self, self._cgroup.remove)
        self.limits = self._describe_limits()
        self.isolation = f"{MODES[self.mode]}; limits: {self.limits}"
        self.cells: dict[str, dict] = {}
        self.events: list[str] = []
        self.skip: dict[str, str] = {}
        self.restarts = 0
        self._proc: subprocess.Popen | None = None
        self._n = 0
        self._spent = 0.0
        self._buf = b""
        self._spawned_early = False

    def _describe_limits(self) -> str:
        mem = []
        if self._cgroup is not None:
            mem.append(self._cgroup.description)
        for lim in self.memory_limits:
            if lim != "cgroup":
                mem.append(f"{lim.upper()} {_size(self.memory_bytes)}")
        parts = ["memory: " + (" + ".join(mem) if mem else "none")]
        procs = []
        if self._cgroup is not None and self._cgroup.max_procs:
            procs.append("cgroup pids.max")
        if self.mode == "root+setpriv":
            procs.append("RLIMIT_NPROC of the slot's uid")
        elif os.getuid() != 0:
            procs.append("RLIMIT_NPROC (above the grader uid's count)")
        parts.append(f"processes: {self.max_procs} ({', '.join(procs)})" if procs else "processes: no limit (root)")
        parts.append(f"file size {_size(self.max_file_bytes)}")
        parts.append(f"CPU threads {self.threads}")
        if _is_cuda(self.device):
            parts.append(f"only GPU {_gpu_index(self.device)} (PCI order), seen as cuda:0")
        return "; ".join(parts)

    # -- lifecycle ---------------------------------------------------------------------------

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.close()

    def _limits(self):
        rl = [(resource.RLIMIT_FSIZE, self.max_file_bytes), (resource.RLIMIT_CORE, 0)]
        if "rlimit_as" in self.memory_limits:
            rl.append((resource.RLIMIT_AS, self.memory_bytes))
        if "rlimit_data" in self.memory_limits:
            rl.append((resource.RLIMIT_DATA, self.memory_bytes))
        if self.mode == "root+setpriv" or os.getuid() == 0:
            rl.append((resource.RLIMIT_NPROC, self.max_procs))
        else:  # counts every process of the grader's uid: allow the sandbox max_procs more
            rl.append((resource.RLIMIT_NPROC, _tasks_of_uid(os.getuid()) + self.max_procs))
        cg = self._cgroup

        def apply():
            if cg is not None:
                cg.add_self()
            for res, val in rl:
                try:
                    resource.setrlimit(res, (val, val))
                except (ValueError, OSError):
                    pass
        return apply

    def _env(self) -> dict[str, str]:
        env = {"PATH": "/usr/bin:/bin", "HOME": SANDBOX_SCRATCH if self.use_bwrap else str(self.scratch),
               "OMP_NUM_THREADS": str(self.threads), "MKL_NUM_THREADS": str(self.threads),
               "WORKER_THREADS": str(self.threads), "PYTHONDONTWRITEBYTECODE": "1",
               "PYTHONHASHSEED": "0", "PYTHONUNBUFFERED": "1", "LANG": "C.UTF-8", "MPLBACKEND": "Agg"}
        if _is_cuda(self.device):
            index = _gpu_index(self.device)
            env["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"
            # inside bubblewrap only this GPU's device file exists (CUDA numbers it 0); a plain
            # process sees every GPU, so it is named by UUID or PCI-order index
            env["CUDA_VISIBLE_DEVICES"] = (gpus.visible_devices(index) if self.use_bwrap
                                           else gpus.gpu_for(index).uuid or str(index))
        return env

    def _spawn(self):
        self.scratch.mkdir(parents=True, exist_ok=True)
        for f in self.scratch.iterdir():
            if f.is_file() and (f.name.startswith(("req_", "resp_", ".resp_"))):
                f.unlink()
        if "cgroup" in self.memory_limits and self._cgroup is None:  # closed, then started again
            self._cgroup = cgroups.create(self.slot, self.memory_bytes, self.max_procs)
            self._oom_seen = 0
            if self._cgroup is None:
                raise SandboxUnavailable("the sandbox's cgroup could not be made again (infrastructure)")
            self._finalizer = weakref.finalize(self, self._cgroup.remove)
        if self.use_bwrap:
            if self.mode == "root+setpriv":
                os.chown(self.scratch, self.uid, self.uid)
            os.chmod(self.scratch, 0o700)
            try:
                cmd = bwrap_command(self.scratch, self.uid, self.device, userns=self.mode == "user-namespace",
                                    gpu_nodes=self.gpu_nodes) + [_python(), "-I", SANDBOX_WORKER, SANDBOX_SCRATCH]
            except FileNotFoundError as err:  # the leased GPU's device file is missing
                raise SandboxUnavailable(f"the grading machine could not give this submission its GPU ({err}); "
                                   "this is a problem of the grading machine, not of your code") from err
        else:
            cmd = [_python(), "-I", str(WORKER), str(self.scratch)]
        r_in, w_in = os.pipe()   # grader -> worker
        r_out, w_out = os.pipe()  # worker -> grader
        cmd += [str(r_in), str(w_out), str(_lib_dir())]
        self._stdout = open(self.scratch.parent / f"{self.scratch.name}.stdout.txt", "ab")
        self._stderr = open(self.scratch.parent / f"{self.scratch.name}.stderr.txt", "ab")
        try:
            self._proc = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=self._stdout, stderr=self._stderr, env=self._env(),
                cwd=str(self.scratch), pass_fds=(r_in, w_out), preexec_fn=self._limits(),
                start_new_session=True)
        finally:
            os.close(r_in)
            os.close(w_out)
        self._w = w_in
        self._r = r_out
        self._buf = b""

    def spawn(self) -> None:
        """Start the worker process now, without running anything in it yet: it imports torch
        while the caller does its own start-up; the next :meth:`start` then only runs the cells.

        Every limit applies from here on exactly as in :meth:`start` (same process, same limits);
        the submission's code runs only in :meth:`start`.
        """
        self._spawn()
        self._spawned_early = True

    def start(self) -> dict:
        """Start the worker (unless :meth:`spawn` just did) and execute the cells; returns
        :attr:`cells`."""
        if not (self._spawned_early and self.alive):
            if self._proc is not None:  # an early-spawned worker that died before its cells
                self._kill()
            self._spawn()
        self._spawned_early = False
        req = {"op": "exec_cells", "cells": self._cells, "skip": sorted(self.skip)}
        current = [None]
        try:
            resp = self._roundtrip(req, self.start_timeout, current)
            for c in resp["cells"]:
                gid = c["grade_id"]
                if c.get("skipped"):
                    c["error"] = self.skip.get(gid, "skipped")
                self.cells[gid] = c
        except SandboxError as err:
            gid = current[0]
            if gid is None:
                raise
            why = (f"cell '{gid}' {'did not finish within the time limit' if isinstance(err, WorkerTimeout) else 'killed the Python process'} "
                   "while it was being run (top-level code such as a training loop, sleep, "
                   "sys.exit or os._exit); it was skipped, so what it defines is missing")
            self.events.append(why)
            self.skip[gid] = why
            self.cells[gid] = {"grade_id": gid, "ok": False, "skipped": True, "error": why}
            if self.restarts >= 5:
                raise
            self.restarts += 1
            return self.start()
        return self.cells

    def _kill(self):
        if self._proc is not None and self._proc.poll() is None:
            try:
                os.killpg(self._proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            try:
                self._proc.kill()
            except ProcessLookupError:
                pass
            self._proc.wait()
        if self._cgroup is not None:
            self._cgroup.kill_all()
        for fd in ("_w", "_r"):
            f = getattr(self, fd, None)
            if f is not None:
                try:
                    os.close(f)
                except OSError:
                    pass
                setattr(self, fd, None)
        for f in ("_stdout", "_stderr"):
            h = getattr(self, f, None)
            if h is not None:
                h.close()
                setattr(self, f, None)
        self._proc = None

    def close(self):
        """Kill the worker (all its processes) and remove the sandbox's cgroup."""
        self._kill()
        if self._cgroup is not None:
            self._finalizer.detach()
            self._cgroup.remove()
            self._cgroup = None

    @property
    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    # -- requests ----------------------------------------------------------------------------

    def _readline(self, deadline) -> str | None:
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            ready, _, _ = select.select([self._r], [], [], left)
            if not ready:
                return None
            chunk = os.read(self._r, 4096)
            if not chunk:
                return ""
            self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        return line.decode(errors="replace")

    def _roundtrip(self, req, timeout, current=None):
        if self._spent >= self.total_budget:
            raise BudgetExceeded(
                f"the submission used up its total time budget of {self.total_budget:.0f} s; "
                "remaining tests were not run (look for slow or endless code)")
        timeout = min(timeout, self.total_budget - self._spent)
        self._n += 1
        n = self._n
        import torch

        torch.save(req, self.scratch / f"req_{n}.pt")
        if self.use_bwrap:
            os.chown(self.scratch / f"req_{n}.pt", self.uid, self.uid)
        t0 = time.monotonic()
        deadline = t0 + timeout
        try:
            try:
                os.write(self._w, f"{n}\n".encode())
            except (BrokenPipeError, OSError):
                pass
            while True:
                line = self._readline(deadline)
                if line is None:
                    self._kill()
                    raise WorkerTimeout(f"no answer within {timeout:.0f} s (endless loop, sleep, "
                                        "or very slow code?); the worker was stopped")
                if line == "":
                    code = self._proc.wait() if self._proc is not None else None
                    self._kill()
                    if self._cgroup is not None and self._cgroup.oom_kills() > self._oom_seen:
                        self._oom_seen = self._cgroup.oom_kills()
                        raise WorkerCrashed(f"your code used more than the memory limit of "
                                            f"{_size(self.memory_bytes)} and was stopped: look for "
                                            "very large tensors, or results kept in a growing list")
                    raise WorkerCrashed(f"the Python process running your code exited (exit code "
                                        f"{code}) instead of answering: look for sys.exit, "
                                        "os._exit, or code that crashes or exhausts memory")
                if line.startswith("cell ") and current is not None:
                    current[0] = line[5:]
                elif line == f"done {n}":
                    break
        finally:
            self._spent += time.monotonic() - t0
        path = self.scratch / f"resp_{n}.pt"
        try:
            resp = torch.load(path, weights_only=True, map_location="cpu")
        except Exception as err:
            raise BadResponse(f"the worker's answer could not be read safely ({type(err).__name__}); "
                              "was torch.save monkeypatched?") from err
        finally:
            for p in (path, self.scratch / f"req_{n}.pt"):
                p.unlink(missing_ok=True)
        check_plain(resp)
        if type(resp) is not dict or resp.get("ok") is not True:
            err = resp.get("error", "") if type(resp) is dict else ""
            raise SandboxError(f"the request failed inside the sandbox:\n{err}")
        return resp["result"]

    def request(self, op: str, timeout: float | None = None, **payload) -> dict:
        """Send one request and return the worker's plain-data answer.

        Restarts the worker first if an earlier request killed it.

        Raises:
            WorkerTimeout, WorkerCrashed, BadResponse, BudgetExceeded, SandboxError.
        """
        if not self.alive:
            self.restarts += 1
            self.events.append(f"the worker was restarted before request '{op}'")
            self.start()
        try:
            return self._roundtrip({"op": op, **payload},
                                   self.request_timeout if timeout is None else timeout)
        except (WorkerTimeout, WorkerCrashed, BadResponse, BudgetExceeded) as err:
            self.events.append(f"request '{op}': {err}")
            raise

    def output_tail(self, n=2000) -> tuple[str, str]:
        """The last ``n`` characters of the worker's stdout and stderr."""
        out = []
        for suffix in ("stdout", "stderr"):
            p = self.scratch.parent / f"{self.scratch.name}.{suffix}.txt"
            try:
                with open(p, "rb") as f:
                    f.seek(max(0, p.stat().st_size - n))
                    out.append(f.read().decode(errors="replace"))
            except OSError:
                out.append("")
        return out[0], out[1]

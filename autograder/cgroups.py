"""One cgroup per sandbox: a memory limit on resident memory (which CUDA survives) and a process limit.

``RLIMIT_AS`` caps *virtual* address space, and CUDA reserves far more of it at initialisation
than any sensible limit, so a CUDA sandbox needs a limit on what is really used: the cgroup memory
controller. Both layouts are supported:

- cgroup v1 (or a v1/v2 hybrid whose memory controller is v1): ``memory.limit_in_bytes`` (and
  ``memory.memsw.limit_in_bytes`` where swap accounting exists) in the memory hierarchy, ``pids.max``
  in the pids hierarchy;
- cgroup v2: ``memory.max``, ``memory.swap.max = 0`` and ``pids.max`` in the unified hierarchy.

Groups are made below the grader's own cgroup (read from ``/proc/self/cgroup``), named
``fcn-sandbox-<grader pid>-slot<k>``, so a limit can never exceed the grader's own and stale groups
left by a killed grader are recognised (their pid is gone) and removed by the next one.
Making them needs write access there: root, or a delegated v2 subtree (e.g. ``systemd-run --user
--scope -p Delegate=yes``). In v2, when the grader's group holds processes (so it cannot hand
controllers to children), those processes are first moved into a leaf ``fcn-grader`` beside them,
the way container runtimes do. When nothing works, :func:`create` returns ``None`` and the sandbox
picks the best remaining limit (:mod:`autograder.sandbox`).
"""

from __future__ import annotations

import errno
import os
import re
import signal
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

PREFIX = "fcn-sandbox"
GRADER_LEAF = "fcn-grader"
_NAME = re.compile(rf"^{PREFIX}-(\d+)-slot(\d+)$")


@dataclass(frozen=True)
class CgroupLayout:
    """Where sandbox groups are made.

    Attributes:
        version: 1 or 2.
        memory_parent: the folder holding the groups in the memory hierarchy (v2: the unified one).
        pids_parent: same for the pids controller; ``None`` when there is none (v1 without pids).
    """

    version: int
    memory_parent: Path
    pids_parent: Path | None


def _mounts(mounts_file: Path) -> list[tuple[str, str, set[str]]]:
    out = []
    for line in Path(mounts_file).read_text().splitlines():
        parts = line.split()
        if len(parts) >= 4:
            out.append((parts[1], parts[2], set(parts[3].split(","))))
    return out


def _own_paths(cgroup_file: Path) -> dict[str, str]:
    """``{controller: path}`` from ``/proc/self/cgroup``; the v2 entry has the key ``""``."""
    own = {}
    for line in Path(cgroup_file).read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        for c in controllers.split(","):
            own[c] = path
    return own


def detect_layout(mounts_file: Path = Path("/proc/self/mounts"),
                  cgroup_file: Path = Path("/proc/self/cgroup")) -> CgroupLayout | None:
    """The cgroup layout this process can make sandbox groups in, or ``None``.

    A v1 memory hierarchy wins (a hybrid system's v2 tree has no memory controller); otherwise the
    v2 tree is used when its controllers include ``memory``. Nothing is created.
    """
    try:
        mounts, own = _mounts(mounts_file), _own_paths(cgroup_file)
    except (OSError, ValueError):
        return None

    def below(mount: str, rel: str) -> Path:
        return Path(mount) / rel.lstrip("/")

    v1 = {opt: m for m, fs, opts in mounts if fs == "cgroup" for opt in opts if opt in ("memory", "pids")}
    if "memory" in v1 and "memory" in own:
        pids = below(v1["pids"], own["pids"]) if "pids" in v1 and "pids" in own else None
        return CgroupLayout(1, below(v1["memory"], own["memory"]), pids)
    for m, fs, _ in mounts:
        if fs == "cgroup2" and "" in own:
            parent = below(m, own[""])
            try:
                controllers = (parent / "cgroup.controllers").read_text().split()
            except OSError:
                continue
            if "memory" in controllers:
                return CgroupLayout(2, parent, parent if "pids" in controllers else None)
    return None


def pid_alive(pid: int) -> bool:
    """True while a process ``pid`` exists on this machine (one owned by another user counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _procs(group: Path) -> list[int]:
    try:
        return [int(x) for x in (group / "cgroup.procs").read_text().split()]
    except (OSError, ValueError):
        return []


def _kill_all(group: Path, wait_s: float = 5.0) -> bool:
    """SIGKILL every process in ``group``; True once it is empty (within ``wait_s``)."""
    kill = group / "cgroup.kill"  # v2, Linux >= 5.14
    deadline = time.monotonic() + wait_s
    while True:
        pids = _procs(group)
        if not pids:
            break
        try:
            kill.write_text("1")
        except OSError:
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def _kill_and_remove(group: Path, wait_s: float = 5.0) -> bool:
    if not group.is_dir():
        return True
    if not _kill_all(group, wait_s):
        return False
    try:
        group.rmdir()
        return True
    except OSError:
        return False


def remove_stale(layout: CgroupLayout) -> list[Path]:
    """Remove sandbox groups whose grader process is gone (killed runs); returns those removed."""
    removed = []
    for parent in {layout.memory_parent, layout.pids_parent} - {None}:
        try:
            entries = list(parent.iterdir())
        except OSError:
            continue
        for group in entries:
            m = _NAME.match(group.name)
            if m and not pid_alive(int(m.group(1))) and _kill_and_remove(group):
                removed.append(group)
    return removed


def _enable_v2_controllers(parent: Path, wanted: list[str]) -> None:
    """Hand ``wanted`` controllers to ``parent``'s children (moving its processes into a leaf first
    when it holds any: cgroup v2 allows controllers only on groups without processes)."""
    control = parent / "cgroup.subtree_control"
    have = control.read_text().split()
    missing = [c for c in wanted if c not in have]
    if not missing:
        return
    line = " ".join(f"+{c}" for c in missing)
    try:
        control.write_text(line)
        return
    except OSError as err:
        if err.errno != errno.EBUSY:
            raise
    leaf = parent / GRADER_LEAF
    leaf.mkdir(exist_ok=True)
    for pid in _procs(parent):
        try:
            (leaf / "cgroup.procs").write_text(str(pid))
        except OSError:
            pass  # a process that exited meanwhile, or a kernel thread
    control.write_text(line)


class SandboxCgroup:
    """The cgroup(s) of one sandbox slot; made by :func:`create`.

    Attributes:
        groups: the group folders (one per hierarchy: v1 has memory and pids apart).
        description: what applies, for the reports, e.g. ``"cgroup v1 memory.limit_in_bytes 6.0 GiB,
            pids.max 64"``.
    """

    def __init__(self, groups: list[Path], description: str, memory_bytes: int, max_procs: int | None):
        self.groups = groups
        self.description = description
        self.memory_bytes = memory_bytes
        self.max_procs = max_procs

    def add_self(self) -> None:
        """Move the calling process into every group (call in the child before exec)."""
        for g in self.groups:
            with open(g / "cgroup.procs", "w") as f:
                f.write(str(os.getpid()))

    def kill_all(self) -> None:
        """Kill every process left in the groups and wait until they are gone (so a restarted
        worker does not find the process limit used up by the dying one's children)."""
        for g in self.groups:
            _kill_all(g)

    def oom_kills(self) -> int:
        """How many processes of this group the memory limit has killed so far (best effort: 0
        where the kernel does not count them)."""
        n = 0
        for g in self.groups:
            for name in ("memory.events", "memory.oom_control"):  # v2, v1
                try:
                    for line in (g / name).read_text().splitlines():
                        k, _, v = line.partition(" ")
                        if k == "oom_kill":
                            n += int(v)
                except (OSError, ValueError):
                    pass
        return n

    def oom_killed(self) -> bool:
        """True when the memory limit has killed a process of this group."""
        return self.oom_kills() > 0

    def remove(self) -> None:
        """Kill what is left inside and remove the groups."""
        for g in self.groups:
            _kill_and_remove(g)


def _gib(n: int) -> str:
    return f"{n / 2**30:.1f} GiB"


def create(slot: int, memory_bytes: int, max_procs: int | None,
           layout: CgroupLayout | None = None) -> SandboxCgroup | None:
    """Make the groups of sandbox ``slot`` with the given limits, or return ``None`` when this
    process may not (no memory controller, no write access). Stale groups are removed first."""
    layout = layout if layout is not None else detect_layout()
    if layout is None:
        return None
    remove_stale(layout)
    name = f"{PREFIX}-{os.getpid()}-slot{int(slot)}"
    made: list[Path] = []
    try:
        if layout.version == 2:
            _enable_v2_controllers(layout.memory_parent, ["memory"] + (["pids"] if layout.pids_parent else []))
        mem = layout.memory_parent / name
        _kill_and_remove(mem)  # our own leftover from an earlier sandbox in this slot
        mem.mkdir()
        made.append(mem)
        if layout.version == 1:
            (mem / "memory.limit_in_bytes").write_text(str(memory_bytes))
            try:  # no swap either, where swap accounting exists
                (mem / "memory.memsw.limit_in_bytes").write_text(str(memory_bytes))
            except OSError:
                pass
            what = [f"cgroup v1 memory.limit_in_bytes {_gib(memory_bytes)}"]
            pids = None
            if layout.pids_parent is not None and max_procs:
                pids = layout.pids_parent / name
                _kill_and_remove(pids)
                pids.mkdir()
                made.append(pids)
        else:
            (mem / "memory.max").write_text(str(memory_bytes))
            try:
                (mem / "memory.swap.max").write_text("0")
            except OSError:
                pass
            what = [f"cgroup v2 memory.max {_gib(memory_bytes)}"]
            pids = mem if layout.pids_parent is not None and max_procs else None
        if pids is not None:
            (pids / "pids.max").write_text(str(int(max_procs)))
            what.append(f"pids.max {int(max_procs)}")
    except OSError:
        for g in reversed(made):
            _kill_and_remove(g)
        return None
    return SandboxCgroup(made, ", ".join(what), memory_bytes, max_procs if pids is not None else None)


@lru_cache(maxsize=1)
def available() -> bool:
    """True when this process can make sandbox groups (checked once by making and removing one)."""
    probe = create(slot=999, memory_bytes=2**30, max_procs=64)
    if probe is None:
        return False
    probe.remove()
    return True

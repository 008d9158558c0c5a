"""Memory and process limits that CUDA survives (cgroups), and one GPU's device files per sandbox."""

import os
import resource
import subprocess
import sys

import pytest

from autograder import cgroups, gpus
from autograder.sandbox import Sandbox, WorkerCrashed, bwrap_command, bwrap_works, memory_limits

PROBE = r'''
import os, resource, time

def touch(gb):
    import torch
    x = torch.ones(int(gb * 2**30) // 4)  # allocated AND written: resident, not just reserved
    return float(x[-1])

def fork_many(n):
    made = 0
    for _ in range(n):
        try:
            pid = os.fork()
        except OSError:
            break
        if pid == 0:
            time.sleep(2)
            os._exit(0)
        made += 1
    return made

def rlimits():
    return {"as": resource.getrlimit(resource.RLIMIT_AS)[0],
            "data": resource.getrlimit(resource.RLIMIT_DATA)[0],
            "cvd": os.environ.get("CUDA_VISIBLE_DEVICES"), "order": os.environ.get("CUDA_DEVICE_ORDER")}
'''
CELLS = [{"grade_id": "probe", "source": PROBE}]
needs_cgroups = pytest.mark.skipif(not cgroups.available(), reason="this grader cannot make cgroups here")


def call(sb, name, *args, timeout=60):
    return sb.request("call", timeout=timeout, name=name, calls=[{"args": list(args)}])["results"][0]


@needs_cgroups
def test_cgroup_stops_a_touched_6gb_allocation_and_a_fork_loop(tmp_path):
    with Sandbox(CELLS, tmp_path / "s", slot=11, memory_limit_mode="cgroup", memory_bytes=2**30,
                 max_procs=32) as sb:
        assert sb.memory_limits == ("cgroup",) and "RLIMIT_AS" not in sb.isolation
        assert "memory.limit_in_bytes 1.0 GiB" in sb.limits or "memory.max 1.0 GiB" in sb.limits
        groups = list(sb._cgroup.groups)
        assert all(g.is_dir() for g in groups)
        # no RLIMIT_AS: the allocation itself succeeds, and the cgroup kills the worker
        assert call(sb, "rlimits")["value"]["as"] == resource.RLIM_INFINITY
        with pytest.raises(WorkerCrashed, match="memory limit of 1.0 GiB"):
            call(sb, "touch", 6)
        assert sb._cgroup.oom_killed()
        made = call(sb, "fork_many", 200)  # the worker restarted, under the same limits
        assert made["ok"] and 5 < made["value"] < 32, made
    assert not any(g.exists() for g in groups), "the cgroup must be removed on close"


def test_cuda_sandbox_gets_no_rlimit_as_and_sees_one_gpu(tmp_path):
    """Without a cgroup a CUDA sandbox falls back to RLIMIT_DATA, never RLIMIT_AS; the 6 GB
    allocation still fails (inside, as an error the student sees) and the worker lives on."""
    with Sandbox(CELLS, tmp_path / "s", slot=12, device="cuda:0", gpu_nodes=[],
                 memory_limit_mode="rlimit_data", memory_bytes=2**30) as sb:
        assert "RLIMIT_AS" not in sb.isolation and "RLIMIT_DATA 1.0 GiB" in sb.limits
        v = call(sb, "rlimits")["value"]
        assert v["as"] == resource.RLIM_INFINITY and v["data"] == 2**30
        assert v["order"] == "PCI_BUS_ID"
        if sb.use_bwrap:  # only the leased GPU's file is inside: CUDA numbers it 0
            assert v["cvd"] == (gpus.gpu_for(0).uuid or "0")
        r = call(sb, "touch", 6)
        assert not r["ok"], r
        assert call(sb, "touch", 0.01)["value"] == 1.0


def test_memory_limit_choice():
    assert memory_limits("auto", cuda=True, cgroup_ok=True) == ("cgroup",)
    assert memory_limits("auto", cuda=True, cgroup_ok=False) == ("rlimit_data",)
    assert memory_limits("auto", cuda=False, cgroup_ok=True) == ("cgroup", "rlimit_as")
    assert memory_limits("auto", cuda=False, cgroup_ok=False) == ("rlimit_as",)
    assert memory_limits("none", cuda=False, cgroup_ok=True) == ()
    with pytest.raises(ValueError, match="CUDA"):
        memory_limits("rlimit_as", cuda=True, cgroup_ok=True)
    with pytest.raises(ValueError, match="cgroups"):
        memory_limits("cgroup", cuda=False, cgroup_ok=False)
    with pytest.raises(ValueError, match="memory_limit_mode"):
        memory_limits("ulimit", cuda=False, cgroup_ok=True)


def test_auto_cuda_sandbox_never_uses_rlimit_as(tmp_path):
    sb = Sandbox(CELLS, tmp_path / "s", slot=13, device="cuda:1", gpu_nodes=[])
    try:
        assert "rlimit_as" not in sb.memory_limits
        assert "only GPU 1 (PCI order), seen as cuda:0" in sb.isolation
    finally:
        sb.close()


@pytest.fixture
def fake_gpus(tmp_path):
    """Two GPUs whose minor numbers are swapped against PCI order, plus the shared files."""
    dev, proc = tmp_path / "dev", tmp_path / "nvidia"
    dev.mkdir()
    for n in ("nvidia0", "nvidia1", "nvidiactl", "nvidia-uvm", "nvidia-uvm-tools"):
        (dev / n).touch()
    for pci, minor, uuid in (("0000:18:00.0", 1, "GPU-aaaa"), ("0000:3b:00.0", 0, "GPU-bbbb")):
        (proc / "gpus" / pci).mkdir(parents=True)
        (proc / "gpus" / pci / "information").write_text(
            f"Model: \t\t NVIDIA H200\nGPU UUID: \t {uuid}\nBus Location: \t {pci}\nDevice Minor: \t {minor}\n")
    return dev, proc


def test_one_gpu_per_job_binds_only_its_device_file(fake_gpus, tmp_path):
    dev, proc = fake_gpus
    assert [g.minor for g in gpus.list_gpus(proc)] == [1, 0]
    nodes = gpus.device_nodes(0, dev, proc)
    assert nodes == [dev / "nvidia1", dev / "nvidiactl", dev / "nvidia-uvm", dev / "nvidia-uvm-tools"]
    assert gpus.visible_devices(0, proc) == "GPU-aaaa" and gpus.visible_devices(1, proc) == "GPU-bbbb"
    with pytest.raises(FileNotFoundError, match="GPU 2"):
        gpus.device_nodes(2, dev, proc)

    cmd = bwrap_command(tmp_path, 61000, "cuda:0", userns=True, gpu_nodes=nodes,
                        driver_views=(str(proc),))
    bound = [cmd[i + 1] for i, c in enumerate(cmd) if c == "--dev-bind"]
    assert bound == [str(n) for n in nodes] and str(dev / "nvidia0") not in cmd
    at = cmd.index("--ro-bind-try", cmd.index(str(nodes[-1])))
    assert cmd[at + 1: at + 3] == [str(proc), str(proc)]
    assert "--unshare-user" in cmd and "setpriv" not in cmd
    assert "setpriv" in bwrap_command(tmp_path, 61000, "cuda:0", userns=False, gpu_nodes=nodes)
    assert "--dev-bind" not in bwrap_command(tmp_path, 61000, None, userns=True)


def test_cgroup_layouts_v1_hybrid_and_v2(tmp_path):
    (tmp_path / "mounts").write_text(
        "cgroup /sys/fs/cgroup/memory cgroup rw,relatime,memory 0 0\n"
        "cgroup /sys/fs/cgroup/pids cgroup rw,relatime,pids 0 0\n"
        "cgroup2 /sys/fs/cgroup/unified cgroup2 rw,relatime 0 0\n")
    (tmp_path / "cgroup").write_text("8:pids:/a\n4:memory:/a/b\n0::/\n")
    lay = cgroups.detect_layout(tmp_path / "mounts", tmp_path / "cgroup")
    assert lay == cgroups.CgroupLayout(1, cgroups.Path("/sys/fs/cgroup/memory/a/b"),
                                       cgroups.Path("/sys/fs/cgroup/pids/a"))

    root = tmp_path / "cg"
    me = root / "user.slice" / "me"
    me.mkdir(parents=True)
    (me / "cgroup.controllers").write_text("cpu memory pids\n")
    (me / "cgroup.subtree_control").write_text("")
    (tmp_path / "mounts").write_text(f"cgroup2 {root} cgroup2 rw 0 0\n")
    (tmp_path / "cgroup").write_text("0::/user.slice/me\n")
    lay = cgroups.detect_layout(tmp_path / "mounts", tmp_path / "cgroup")
    assert lay == cgroups.CgroupLayout(2, me, me)
    cg = cgroups.create(slot=4, memory_bytes=3 * 2**30, max_procs=50, layout=lay)
    group = me / f"fcn-sandbox-{os.getpid()}-slot4"
    assert cg.groups == [group]
    assert (group / "memory.max").read_text() == str(3 * 2**30)
    assert (group / "memory.swap.max").read_text() == "0"
    assert (group / "pids.max").read_text() == "50"
    assert "+memory" in (me / "cgroup.subtree_control").read_text()
    assert cg.description == "cgroup v2 memory.max 3.0 GiB, pids.max 50"


@needs_cgroups
def test_stale_groups_of_killed_graders_are_removed():
    lay = cgroups.detect_layout()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True).stdout.strip()
    stale = lay.memory_parent / f"fcn-sandbox-{dead}-slot5"
    stale.mkdir()
    cg = cgroups.create(slot=6, memory_bytes=2**30, max_procs=16)
    try:
        assert not stale.exists()
        assert all(g.is_dir() for g in cg.groups)
    finally:
        cg.remove()
        if stale.exists():
            stale.rmdir()
    assert not any(g.exists() for g in cg.groups)


@pytest.mark.skipif(not bwrap_works(), reason="bubblewrap is not usable here")
def test_isolation_names_the_mode(tmp_path):
    sb = Sandbox(CELLS, tmp_path / "s", slot=14)
    try:
        expected = "setpriv" if os.geteuid() == 0 else "user namespace"
        assert expected in sb.isolation and "limits: memory:" in sb.isolation
    finally:
        sb.close()

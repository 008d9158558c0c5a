"""The sandbox hides the grader's files and the network, enforces limits, survives hangs and crashes."""

import os

import pytest
import torch

from autograder.sandbox import (
    FALLBACK_ISOLATION,
    BadResponse,
    Sandbox,
    WorkerCrashed,
    WorkerTimeout,
    bwrap_works,
    check_plain,
)

PROBE = r'''
import os, socket, sys, time

def probe(paths):
    out = {"exists": {p: os.path.exists(p) for p in paths}, "uid": os.getuid()}
    try:
        import autograder
        out["autograder"] = "imported"
    except ImportError:
        out["autograder"] = "ImportError"
    try:
        socket.create_connection(("1.1.1.1", 80), timeout=2)
        out["net"] = "connected"
    except OSError as err:
        out["net"] = type(err).__name__
    return out

def fork_many(n):
    made = 0
    for _ in range(n):
        try:
            pid = os.fork()
        except OSError:
            break
        if pid == 0:
            time.sleep(3)
            os._exit(0)
        made += 1
    return made

def allocate(gb):
    try:
        b = bytearray(int(gb * 2**30))
        return "allocated"
    except MemoryError:
        return "MemoryError"

def flood(mb):
    try:
        chunk = "x" * 2**20
        for _ in range(mb):
            sys.stdout.write(chunk)
        sys.stdout.flush()
        return "written"
    except OSError as err:
        return "OSError"

def hang():
    time.sleep(10**6)

def die():
    os._exit(3)
'''


@pytest.fixture(scope="module")
def sb(tmp_path_factory):
    cells = [{"grade_id": "bad", "source": "def broken(:\n    pass"},
             {"grade_id": "probe", "source": PROBE}]
    s = Sandbox(cells, tmp_path_factory.mktemp("sb") / "scratch", slot=7, request_timeout=30,
                memory_bytes=6 * 2**30, max_procs=64, max_file_bytes=16 * 2**20, threads=1)
    s.start()
    yield s
    s.close()


def call(sb, name, *args, timeout=None):
    return sb.request("call", timeout=timeout, name=name, calls=[{"args": list(args)}])["results"][0]


def test_syntax_error_in_one_cell_does_not_stop_the_others(sb):
    assert not sb.cells["bad"]["ok"] and "SyntaxError" in sb.cells["bad"]["error"]
    assert sb.cells["probe"]["ok"], sb.cells["probe"]["error"]


@pytest.mark.skipif(not bwrap_works(), reason="bubblewrap is not usable here")
def test_grader_files_data_and_network_are_hidden(sb, repo_root):
    hidden = [str(repo_root / "autograder"), str(repo_root / "autograder" / "assignments" / "fcn_segmentation" / "hidden_tests"),
              str(repo_root / "notebooks"), str(repo_root.parent / "shared"), "/root/.ssh",
              str(sb.scratch.parent)]
    r = call(sb, "probe", hidden + [str(repo_root / "assignment_lib")])
    assert r["ok"], r
    v = r["value"]
    assert v["autograder"] == "ImportError"
    assert not any(v["exists"][p] for p in hidden), v["exists"]
    assert v["exists"][str(repo_root / "assignment_lib")]
    assert v["net"] != "connected"
    assert v["uid"] != 0
    assert "bubblewrap" in sb.isolation


@pytest.mark.skipif(not bwrap_works(), reason="the process limit needs bubblewrap + setpriv as root")
def test_fork_bomb_is_stopped(sb):
    r = call(sb, "fork_many", 500)
    assert r["ok"] and r["value"] < 64


def test_memory_limit(sb):
    assert call(sb, "allocate", 8)["value"] == "MemoryError"


def test_output_size_limit(sb):
    assert call(sb, "flood", 64)["value"] == "OSError"
    assert os.path.getsize(sb.scratch.parent / f"{sb.scratch.name}.stdout.txt") <= 16 * 2**20


def test_timeout_kills_and_worker_restarts(sb):
    with pytest.raises(WorkerTimeout):
        call(sb, "hang", timeout=2)
    assert call(sb, "allocate", 0.001)["value"] == "allocated"
    assert any("restarted" in e for e in sb.events)


def test_crash_is_reported_and_worker_restarts(sb):
    with pytest.raises(WorkerCrashed, match="exit code"):
        call(sb, "die")
    assert call(sb, "allocate", 0.001)["ok"]


def test_only_exact_plain_types_cross():
    class Sneaky(torch.Tensor):
        pass

    check_plain({"a": [1, 2.0, "s", None, True, torch.zeros(2)]})
    for bad in (torch.zeros(2).as_subclass(Sneaky), torch.nn.Parameter(torch.zeros(1)), object(),
                {1: 2}, (1, 2)):
        with pytest.raises(BadResponse):
            check_plain(bad)


def test_fallback_subprocess_says_it_is_weaker(tmp_path):
    with Sandbox([{"grade_id": "a", "source": "x = 1"}], tmp_path / "s", use_bwrap=False) as s:
        assert s.isolation.startswith(FALLBACK_ISOLATION) and "RLIMIT_AS" in s.isolation
        assert s.request("ping") == {"pong": True}


def test_a_checkout_under_tmp_stays_reachable(monkeypatch, tmp_path):
    """The sandbox's /tmp is a fresh tmpfs: folders above a venv under /tmp (a CI clone) must be
    made there traversable (0755), or the unprivileged uid cannot read the venv and torch is gone."""
    from autograder.sandbox import bwrap_command

    monkeypatch.setattr("sys.prefix", "/tmp/ci_clone/repo/.venv")
    cmd = bwrap_command(tmp_path, 61000)
    bind = cmd.index("/tmp/ci_clone/repo/.venv")
    for parent in ("/tmp/ci_clone", "/tmp/ci_clone/repo"):
        at = cmd.index(parent)
        assert cmd[at - 3: at] == ["--perms", "0755", "--dir"] and at < bind
    tmpfs = cmd.index("--tmpfs")
    assert cmd[tmpfs + 1] == "/tmp" and cmd[tmpfs - 2: tmpfs] == ["--perms", "1777"]

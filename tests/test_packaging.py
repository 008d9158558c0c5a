"""The packaging files agree with each other and with the README."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

# conda names where they differ from PyPI's
CONDA_TO_PYPI = {"pytorch": "torch"}


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[; ]", requirement.strip(), maxsplit=1)[0].lower()


@pytest.fixture(scope="module")
def pyproject(repo_root):
    return tomllib.loads((repo_root / "pyproject.toml").read_text())


@pytest.fixture(scope="module")
def conda_deps(repo_root):
    yaml = pytest.importorskip("yaml")
    env = yaml.safe_load((repo_root / "environment.yml").read_text())
    names = set()
    for dep in env["dependencies"]:
        if isinstance(dep, str):
            names.add(CONDA_TO_PYPI.get(_name(dep), _name(dep)))
    return env, names


def test_environment_yml_lists_every_runtime_dependency(pyproject, conda_deps):
    _, conda_names = conda_deps
    pip_names = {_name(r) for r in pyproject["project"]["dependencies"]}
    assert pip_names - conda_names == set(), "in pyproject.toml but not environment.yml"
    assert conda_names - pip_names - {"python", "pip"} == set(), "in environment.yml only"


def test_environment_yml_installs_the_kit_itself(conda_deps):
    env, _ = conda_deps
    pip_sections = [d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d]
    assert ["-e ."] in pip_sections


def test_torch_pins_match_the_platform_mirror(pyproject):
    deps = pyproject["project"]["dependencies"]
    assert "torch==2.14.1" in deps
    assert "torchvision==0.29.1" in deps


def test_nbgrader_version_range_agrees(pyproject, repo_root):
    pip_spec = next(r for r in pyproject["project"]["dependencies"] if _name(r) == "nbgrader")
    conda_text = (repo_root / "environment.yml").read_text()
    assert pip_spec.replace("nbgrader", "") in conda_text


def test_readme_opens_with_the_two_commands_and_ci_runs_the_test_one(repo_root):
    lines = (repo_root / "README.md").read_text().splitlines()
    fence = lines.index("```bash")
    commands = [ln.split("#")[0].strip() for ln in lines[fence + 1 : lines.index("```", fence + 1)]]
    assert fence < 5 and len(commands) == 2, "the README must open with exactly two commands"
    _run_cmd, test_cmd = commands
    ci = (repo_root / ".ci" / "run").read_text().splitlines()
    steps = [ln.strip() for ln in ci if ln.strip() and not ln.lstrip().startswith("#")]
    assert steps[-1] == test_cmd, f"CI must end by calling the README's test command {test_cmd!r}"


def test_both_packages_are_declared_and_the_student_one_never_imports_the_instructor_one(
    pyproject, repo_root
):
    include = pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    assert "assignment_lib*" in include and "autograder*" in include
    offenders = [
        p.name
        for p in (repo_root / "assignment_lib").rglob("*.py")
        if re.search(r"^\s*(from|import)\s+autograder\b", p.read_text(), re.MULTILINE)
    ]
    assert offenders == [], f"assignment_lib is shipped to students; it must not import autograder: {offenders}"


def _student_readmes(repo_root):
    """``{where: text}`` of every README a student reads: the README's student section and each
    assignment's own bundle README (``student_README.md``)."""
    from autograder.assignment import all_assignments
    from autograder.release import student_readme

    readme = (repo_root / "README.md").read_text()
    section = readme[readme.index("## For students"):readme.index("## For instructors")]
    own = {f"{a.name} bundle README": student_readme(a) for a in all_assignments()
           if (Path(a.folder) / "student_README.md").exists()}
    assert {"fcn_segmentation bundle README", "transfer_learning bundle README"} <= set(own)
    return {**own, "README.md, For students": section}


def test_student_install_commands_match_pyproject(pyproject, repo_root):
    """Every torch/torchvision version a student README names is pyproject.toml's pin; the Python
    it asks for is requires-python's; it says to activate the environment; the CPU-only route
    uses PyTorch's CPU wheel index."""
    pins = {_name(r): r.split("==", 1)[1] for r in pyproject["project"]["dependencies"] if "==" in r}
    minimum = re.fullmatch(r">=\s*(\d+\.\d+)", pyproject["project"]["requires-python"]).group(1)
    for where, text in _student_readmes(repo_root).items():
        named = re.findall(r"\b(torch|torchvision)==([\w.+]+)", text)
        assert {"torch", "torchvision"} <= {n for n, _ in named}, where
        for name, version in named:
            assert pins[name] == version, f"{where} installs {name}=={version}, pyproject pins {pins[name]}"
        assert re.search(rf"Python {re.escape(minimum)} or newer", text), f"{where}: no 'Python {minimum} or newer'"
        assert "activate" in text and "conda activate fcn-kit" in text, where
        assert "--index-url https://download.pytorch.org/whl/cpu" in text, where
    env_python = re.search(r"^\s*- python=(\d+\.\d+)", (repo_root / "environment.yml").read_text(), re.MULTILINE)
    assert tuple(map(int, env_python.group(1).split("."))) >= tuple(map(int, minimum.split(".")))


def test_platform_setup_keeps_the_default_torch_build(repo_root):
    """The CPU-only wheel index is a student laptop route, never this platform's setup path."""
    for path in ("scripts/setup.sh", "Makefile", "environment.yml"):
        assert "download.pytorch.org" not in (repo_root / path).read_text(), path

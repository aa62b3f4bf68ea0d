"""The wheel: what it holds, and that it works installed outside the repository."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.helpers import ROOT

ROOT_MODULES = {"__init__.py", "__main__.py", "cli.py", "codes.py", "diagnostics.py", "output.py", "redact.py"}
NOT_SHIPPED = {"tests", "benchmarks", "examples", "editors", "scripts", "build", "dist", ".venv", ".tools"}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    # Built from a copy: setuptools builds in-tree, and a stale build/ of an earlier
    # build would otherwise put modules that no longer exist into the wheel.
    tree = tmp_path_factory.mktemp("tree") / "aipc"
    shutil.copytree(ROOT, tree, ignore=shutil.ignore_patterns(
        ".git", ".venv", ".tools", "build", "dist", "*.egg-info", "__pycache__", ".hypothesis", "node_modules",
        # what other tests write into the tree while this one copies it (they may run at the same time)
        "test-artifacts", ".pytest_cache"))
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q",
                    "-w", str(out), str(tree)], check=True, capture_output=True, timeout=300)
    (path,) = out.glob("aipc-*.whl")
    return path


def shipped_sources() -> set[str]:
    """Every module and data file of every package directory in the repository."""
    expected = {f"aipc/{name}" for name in ROOT_MODULES} | {"aipc/grammar.lark", "aipc/py.typed"}
    for init in ROOT.glob("*/**/__init__.py"):
        package = init.parent
        if package.relative_to(ROOT).parts[0] in NOT_SHIPPED:
            continue
        for module in package.glob("*.py"):
            expected.add("aipc/" + module.relative_to(ROOT).as_posix())
    return expected


def test_wheel_holds_the_package_and_nothing_else(wheel: Path):
    names = {n for n in zipfile.ZipFile(wheel).namelist() if not n.startswith("aipc-")}
    assert names == shipped_sources()
    stray = {n for n in names if n.count("/") == 1 and n.endswith(".py")} - {f"aipc/{m}" for m in ROOT_MODULES}
    assert not stray
    assert not any(n.startswith(("aipc/tests/", "aipc/examples/", "aipc/conftest")) for n in names)


def test_root_holds_no_stray_modules():
    assert {p.name for p in ROOT.glob("*.py")} == ROOT_MODULES


def test_installed_wheel_checks_an_example_outside_the_repository(wheel: Path, tmp_path: Path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    pip = subprocess.run([str(venv / "bin" / "pip"), "install", "-q", str(wheel)], capture_output=True, text=True,
                         timeout=600)
    assert pip.returncode == 0, pip.stderr
    example = tmp_path / "fraud.aip"
    example.write_text((ROOT / "examples" / "fraud-detection.aip").read_text())
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    result = subprocess.run([str(venv / "bin" / "aipc"), "check", str(example)], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == f"{example}: ok (5 stages)"
    where = subprocess.run([str(venv / "bin" / "python"), "-c", "import aipc; print(aipc.__file__)"], cwd=tmp_path,
                           env=env, capture_output=True, text=True, timeout=60)
    assert str(venv) in where.stdout


def test_the_license_is_an_spdx_expression(wheel: Path):
    """`license = "Apache-2.0"` (PEP 639), not the deprecated table form that makes
    setuptools warn on every install: the wheel's metadata says License-Expression."""
    with zipfile.ZipFile(wheel) as archive:
        (metadata,) = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        headers = archive.read(metadata).decode().split("\n\n", 1)[0].splitlines()
    assert "License-Expression: Apache-2.0" in headers
    assert not any(line.startswith("License: ") for line in headers)


def test_the_readme_names_only_documents_that_exist():
    """Every link and every `NAME.md` the README mentions is a file of the repository
    (the design document is docs/DESIGN.md)."""
    import re

    readme = (ROOT / "README.md").read_text()
    links = {target.split("#")[0] for target in re.findall(r"\]\(([^)\s]+)\)", readme)
             if not target.startswith(("http://", "https://", "#"))}
    assert links and all((ROOT / link).exists() for link in links), sorted(links)
    for name in set(re.findall(r"\b[A-Z][A-Z_]+\.md\b", readme)):  # DESIGN.md, LANGUAGE.md...
        assert (ROOT / name).exists() or (ROOT / "docs" / name).exists(), name
    assert "docs/DESIGN.md" in links


def test_the_quick_start_is_two_commands_and_ci_runs_the_second():
    """The README's Quick start: one command installs aipc and compiles an example,
    the other runs the whole suite, and `.ci/run` calls that one and nothing else."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    commands = re.findall(r"```sh\n(.*?)\n```", section, re.S)
    assert len(commands) == 2 and all("\n" not in command for command in commands), commands
    install, suite = commands
    assert "pip install" in install and "aipc compile examples/" in install
    ci = [line for line in (ROOT / ".ci" / "run").read_text().splitlines()
          if line.strip() and not line.startswith("#")]
    assert ci == [f"exec {suite}"]

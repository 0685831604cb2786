"""``scripts/demo`` on a fresh tree installs only the package and its required
dependencies and runs the demo; the editable install prints no setuptools deprecation
warning; ``scripts/bootstrap`` refuses what it does not know."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from tree_copy import ROOT

pytestmark = [pytest.mark.packaging]


def _name(requirement: str) -> str:
    """``"etcd-sdk-python>=0.0.7"`` -> ``"etcd-sdk-python"`` (normalised, no extras)."""
    name = re.split(r"[\[<>=!~;\s]", requirement, maxsplit=1)[0]
    return re.sub(r"[-_.]+", "-", name).lower()


def extras_only_packages() -> set[str]:
    """Every package that only an extra (any of them) brings in."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    required = {_name(r) for r in project["dependencies"]}
    return {_name(r) for reqs in project["optional-dependencies"].values() for r in reqs
            if not r.startswith("tenure[")} - required


def installed(venv_python: Path) -> set[str]:
    listed = subprocess.run(
        [str(venv_python), "-m", "pip", "list", "--format=freeze"],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout
    return {_name(line.split("==")[0]) for line in listed.splitlines() if "==" in line}


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_editable_install_prints_no_deprecation_warning(fresh_tree: Path, tmp_path: Path
                                                        ) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    # As bootstrap does; the pip that ships with Python hides the build backend's
    # warnings when the build succeeds, current pip shows them.
    subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--upgrade",
                    "pip"], check=True, timeout=300, capture_output=True)
    result = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "--no-deps", "-e",
         str(fresh_tree)],
        capture_output=True, text=True, timeout=600, check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    deprecations = [line for line in output.splitlines()
                    if re.search(r"deprecat", line, re.IGNORECASE)]
    assert deprecations == [], "pip install -e . printed:\n" + "\n".join(deprecations)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_scripts_demo_on_a_fresh_tree_installs_only_the_package_and_runs_the_demo(
    fresh_tree: Path,
) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    env["COLUMNS"] = "120"
    demo = subprocess.run([str(fresh_tree / "scripts" / "demo")], cwd=fresh_tree, env=env,
                          capture_output=True, text=True, timeout=840, check=False)
    output = demo.stdout + demo.stderr
    assert demo.returncode == 0, f"scripts/demo failed on a fresh tree:\n{output[-4000:]}"
    assert "OK:" in demo.stdout
    assert output.startswith("bootstrap: installing tenure into .venv"), output[:500]
    assert not re.search(r"deprecat|warning", output, re.IGNORECASE), output[:3000]

    python = fresh_tree / ".venv" / "bin" / "python"
    extra = extras_only_packages()
    assert {"pytest", "mypy", "matplotlib", "kazoo", "aiohttp", "mkdocs"} <= extra
    unwanted = sorted(installed(python) & extra)
    assert unwanted == [], f"scripts/demo installed packages of extras: {unwanted}"

    again = subprocess.run([str(fresh_tree / "scripts" / "bootstrap"), "--minimal"],
                           cwd=fresh_tree, env=env, capture_output=True, text=True,
                           timeout=120, check=False)
    assert (again.returncode, again.stdout, again.stderr) == (0, "", ""), \
        "a second bootstrap must only re-check the install"


def test_bootstrap_refuses_an_unknown_argument_before_touching_anything() -> None:
    result = subprocess.run([str(ROOT / "scripts" / "bootstrap"), "--everything"],
                            capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 2
    assert "unknown argument '--everything'" in result.stderr
    assert "--minimal" in result.stderr

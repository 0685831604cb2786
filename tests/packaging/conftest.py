"""Fixtures of the packaging tests: a copy of the source tree as a fresh clone would have
it, and the sdist and wheel built from that copy (once per test session)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from tree_copy import Dist, copy_tree


@pytest.fixture(scope="session")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Dist:
    """``python -m build`` (sdist, then the wheel from the sdist) of a fresh copy."""
    tree = copy_tree(tmp_path_factory.mktemp("tree"))
    out = tmp_path_factory.mktemp("dist")
    result = subprocess.run(
        [sys.executable, "-m", "build", "--outdir", str(out), str(tree)],
        capture_output=True, text=True, timeout=600, check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"python -m build failed:\n{output[-4000:]}"
    sdists, wheels = sorted(out.glob("*.tar.gz")), sorted(out.glob("*.whl"))
    assert len(sdists) == 1 and len(wheels) == 1, f"expected one sdist and one wheel: {output}"
    return Dist(sdists[0], wheels[0], output)


@pytest.fixture
def fresh_tree(tmp_path: Path) -> Path:
    """A copy of the tree as a fresh clone has it: no .venv, no build output."""
    return copy_tree(tmp_path / "tenure")

"""Helpers of the packaging tests (fixtures in conftest.py): the project root, a copy of
the source tree as a fresh clone would have it, and what ``python -m build`` made."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def copy_tree(dest: Path) -> Path:
    """Copies the files git would put in a clone (tracked, plus new files not ignored, so
    uncommitted work is tested too) to ``dest``; returns ``dest``."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT, capture_output=True, check=True,
    ).stdout.decode().split("\0")
    for name in filter(None, listed):
        source = ROOT / name
        if source.is_file():   # listed but deleted in the work tree: a clone would lack it too
            target = dest / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    return dest


@dataclass(frozen=True)
class Dist:
    """What ``python -m build`` made from a fresh copy of the tree."""

    sdist: Path
    wheel: Path
    output: str   # everything build and the build backend printed

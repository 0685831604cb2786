"""Where each package of the ``tenure`` distribution lives, read from pyproject.toml.

The source folders are not named like their modules (``gateway/`` is ``tenure``,
``adapters/`` is ``tenure.adapters``, ...), so tools that must find a module by its
name -- scripts/typecheck.py for mypy, docs/hooks/api_source.py for the API reference --
resolve ``[tool.setuptools] packages`` and ``package-dir`` here, the way setuptools does.
Standard library only, and nothing of tenure is imported: building the docs needs no
backend client. It does not check that the folders exist (each caller reports a missing
one in its own terms)."""

from __future__ import annotations

import tomllib
from pathlib import Path


def package_dirs(pyproject: Path) -> dict[str, Path]:
    """Each package of ``[tool.setuptools] packages`` -> its folder, RELATIVE to the
    folder of ``pyproject``: the longest ``package-dir`` entry that is a prefix of the
    package name, then the remaining name parts as sub-folders."""
    with pyproject.open("rb") as f:
        setuptools = tomllib.load(f)["tool"]["setuptools"]
    mapping: dict[str, str] = setuptools.get("package-dir", {})
    dirs: dict[str, Path] = {}
    for package in setuptools["packages"]:
        parts = package.split(".")
        for i in range(len(parts), -1, -1):
            prefix = ".".join(parts[:i])
            if prefix in mapping or i == 0:
                dirs[package] = Path(mapping.get(prefix, ".")).joinpath(*parts[i:])
                break
    return dirs

"""mkdocs hook: a source tree named like the import package, for the API reference.

The source folders are not named like their modules (``gateway/`` is ``tenure``,
``adapters/`` is ``tenure.adapters``, ...; see ``[tool.setuptools]`` in pyproject.toml),
and griffe, which mkdocstrings uses to read the docstrings, finds a module only by its
folder name: ``tenure`` must be a folder ``tenure/``. So before every build this hook
makes ``build/api-source/tenure/...`` with a copy of each ``.py`` file of every package
that pyproject lists, placed by that same mapping (so a change of the mapping needs no
change here), and mkdocs.yml points mkdocstrings at it (``paths``). Copies, not symbolic
links: griffe resolves links and would then look for ``tenure.adapters`` beside the real
``gateway/__init__.py``. ``mkdocs serve`` watches the source folders and rebuilds, which
copies again. Nothing is imported or installed, so building the docs needs no backend
client.
"""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path
from types import ModuleType
from typing import Any

from mkdocs.plugins import event_priority

ROOT = Path(__file__).resolve().parents[2]
TREE = ROOT / "build" / "api-source"


def _shared() -> ModuleType:
    """scripts/pyproject_packages.py, loaded by path: mkdocs puts only this folder on
    sys.path while it loads a hook, and the packaging tests load the hook by path."""
    path = ROOT / "scripts" / "pyproject_packages.py"
    spec = importlib.util.spec_from_file_location("pyproject_packages", path)
    assert spec is not None and spec.loader is not None, path
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def package_dirs(pyproject: Path) -> dict[str, Path]:
    """Each package of ``[tool.setuptools] packages`` -> its folder (absolute: below the
    folder of ``pyproject``), resolved as setuptools does (scripts/pyproject_packages.py,
    which scripts/typecheck.py uses too)."""
    relative: dict[str, Path] = _shared().package_dirs(pyproject)
    return {package: pyproject.parent / folder for package, folder in relative.items()}


def build_tree(pyproject: Path, tree: Path) -> list[str]:
    """Recreates ``tree`` with a copy of every module file; returns the packages copied.

    Raises FileNotFoundError naming the package whose folder has no ``__init__.py``
    (pyproject lists a package that is not there)."""
    if tree.exists():
        shutil.rmtree(tree)
    dirs = package_dirs(pyproject)
    for package, folder in sorted(dirs.items()):
        if not (folder / "__init__.py").is_file():
            raise FileNotFoundError(
                f"pyproject.toml lists package {package!r} but {folder}/__init__.py does "
                "not exist: fix [tool.setuptools] packages/package-dir")
        target = tree.joinpath(*package.split("."))
        target.mkdir(parents=True, exist_ok=True)
        for path in sorted(folder.glob("*.py")):
            shutil.copy2(path, target / path.name)
    return sorted(dirs)


@event_priority(100)   # before mkdocstrings' own on_config, which globs its `paths`
def on_config(config: Any) -> Any:
    """mkdocs event: (re)build the tree before mkdocstrings looks for it."""
    build_tree(ROOT / "pyproject.toml", TREE)
    return config

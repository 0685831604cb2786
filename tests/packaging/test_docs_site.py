"""The docs as a site: ``mkdocs build --strict`` (every internal link and anchor
resolves) with an API reference that mkdocstrings generated from the docstrings, found
through the folder remapping by docs/hooks/api_source.py."""

from __future__ import annotations

import ast
import html
import importlib.util
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from types import ModuleType

import pytest
from tree_copy import ROOT

pytestmark = [pytest.mark.packaging]


def load(path: Path) -> ModuleType:
    """Imports a helper script of docs/ by its path (docs/ is not a package)."""
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def reference_modules() -> dict[str, str]:
    """Each module a reference page renders (``::: name``) -> the page's file stem."""
    found = {}
    for page in sorted((ROOT / "docs" / "reference").glob("*.md")):
        for name in re.findall(r"^::: (\S+)", page.read_text(), re.MULTILINE):
            found[name] = page.stem
    return found


def module_file(name: str) -> Path:
    hook = load(ROOT / "docs" / "hooks" / "api_source.py")
    dirs: dict[str, Path] = hook.package_dirs(ROOT / "pyproject.toml")
    if name in dirs:
        return dirs[name] / "__init__.py"
    package, _, module = name.rpartition(".")
    return dirs[package] / f"{module}.py"


def page_text(path: Path) -> str:
    """The visible text of a built page, whitespace collapsed."""
    text = path.read_text()
    text = re.sub(r"<(script|style)\b.*?</\1>", "", text, flags=re.DOTALL)
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", text)))


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_mkdocs_build_strict_makes_the_site_with_the_api_reference(tmp_path: Path) -> None:
    site = tmp_path / "site"
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT, capture_output=True, text=True, timeout=540, check=False,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert result.returncode == 0, f"mkdocs build --strict failed:\n{result.stderr[-4000:]}"

    modules = reference_modules()
    for name in ("tenure.client", "tenure.leadership", "tenure.fencing", "tenure.errors",
                 "tenure.store", "tenure.adapters", "tenure.conformance.lab"):
        assert name in modules, f"no reference page renders {name}"
    for name, stem in modules.items():
        docstring = ast.get_docstring(ast.parse(module_file(name).read_text()))
        assert docstring, f"{name} has no module docstring to render"
        first_line = docstring.splitlines()[0]
        first_line = re.sub(r":\w+:`~?([^`]+)`", r"\1", first_line).replace("``", "")
        text = page_text(site / "reference" / stem / "index.html")
        squeezed = re.sub(r"\s", "", text)     # the markup between words leaves spaces
        assert re.sub(r"\s", "", first_line) in squeezed, \
            f"reference/{stem}: {name}'s docstring was not rendered"
        assert not re.search(r":(class|meth|mod|func|attr):", text), \
            f"reference/{stem}: a Sphinx role shows as raw text"
    client = re.sub(r"\s", "", page_text(site / "reference" / "client" / "index.html"))
    for member in ("connect(", "campaign(", "observe("):
        assert member in client, f"reference/client lacks {member}"

    for picture in ("validity-deadline.png", "fencing.png"):
        assert (site / "pictures" / picture).is_file()
    assert not (site / "hooks").exists() and not (site / "pictures" / "draw.py").exists(), \
        "helper scripts were published as pages"


def test_the_api_source_tree_follows_pyproject_mapping(tmp_path: Path) -> None:
    hook = load(ROOT / "docs" / "hooks" / "api_source.py")
    tree = tmp_path / "tree"
    packages = hook.build_tree(ROOT / "pyproject.toml", tree)
    listed = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert packages == sorted(listed["packages"])
    copied = tree / "tenure" / "adapters" / "__init__.py"
    assert copied.read_text() == (ROOT / "adapters" / "__init__.py").read_text()
    assert not copied.is_symlink()
    assert (tree / "tenure" / "conformance" / "benchmarks" / "peers" / "__init__.py").is_file()


def test_the_api_source_tree_names_a_listed_package_that_is_missing(tmp_path: Path) -> None:
    hook = load(ROOT / "docs" / "hooks" / "api_source.py")
    (tmp_path / "pyproject.toml").write_text(
        '[tool.setuptools]\npackage-dir = { "tenure" = "src" }\npackages = ["tenure"]\n')
    with pytest.raises(FileNotFoundError, match=r"lists package 'tenure' but .*src/__init__"):
        hook.build_tree(tmp_path / "pyproject.toml", tmp_path / "tree")


@pytest.mark.parametrize(("docstring", "rendered"), [
    (":class:`Leadership` ends", "`Leadership` ends"),
    ("see :meth:`~tenure.client.Election.campaign`.", "see `campaign`."),
    (":mod:`tenure.fencing` and :py:func:`tenure.connect`", "`tenure.fencing` and "
     "`tenure.connect`"),
    ("plain ``code`` stays", "plain ``code`` stays"),
])
def test_sphinx_roles_render_as_code(docstring: str, rendered: str) -> None:
    roles = load(ROOT / "docs" / "hooks" / "griffe_roles.py")
    assert roles.rewrite_roles(docstring) == rendered

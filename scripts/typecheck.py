"""mypy --strict over every module of the ``tenure`` import package (run by scripts/typecheck).

    .venv/bin/python scripts/typecheck.py [MYPY OPTION ...]

Hand-written on purpose: the source folders are not named like their modules (gateway/ is
``tenure``, adapters/ is ``tenure.adapters``, ...), and setuptools' ``package-dir`` remaps
are invisible to mypy's module finder -- neither ``mypy gateway adapters conformance``
(which would name the modules ``gateway.client`` and so on) nor ``mypy -p tenure`` (which
cannot see the editable install's import hook) checks the code under its real names.
So this reads ``[tool.setuptools]`` from pyproject.toml (scripts/pyproject_packages.py,
shared with the docs' API-reference hook), gives mypy one ``BuildSource``
per file with its module name taken from that mapping, and runs one build over all of
them: an import such as ``from tenure.store import Store`` resolves to gateway/store.py,
and errors are reported at the real paths (``gateway/client.py:NN: error: ...``).
Options come from ``[tool.mypy]`` in pyproject.toml (``strict = true``), as with the
mypy command; extra arguments are passed on to mypy as options.
Exit status as mypy's: 0 clean, 1 type errors, 2 usage error or blocking error.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from mypy import build
from mypy.errors import CompileError
from mypy.fscache import FileSystemCache
from mypy.main import process_options
from mypy.modulefinder import BuildSource
from mypy.util import count_stats
from pyproject_packages import package_dirs  # scripts/, beside this file

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = ROOT / "pyproject.toml"


def sources(dirs: dict[str, Path]) -> tuple[list[BuildSource], list[str]]:
    """One BuildSource per .py file of every package (``__init__.py`` is the package
    itself), and a complaint for every folder with an ``__init__.py`` below a package
    that pyproject does not list (it would be neither installed nor checked)."""
    found: list[BuildSource] = []
    problems: list[str] = []
    for package, folder in sorted(dirs.items()):
        if not (folder / "__init__.py").is_file():
            problems.append(f"{folder}/__init__.py (package {package}) does not exist")
            continue
        for path in sorted(folder.glob("*.py")):
            module = package if path.name == "__init__.py" else f"{package}.{path.stem}"
            found.append(BuildSource(str(path), module))
        for sub in sorted(folder.iterdir()):
            name = f"{package}.{sub.name}"
            if (sub / "__init__.py").is_file() and name not in dirs:
                problems.append(f"{sub}/ has an __init__.py but {name} is not in "
                                "[tool.setuptools] packages in pyproject.toml")
    return found, problems


def main(argv: list[str]) -> int:
    os.chdir(ROOT)  # paths in BuildSource and in mypy's messages are relative to here
    t0 = time.time()
    fscache = FileSystemCache()
    extra, options = process_options(
        ["--config-file", str(PYPROJECT), "--cache-dir", str(ROOT / ".mypy_cache"), *argv],
        require_targets=False, fscache=fscache,
    )
    if extra:
        print("typecheck: pass mypy options only; it always checks the whole tenure "
              "package", file=sys.stderr)
        return 2
    targets, problems = sources(package_dirs(PYPROJECT))
    if problems:
        print("\n".join(f"typecheck: {p}" for p in problems), file=sys.stderr)
        return 2

    messages: list[str] = []

    def flush_errors(filename: str | None, new_messages: list[str], serious: bool) -> None:
        messages.extend(new_messages)
        for line in new_messages:
            print(line)
        sys.stdout.flush()

    blocked = False
    try:
        build.build(targets, options, flush_errors=flush_errors, fscache=fscache,
                    stdout=sys.stdout, stderr=sys.stderr)
    except CompileError:  # a blocking error (e.g. syntax); build() has flushed it
        blocked = True
    n_errors, n_notes, n_files = count_stats(messages)
    seconds = time.time() - t0
    if n_errors:
        print(f"Found {n_errors} error{'s' * (n_errors != 1)} in {n_files} "
              f"file{'s' * (n_files != 1)} (checked {len(targets)} source files, "
              f"{seconds:.1f} s)")
    else:
        print(f"Success: no issues found in {len(targets)} source files ({seconds:.1f} s)")
    if blocked:
        return 2
    return 1 if messages and n_notes < len(messages) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""The README a new user reads: it opens with the two commands (the demo and the whole
test suite, which .ci/run runs exactly), then Install with the extras table, a
quickstart, the usage and the backends table, and the developer commands under
Contributing; every link in it and in docs/ resolves inside the repository."""

from __future__ import annotations

import re
import shlex
import tomllib
from pathlib import Path

import pytest
from tree_copy import ROOT

pytestmark = [pytest.mark.packaging, pytest.mark.unit]

README = (ROOT / "README.md").read_text()
USER_EXTRAS = ("etcd", "zookeeper", "consul", "redis", "postgres", "kubernetes", "serve", "all")
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)|!\[[^\]]*\]\(([^)\s]+)\)")


def sections(text: str) -> dict[str, str]:
    """``## Heading`` -> its text up to the next ``## `` (code blocks skipped)."""
    found: dict[str, str] = {}
    current = ""
    in_code = False
    for line in text.splitlines():
        if line.startswith("```"):
            in_code = not in_code
        if not in_code and line.startswith("## "):
            current = line[3:].strip()
            found[current] = ""
        elif current:
            found[current] += line + "\n"
    return found


def slug(heading: str) -> str:
    """GitHub's and mkdocs' anchor of a heading (lower case, punctuation dropped)."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", path.read_text(), flags=re.DOTALL)
    return {slug(m) for m in re.findall(r"^#+ (.+)$", text, re.MULTILINE)}


def first_code_block(text: str) -> tuple[str, str]:
    """(the text before the first fenced block, the block's content)."""
    match = re.search(r"^```\w*\n(.*?)^```", text, re.MULTILINE | re.DOTALL)
    assert match, "no fenced code block"
    return text[:match.start()], match.group(1)


def extras_table(text: str) -> dict[str, set[str]]:
    """The ``| extra | installs | ... |`` table: extra -> package names in its row."""
    rows: dict[str, set[str]] = {}
    table = re.search(r"^\| extra \| installs \|.*?(?=^\s*$)", text, re.MULTILINE | re.DOTALL)
    assert table, "no extras table (| extra | installs | needed for |)"
    for line in table.group(0).splitlines()[2:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        name = cells[0].strip("`")
        rows[name] = set(re.findall(r"`([^`]+)`", cells[1]))
    return rows


def test_readme_opens_with_the_demo_and_the_test_command() -> None:
    before, block = first_code_block(README)
    assert "\n## " not in before, "a section comes before the two commands"
    commands = [line.split("#")[0].strip() for line in block.splitlines() if line.strip()]
    assert commands == ["scripts/demo", "scripts/test"]
    assert "SQLite" in block and "failover" in block


def test_ci_runs_exactly_the_readme_test_command() -> None:
    _, block = first_code_block(README)
    test_command = block.splitlines()[1].split("#")[0].strip()
    ci = [line for line in (ROOT / ".ci" / "run").read_text().splitlines()
          if line.strip() and not line.startswith("#")]
    assert ci[-1].strip() == f"exec {test_command}", ci
    assert not any(test_command.split()[0] in line for line in ci[:-1])


def test_install_quickstart_then_contributing_in_that_order() -> None:
    names = list(sections(README))
    for wanted in ("Install", "Quickstart", "Use it as a library", "Use it from the shell",
                   "Backends", "Contributing"):
        assert wanted in names, f"README lacks a '## {wanted}' section: {names}"
    assert names.index("Install") < names.index("Quickstart") < names.index("Contributing")
    assert names[-1] == "Contributing"
    install = sections(README)["Install"]
    assert "pip install tenure" in install
    for extra in USER_EXTRAS:
        assert f'"tenure[{extra}]"' in install or f"`{extra}`" in install


@pytest.mark.parametrize("page", ["README.md", "docs/index.md"])
def test_extras_table_matches_pyproject(page: str) -> None:
    table = extras_table((ROOT / page).read_text())
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras: dict[str, list[str]] = project["optional-dependencies"]
    assert set(table) == {"(none)", *USER_EXTRAS}, sorted(table)

    def names(requirements: list[str]) -> set[str]:
        return {re.split(r"[\[<>=!~;\s]", r, maxsplit=1)[0] for r in requirements}

    assert table["(none)"] == names(project["dependencies"])
    for extra in USER_EXTRAS[:-1]:
        assert table[extra] == names(extras[extra]), f"{page}: row {extra}"
    assert extras["all"] == [f"tenure[{','.join(USER_EXTRAS[:-1])}]"], \
        "the table says `all` is every row above"


def test_developer_commands_are_under_contributing_only() -> None:
    parts = sections(README)
    contributing = parts["Contributing"]
    assert "scripts/test" in contributing and "root" in contributing
    assert "scripts/bootstrap" in contributing and ".ci/run" in contributing
    for name in ("Install", "Quickstart", "Use it as a library", "Use it from the shell"):
        assert "scripts/test" not in parts[name], f"developer command in '## {name}'"


def test_readme_keeps_the_backends_table() -> None:
    backends = sections(README)["Backends"]
    for url in ("sqlite:///", "etcd://", "zookeeper://", "consul://", "redis://"):
        assert re.search(rf"^\| `{re.escape(url)}", backends, re.MULTILINE), url


def test_every_quickstart_command_is_a_real_entry_point() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    quick = sections(README)["Quickstart"]
    for line in re.findall(r"^(tenure \S+)", quick, re.MULTILINE):
        assert shlex.split(line)[0] in project["scripts"]
        assert (ROOT / "gateway" / "cli" / f"{shlex.split(line)[1]}.py").is_file(), line


def markdown_files() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


@pytest.mark.parametrize("path", markdown_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves_inside_the_repository(path: Path) -> None:
    text = re.sub(r"```.*?```", "", path.read_text(), flags=re.DOTALL)
    text = re.sub(r"`[^`\n]*`", "", text)
    problems = []
    for match in LINK.finditer(text):
        target = match.group(1) or match.group(2)
        if re.match(r"[a-z]+:", target):          # http:, https:, mailto:
            continue
        file_part, _, anchor = target.partition("#")
        resolved = (path.parent / file_part).resolve() if file_part else path
        home = ROOT if path.parent == ROOT else ROOT / "docs"   # the site serves docs/ only
        if not resolved.is_relative_to(home):
            problems.append(f"{target}: outside {home.relative_to(ROOT.parent)}")
        elif not resolved.exists():
            problems.append(f"{target}: no such file")
        elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
            problems.append(f"{target}: no heading with anchor #{anchor}")
    assert problems == [], f"{path.relative_to(ROOT)}: " + "; ".join(problems)


@pytest.mark.parametrize("path", markdown_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_doc_relies_on_a_spec_outside_the_repository(path: Path) -> None:
    text = path.read_text()
    assert not re.search(r"\bSPEC\b", text), \
        "refers to a SPEC that is not in the repository: link docs/contract.md instead"

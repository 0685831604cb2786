"""The conventions a user expects of a command line tool: --version, python -m,
shell completion, durations with units, help without markup, consistent limits."""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import tenure
from tenure.cli.main import build_parser

pytestmark = [pytest.mark.cli, pytest.mark.unit]


def tenure_cli(*args: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tenure", *args], capture_output=True,
                          text=True, timeout=60, check=False, **kwargs)  # type: ignore[call-overload]


@pytest.mark.parametrize("flag", ["--version", "-V"])
def test_version_is_printed_and_matches_the_package_metadata(flag: str) -> None:
    result = tenure_cli(flag)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"tenure {tenure.__version__}\n"
    assert tenure.__version__ == importlib.metadata.version("tenure")


def test_python_dash_m_tenure_is_the_tenure_command() -> None:
    result = tenure_cli("leader", "--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: tenure leader")


def test_durations_take_units_like_the_url_options(tmp_path: Path) -> None:
    env = {**os.environ, "TENURE_BACKEND": f"sqlite://{tmp_path}/s.db"}
    result = tenure_cli("run", "--election", "e", "--ttl", "1500ms", "--grace", "2s",
                        "--timeout", "10s", "--", "sh", "-c", "exit 7", env=env)
    assert result.returncode == 7, result.stderr  # won, ran the command, passed its status
    for bad in ("10m", "s", "1.5.5", "nan", "inf", "true"):
        result = tenure_cli("run", "--election", "e", "--ttl", bad, "--", "true", env=env)
        assert result.returncode == 2, (bad, result.stderr)
        assert f"--ttl {bad!r}" in result.stderr


def test_serve_refuses_a_ttl_above_max_ttl_naming_both() -> None:
    for args, shown in ((["--ttl", "30", "--max-ttl", "5"], "--ttl 30"),
                        (["--max-ttl", "5"], "the default --ttl 10")):
        result = tenure_cli("serve", *args, "--listen", "127.0.0.1:0")
        assert result.returncode == 2, result.stderr
        assert shown in result.stderr and "--max-ttl 5" in result.stderr, result.stderr


def all_parsers(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield from all_parsers(sub)


def test_help_texts_have_no_markup_or_internal_jargon() -> None:
    parsers = list(all_parsers(build_parser()))
    assert len(parsers) > 15
    for parser in parsers:
        text = parser.format_help()
        assert "`" not in text, (parser.prog, text)
        assert not re.search(r":(mod|func|class|meth|attr|data|exc):", text), parser.prog
        for jargon in ("S1/S2", "S1-S4, L1-L4", "issue 9", "Bully reference", "step interface"):
            assert jargon not in text, (parser.prog, jargon)


# -- shell completion -----------------------------------------------------------------

CASES = [
    (["tenure", ""], {"run", "leader", "observe", "contenders", "completion", "migrate"}),
    (["tenure", "le"], {"leader"}),
    (["tenure", "leader", "--"], {"--backend", "--config", "--election", "--json"}),
    (["tenure", "migrate", ""], {"status", "advance"}),
    (["tenure", "migrate", "advance", "--from", "x", ""], {"dual-source", "target"}),
    (["tenure", "serve", "--log-format", ""], {"text", "json"}),
    (["tenure", "completion", ""], {"bash", "zsh"}),
]


@pytest.fixture(scope="module")
def scripts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("completion")
    found = {}
    for shell in ("bash", "zsh"):
        result = tenure_cli("completion", shell)
        assert result.returncode == 0, result.stderr
        found[shell] = folder / shell
        found[shell].write_text(result.stdout)
    return found


def test_bash_completion_offers_commands_options_and_choices(scripts: dict[str, Path]) -> None:
    lines = [f"source {scripts['bash']}"]
    for words, _ in CASES:
        quoted = " ".join(f"'{word}'" for word in words)
        lines.append(f"COMP_WORDS=({quoted}); COMP_CWORD={len(words) - 1}; _tenure; "
                     'echo "${COMPREPLY[*]}"')
    result = subprocess.run(["bash", "--norc", "-c", "\n".join(lines)], capture_output=True,
                            text=True, timeout=60, check=True)
    assert result.stderr == ""
    for (words, expected), line in zip(CASES, result.stdout.splitlines(), strict=True):
        offered = set(line.split())
        assert expected <= offered, (words, offered)
        assert all(word.startswith(words[-1]) for word in offered), (words, offered)


def test_zsh_completion_offers_commands_options_and_choices(scripts: dict[str, Path]) -> None:
    # compadd and friends are zsh's completion builtins; stand-ins print what they get.
    lines = ["compdef() { :; }", 'compadd() { [[ $1 == -- ]] && shift; print -r -- "$*"; }',
             "_files() { print FILES; }", "_normal() { print NORMAL; }",
             "_message() { print MESSAGE; }", f"source {scripts['zsh']}"]
    cases = [*CASES, (["tenure", "leader", "--config", ""], {"FILES"}),
             (["tenure", "run", "--election", "e", "--", "l"], {"NORMAL"})]
    for words, _ in cases:
        quoted = " ".join(f"'{word}'" for word in words)
        lines.append(f"words=({quoted}); CURRENT={len(words)}; _tenure")
    result = subprocess.run(["zsh", "-f", "-c", "\n".join(lines)], capture_output=True,
                            text=True, timeout=60, check=True)
    assert result.stderr == ""
    for (words, expected), line in zip(cases, result.stdout.splitlines(), strict=True):
        assert expected <= set(line.split()), (words, line)

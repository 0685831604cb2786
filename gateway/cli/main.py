"""Entry point of the ``tenure`` command (also ``python -m tenure``).

Each subcommand lives in its own module of ``tenure.cli`` and exposes
``register(subparsers)``, which adds its parser and sets ``handler`` to a function
``(args) -> int`` returning the exit code.

What every subcommand can rely on from here: a TenureError that reaches this function
becomes ONE line ``tenure COMMAND: error: MESSAGE`` on stderr -- exit 2 for bad input
(argparse's convention, kept for our own validation errors too), 1 otherwise (the
store cannot be reached) -- and Ctrl-C becomes ``tenure COMMAND: interrupted``, exit
130; never a traceback. Every password of a backend URL is replaced by ``***`` in
these lines, in argparse's messages and in log lines.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import re
import signal
import sys
from collections.abc import Sequence
from typing import NoReturn

import tenure
from tenure.cli import common
from tenure.errors import TenureError

SUBCOMMAND_MODULES = ("run", "leader", "observe", "contenders", "handoff", "demo", "serve",
                      "migrate", "lab", "conformance", "bench", "completion", "postgres")

EXIT_USAGE = common.EXIT_USAGE


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors have passwords replaced by ``***``."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {common.redacted(message)}\n")


def build_parser() -> argparse.ArgumentParser:
    """Builds the full ``tenure`` parser from the subcommand modules."""
    parser = Parser(
        prog="tenure",
        description="Leader election over etcd, ZooKeeper, Consul, Redis or SQLite.",
        epilog="Run 'tenure COMMAND --help' for a command's options. Durations are "
        "seconds: 10, 10s or 500ms. Set TENURE_LOG_LEVEL=DEBUG to see every log line.",
    )
    parser.add_argument("-V", "--version", action="version",
                        version=f"tenure {tenure.__version__}")
    subparsers = parser.add_subparsers(dest="subcommand", metavar="COMMAND", required=True)
    for name in SUBCOMMAND_MODULES:
        module = importlib.import_module(f"tenure.cli.{name}")
        module.register(subparsers)
    _plain_help(parser)
    return parser


def plain(text: str) -> str:
    """``text`` without the reStructuredText markup of docstrings, for --help:
    ``:role:`x``` -> x, double backticks dropped, single backticks -> 'x'."""
    text = re.sub(r":[a-z]+:`~?([^`]*)`", r"\1", text)
    text = text.replace("``", "")
    return re.sub(r"`([^`]*)`", r"'\1'", text)


def _plain_help(parser: argparse.ArgumentParser) -> None:
    """Applies :func:`plain` to every description, epilog and help text of ``parser``
    and its subcommands (their texts are often module docstrings)."""
    for attribute in ("description", "epilog"):
        text = getattr(parser, attribute)
        if text:
            setattr(parser, attribute, plain(text))
    for action in parser._actions:
        if action.help and action.help != argparse.SUPPRESS:
            action.help = plain(action.help)
        if isinstance(action, argparse._SubParsersAction):
            for choice in action._choices_actions:
                if choice.help:
                    choice.help = plain(choice.help)
            for sub in action.choices.values():
                _plain_help(sub)


def main(argv: Sequence[str] | None = None) -> int:
    """Runs ``tenure`` with ``argv`` and returns the process exit code.

    Called as the program (``argv`` None), a Ctrl-C that comes after the outcome is
    decided, while the interpreter shuts down (joining a store client's threads), exits
    at once with that outcome instead of printing a traceback."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in arguments if a in SUBCOMMAND_MODULES), "")
    code = _run(arguments, command)
    if argv is None:
        sys.stdout.flush()
        signal.signal(signal.SIGINT, lambda _signum, _frame: os._exit(code))
    return code


def _run(arguments: list[str], command: str) -> int:
    try:
        common.collect_secrets(arguments, os.environ)
        args = build_parser().parse_args(arguments)
        command = args.subcommand
        if not getattr(args, "own_logging", False):
            common.configure_logging()
        try:
            code: int = args.handler(args)
        except TenureError as exc:
            return common.report_error(command, exc)
        common.release_warnings()
        return code
    except KeyboardInterrupt:
        return common.interrupted(command)
    except BrokenPipeError:
        # The reader of stdout went away (e.g. `tenure observe | head -1`): stop quietly.
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


if __name__ == "__main__":
    sys.exit(main())

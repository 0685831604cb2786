"""Arguments and helpers shared by the subcommands: argument types, connecting,
exit codes, redacted error lines and the command line's logging.

Every subcommand reports a failure as ONE line on stderr, ``tenure COMMAND: error:
MESSAGE``, with every password replaced by ``***`` (see :func:`redacted`), and exits
with 2 for bad input, 1 when the store cannot be reached, 130 on Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
from collections.abc import Iterable, Mapping
from typing import TextIO

import tenure
from tenure.config import (
    BackendURL,
    load_config_file,
    load_settings,
    parse_backend_url,
    parse_seconds,
    parse_ttl,
    redact,
    url_secrets,
)
from tenure.errors import ConfigError, InvalidNameError, InvalidValueError, TenureError
from tenure.names import check_election_name
from tenure.store import LeaderInfo

EXIT_UNAVAILABLE = 1
EXIT_USAGE = 2
EXIT_NO_LEADER = 3
EXIT_INTERRUPTED = 128 + signal.SIGINT

INPUT_ERRORS = (ConfigError, InvalidNameError, InvalidValueError)

EXIT_STATUS_HELP = (
    "exit status: 0 ok; 1 the store cannot be reached (or, for SQLite, there is no "
    "store at the path); 2 bad arguments or configuration; 130 interrupted (Ctrl-C)"
)

_secrets: tuple[str, ...] = ()
"""Passwords found in this process's command line, $TENURE_BACKEND and config file."""


# -- argument types ---------------------------------------------------------------------


def election_name(text: str) -> str:
    """argparse type for ``--election``: a valid election name."""
    try:
        return check_election_name(text)
    except InvalidNameError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def ttl_seconds(text: str) -> float:
    """argparse type for ``--ttl``: a positive duration ("10", "10s", "500ms")."""
    try:
        return parse_ttl(text, "--ttl")
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def positive_int(text: str) -> int:
    """An argparse type: a whole number >= 1, or an error naming the text."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be at least 1")
    return value


def non_negative_seconds(text: str) -> float:
    """argparse type for durations such as ``--grace`` and ``--timeout``: a finite
    duration >= 0 ("5", "5s", "500ms")."""
    try:
        value = parse_seconds(text, "duration")
    except ConfigError:
        value = -1.0
    if value < 0:
        raise argparse.ArgumentTypeError(
            f"{text!r} must be a finite number of seconds >= 0, e.g. 5, 5s or 500ms"
        )
    return value


def add_backend_arguments(parser: argparse.ArgumentParser, *, ttl: bool = False) -> None:
    """Adds ``--backend``, ``--config``, ``--election`` (and ``--ttl``)."""
    parser.add_argument(
        "--backend",
        metavar="URL",
        help="store URL, e.g. etcd://127.0.0.1:2379 or sqlite:///tmp/t.db "
        "(default: $TENURE_BACKEND, then tenure.toml, then the embedded SQLite store)",
    )
    parser.add_argument("--config", metavar="FILE", help="config file (default ./tenure.toml)")
    parser.add_argument(
        "--election", required=True, type=election_name, metavar="NAME",
        help="election name: 1-200 characters of A-Z a-z 0-9 . _ - /",
    )
    if ttl:
        parser.add_argument(
            "--ttl", type=ttl_seconds, metavar="SECONDS",
            help="session TTL, e.g. 10, 10s or 500ms (default 10, or the URL's ?ttl=)",
        )


# -- connecting -------------------------------------------------------------------------


def connect(args: argparse.Namespace, *, read_only: bool = False) -> tenure.Client:
    """Connects as the parsed arguments say (ConfigError for bad configuration).

    ``read_only``: the command only reads, so a SQLite store that does not exist is
    refused (StoreUnavailable, "no tenure store at PATH") instead of created."""
    if read_only:
        settings = load_settings(args.backend, config_file=args.config)
        require_existing_stores(settings.url)
    hold_warnings()
    return tenure.connect(args.backend, ttl=getattr(args, "ttl", None), config_file=args.config)


def require_existing_stores(url: BackendURL) -> None:
    """StoreUnavailable unless every SQLite store ``url`` names exists (also the source
    and target of a ``migrate+`` URL); other backends are not checked here."""
    if url.scheme == "sqlite":
        from tenure.adapters.sqlite import require_existing

        require_existing(url)
    elif url.scheme.startswith("migrate+"):
        for key in ("source", "target"):
            nested = url.options.get(key)
            if nested:
                require_existing_stores(parse_backend_url(nested)[0])


def probe(election: tenure.Election) -> LeaderInfo | None:
    """One read of ``election``'s leader, which raises StoreUnavailable if the store
    cannot be reached; commands that would otherwise retry an unreachable store for
    ever (``run``, ``observe``) call it first, so that a wrong address fails at once.
    Releases the warnings held since connecting (see :func:`hold_warnings`)."""
    info = election.leader()
    release_warnings()
    return info


# -- output -----------------------------------------------------------------------------


def describe_leader(info: LeaderInfo | None, client: tenure.Client, as_json: bool) -> str:
    """One line for a leader (or none), as text or JSON."""
    if as_json:
        record: dict[str, object] = {"leader": None if info is None else info.as_dict()}
        record["backend"] = redacted(client.backend)
        record["partition_safe"] = client.store.limits.partition_safe
        if client.store.limits.warning:
            record["warning"] = client.store.limits.warning
        return json.dumps(record, sort_keys=True)
    if info is None:
        return "no leader"
    value = info.value.decode("utf-8", "replace")
    return f"leader {info.candidate_id} token {info.token}" + (f" value {value}" if value else "")


def redacted(text: str) -> str:
    """``text`` with every password of a URL, and each password this process was given
    (command line, $TENURE_BACKEND, config file), replaced by ``***``."""
    return redact(text, _secrets)


def fail(command: str, message: str, code: int = EXIT_UNAVAILABLE) -> int:
    """Prints ``tenure COMMAND: error: MESSAGE`` (redacted, one line) to stderr and
    returns ``code``."""
    discard_warnings()
    line = " ".join(redacted(message).split())
    print(f"{_prefix(command)}: error: {line}", file=sys.stderr, flush=True)
    return code


def interrupted(command: str, signum: int = signal.SIGINT, detail: str = "") -> int:
    """Prints ``tenure COMMAND: interrupted`` (or ``stopped by SIGTERM``) and returns the
    shell's status for that signal, 128 + ``signum``."""
    discard_warnings()
    what = "interrupted" if signum == signal.SIGINT else f"stopped by {signal.Signals(signum).name}"
    print(f"{_prefix(command)}: {what}{detail}", file=sys.stderr, flush=True)
    return 128 + signum


def _prefix(command: str) -> str:
    return f"tenure {command}" if command else "tenure"


def report_error(command: str, exc: TenureError) -> int:
    """The one error line and exit status for a TenureError that reached the top:
    2 for bad input, 1 otherwise (the store cannot be reached or refused)."""
    return fail(command, str(exc), EXIT_USAGE if isinstance(exc, INPUT_ERRORS) else
                EXIT_UNAVAILABLE)


# -- secrets ----------------------------------------------------------------------------


def collect_secrets(argv: Iterable[str], environ: Mapping[str, str]) -> None:
    """Remembers the passwords in ``argv``, $TENURE_BACKEND and the config file's
    backend URLs, for :func:`redacted` (also where a message shows them outside a URL)."""
    found: list[str] = []
    for text in [*argv, environ.get("TENURE_BACKEND", "")]:
        found += url_secrets(text)
    argv = list(argv)
    config = environ.get("TENURE_CONFIG")
    if "--config" in argv[:-1]:
        config = argv[argv.index("--config") + 1]
    try:
        table, _ = load_config_file(config)
    except ConfigError:
        table = {}
    values = [table.get("backend")]
    migration = table.get("migration")
    if isinstance(migration, dict):
        values += list(migration.values())
    for value in values:
        if isinstance(value, str):
            found += url_secrets(value)
    global _secrets
    _secrets = tuple(sorted(set(found), key=len, reverse=True))


# -- logging ----------------------------------------------------------------------------


class _Handler(logging.StreamHandler):  # type: ignore[type-arg]
    """stderr lines ``tenure: warning: ...``, redacted; tenure's records from WARNING on,
    other libraries' (kazoo, grpc...) from ERROR on, unless $TENURE_LOG_LEVEL says. Can
    hold records below ERROR until the store has answered (see :func:`hold_warnings`)."""

    def __init__(self, stream: TextIO, level: int | None) -> None:
        super().__init__(stream)
        self.level_override = level
        self.held: list[logging.LogRecord] | None = None
        self.setFormatter(logging.Formatter("tenure: %(levelname)s: %(message)s"))

    def filter(self, record: logging.LogRecord) -> bool:
        ours = record.name == "tenure" or record.name.startswith("tenure.")
        floor = self.level_override or (logging.WARNING if ours else logging.ERROR)
        if record.levelno < floor:
            return False
        record.levelname = record.levelname.lower()
        record.msg = redacted(record.getMessage())
        record.args = None
        if record.exc_info:
            record.exc_text = redacted(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True

    def emit(self, record: logging.LogRecord) -> None:
        if self.held is not None and record.levelno < logging.ERROR:
            self.held.append(record)
        else:
            super().emit(record)


_handler: _Handler | None = None


def configure_logging() -> None:
    """Sends log records to stderr (see :class:`_Handler`). The library itself only has a
    NullHandler; the command line is an application, so it decides what is shown."""
    global _handler
    level_name = os.environ.get("TENURE_LOG_LEVEL", "").upper()
    level = logging.getLevelName(level_name) if level_name else None
    _handler = _Handler(sys.stderr, level if isinstance(level, int) else None)
    root = logging.getLogger()
    root.addHandler(_handler)
    root.setLevel(min(_handler.level_override or logging.WARNING, logging.WARNING))


def hold_warnings() -> None:
    """Holds warnings until the store has answered: if it never does, the command's one
    error line says why, and the warnings of the failed attempt (a single-instance
    Redis is not partition-safe, ...) are dropped."""
    if _handler is not None and _handler.held is None:
        _handler.held = []


def release_warnings() -> None:
    """Prints the held warnings and stops holding."""
    if _handler is not None and _handler.held is not None:
        held, _handler.held = _handler.held, None
        for record in held:
            _handler.emit(record)


def discard_warnings() -> None:
    """Drops the held warnings and stops holding."""
    if _handler is not None:
        _handler.held = None

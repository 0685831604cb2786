"""Arguments and helpers shared by the subcommands."""

from __future__ import annotations

import argparse
import json
import sys

import tenure
from tenure.config import parse_ttl
from tenure.errors import ConfigError, InvalidNameError, InvalidValueError
from tenure.names import check_election_name
from tenure.store import LeaderInfo

EXIT_UNAVAILABLE = 1
EXIT_NO_LEADER = 3


def election_name(text: str) -> str:
    """argparse type for ``--election``: a valid election name."""
    try:
        return check_election_name(text)
    except InvalidNameError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def ttl_seconds(text: str) -> float:
    """argparse type for ``--ttl``: a positive number of seconds."""
    try:
        return parse_ttl(text, "--ttl")
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def non_negative_seconds(text: str) -> float:
    """argparse type for durations such as ``--grace`` and ``--timeout``."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} must be a finite number of seconds >= 0")
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
        help="election name: 1-200 chars of [A-Za-z0-9._-/]",
    )
    if ttl:
        parser.add_argument(
            "--ttl", type=ttl_seconds, metavar="SECONDS",
            help="session TTL in seconds (default 10, or the URL's ?ttl=)",
        )


def connect(args: argparse.Namespace) -> tenure.Client:
    """Connects as the parsed arguments say (ConfigError for bad configuration)."""
    return tenure.connect(args.backend, ttl=getattr(args, "ttl", None), config_file=args.config)


def describe_leader(info: LeaderInfo | None, client: tenure.Client, as_json: bool) -> str:
    """One line for a leader (or none), as text or JSON."""
    if as_json:
        record: dict[str, object] = {"leader": None if info is None else info.as_dict()}
        record["backend"] = client.backend
        record["partition_safe"] = client.store.limits.partition_safe
        if client.store.limits.warning:
            record["warning"] = client.store.limits.warning
        return json.dumps(record, sort_keys=True)
    if info is None:
        return "no leader"
    value = info.value.decode("utf-8", "replace")
    return f"leader {info.candidate_id} token {info.token}" + (f" value {value}" if value else "")


def fail(command: str, message: str, code: int = EXIT_UNAVAILABLE) -> int:
    """Prints ``tenure COMMAND: error: MESSAGE`` to stderr and returns ``code``."""
    print(f"tenure {command}: error: {message}", file=sys.stderr)
    return code


INPUT_ERRORS = (ConfigError, InvalidNameError, InvalidValueError)

"""Validation of election names, candidate ids and values, and the default candidate id.

Rules (the same on every backend):

* election name: 1-200 characters of ``[A-Za-z0-9._-]`` and ``/``; no empty path
  segment (so no leading, trailing or doubled ``/``) and no ``..`` segment;
* candidate id: 1-200 printable ASCII characters without whitespace;
* value: ``bytes`` (``str`` is encoded as UTF-8), at most ``max_value_bytes`` (4 KiB by
  default).
"""

from __future__ import annotations

import os
import re
import secrets
import socket

from tenure.errors import InvalidNameError, InvalidValueError

MAX_NAME_LENGTH = 200
DEFAULT_MAX_VALUE_BYTES = 4096
_NAME_CHARS = re.compile(r"[A-Za-z0-9._/-]")
_ID_CHARS = re.compile(r"[!-~]")


def check_election_name(name: object, what: str = "election name") -> str:
    """Returns ``name`` if it is a valid election name, else raises InvalidNameError.

    ``what`` names the input in messages (e.g. "guarded-write key", which follows the
    same rules)."""
    if not isinstance(name, str):
        raise InvalidNameError(
            f"{what} must be a str, got {type(name).__name__}: {name!r}"
        )
    if not name:
        raise InvalidNameError(f"{what} is empty; use 1-200 characters of [A-Za-z0-9._-/]")
    if len(name) > MAX_NAME_LENGTH:
        raise InvalidNameError(
            f"{what} is {len(name)} characters long; the limit is {MAX_NAME_LENGTH}"
        )
    for position, char in enumerate(name):
        if not _NAME_CHARS.fullmatch(char):
            raise InvalidNameError(
                f"{what} {name!r} has the invalid character {char!r} at position "
                f"{position}; use only letters, digits, '.', '_', '-' and '/'"
            )
    for segment in name.split("/"):
        if segment == "":
            raise InvalidNameError(
                f"{what} {name!r} has an empty path segment; remove the leading, "
                "trailing or doubled '/'"
            )
        if segment == "..":
            raise InvalidNameError(
                f"{what} {name!r} has a '..' segment; '..' is not allowed in names"
            )
    return name


def check_candidate_id(candidate_id: object) -> str:
    """Returns ``candidate_id`` if valid, else raises InvalidValueError."""
    if not isinstance(candidate_id, str):
        raise InvalidValueError(
            f"candidate id must be a str, got {type(candidate_id).__name__}: {candidate_id!r}"
        )
    if not 1 <= len(candidate_id) <= MAX_NAME_LENGTH:
        raise InvalidValueError(
            f"candidate id {candidate_id!r} must be 1-{MAX_NAME_LENGTH} characters long"
        )
    for position, char in enumerate(candidate_id):
        if not _ID_CHARS.fullmatch(char):
            raise InvalidValueError(
                f"candidate id {candidate_id!r} has the invalid character {char!r} at position "
                f"{position}; use printable ASCII without spaces"
            )
    return candidate_id


def check_value(value: object, max_bytes: int = DEFAULT_MAX_VALUE_BYTES) -> bytes:
    """Returns ``value`` as bytes (str is UTF-8 encoded) or raises InvalidValueError."""
    if isinstance(value, str):
        value = value.encode()
    if not isinstance(value, bytes):
        raise InvalidValueError(
            f"candidate value must be bytes or str, got {type(value).__name__}"
        )
    if len(value) > max_bytes:
        raise InvalidValueError(
            f"candidate value is {len(value)} bytes; the limit is {max_bytes} bytes "
            "(store a reference, e.g. an address or key, instead of the payload)"
        )
    return value


def default_candidate_id() -> str:
    """``host:pid:random``: unique per process and per client."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"

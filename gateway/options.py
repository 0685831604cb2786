"""Backend URL options, read the same way by every adapter.

    opts = Options("etcd", url, {"prefix": "key prefix (default /tenure)", ...})
    prefix = opts.text("prefix", "/tenure")
    timeout = opts.duration("timeout", 5.0, low=0, high=300)
    password = opts.secret("password", env="TENURE_ETCD_PASSWORD")

Creating an :class:`Options` rejects unknown options at once, with the list of known
ones; every reader names the backend, the option and the fix. ``ttl`` and ``drift``
are the core's and never reach an adapter.

Secrets follow ONE rule on every backend: a secret may come from the URL's userinfo,
from ``<name>_file=PATH`` (the file's content, trailing newline removed), or from an
environment variable -- from exactly one of them. Given in two places, it is a
ConfigError naming both, rather than a silent precedence the operator has to guess.
A ``<name>=`` option holding the secret itself is refused (it would show in URLs,
process lists and logs).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

from tenure.config import BackendURL, parse_duration_option
from tenure.errors import ConfigError

CORE_OPTIONS = ("ttl", "drift")


class Options:
    """The adapter-specific options of one backend URL, validated as they are read."""

    def __init__(self, backend: str, url: BackendURL, known: Mapping[str, str]) -> None:
        self.backend = backend
        self.url = url
        self.known = dict(known)
        self.values = dict(url.options)
        unknown = sorted(set(self.values) - set(self.known))
        for name in unknown:
            if f"{name}_file" in self.known:
                raise ConfigError(
                    f"the {backend} backend takes no {name!r} option (it would show in URLs "
                    f"and logs); give it in a file named by {name}_file=PATH instead"
                )
        if unknown:
            listed = ", ".join([*CORE_OPTIONS, *self.known])
            raise ConfigError(
                f"unknown option(s) {', '.join(unknown)} for the {backend} backend; "
                f"known: {listed}"
            )

    def given(self, name: str) -> bool:
        """True if the URL (or tenure.toml ``[options]``) sets ``name``."""
        return name in self.values

    def text(self, name: str, default: str) -> str:
        """The option's text, or ``default``."""
        return self.values.get(name, default)

    def optional(self, name: str) -> str | None:
        """The option's text, or None when not given."""
        return self.values.get(name)

    def duration(
        self, name: str, default: float, *, low: float, high: float, allow_zero: bool = False
    ) -> float:
        """Seconds ("2", "2s", "0.5", "500ms") within [low, high] (low excluded unless
        ``allow_zero``), or ``default``."""
        text = self.values.get(name)
        if text is None:
            return default
        return parse_duration_option(self.backend, name, text, low, high,
                                     allow_zero=allow_zero)

    def integer(self, name: str, default: int, *, low: int, high: int) -> int:
        """A whole number within [low, high], or ``default``."""
        text = self.values.get(name)
        if text is None:
            return default
        if not re.fullmatch(r"\s*-?[0-9]+\s*", text) or not low <= int(text) <= high:
            raise ConfigError(
                f"{self.backend} option {name}={text!r} must be a whole number from {low} "
                f"to {high}"
            )
        return int(text)

    def boolean(self, name: str, default: bool) -> bool:
        """true/false, yes/no, on/off or 1/0, or ``default``."""
        text = self.values.get(name)
        if text is None:
            return default
        lowered = text.strip().lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{self.backend} option {name}={text!r} must be true or false")

    def choice(self, name: str, default: str, choices: tuple[str, ...]) -> str:
        """One of ``choices``, or ``default``."""
        text = self.values.get(name, default)
        if text not in choices:
            raise ConfigError(
                f"{self.backend} option {name}={text!r} must be one of {', '.join(choices)}"
            )
        return text

    def pem(self, name: str) -> bytes | None:
        """The content of the PEM file the option names, or None when not given."""
        path = self.values.get(name)
        if path is None:
            return None
        what = self.known.get(name, "a PEM file")
        try:
            data = Path(path).expanduser().read_bytes()
        except OSError as exc:
            raise ConfigError(
                f"{self.backend} option {name}={path!r} cannot be read ({exc.strerror}); "
                f"give the path of a PEM file ({what})"
            ) from None
        if b"-----BEGIN" not in data:
            raise ConfigError(f"{self.backend} option {name}={path!r} is not a PEM file ({what})")
        return data

    def pem_pair(self, cert: str, key: str) -> tuple[bytes | None, bytes | None]:
        """A client certificate and its key: both or neither."""
        cert_data, key_data = self.pem(cert), self.pem(key)
        if (cert_data is None) != (key_data is None):
            given, missing = (cert, key) if key_data is None else (key, cert)
            raise ConfigError(
                f"{self.backend} option {given}= needs {missing}= too: a client certificate "
                "and its private key go together"
            )
        return cert_data, key_data

    def user(self, option: str = "user") -> str | None:
        """The user name, from the URL's userinfo or ``user=``; given twice differently,
        or empty, is a ConfigError."""
        given = self.values.get(option)
        in_url = self.url.username
        if given is not None and in_url is not None and given != in_url:
            raise ConfigError(
                f"{self.backend} user given twice ({in_url!r} in the URL, {given!r} as "
                f"{option}=); give it once"
            )
        user = given if given is not None else in_url
        if user == "":
            raise ConfigError(
                f"{self.backend} option {option}= is empty; give a user name or leave it out"
            )
        return user

    def secret(self, name: str, *, env: str | None, in_url: bool = True) -> str | None:
        """The secret ``name`` from exactly one place: the URL's userinfo password (if
        ``in_url``), ``<name>_file=``, or ``$env``. None when none gives it."""
        sources: list[tuple[str, str]] = []
        if in_url and self.url.password is not None:
            sources.append(("the URL", self.url.password))
        file_option = f"{name}_file"
        path = self.values.get(file_option)
        if path is not None:
            sources.append((f"{file_option}={path}", self._read_secret_file(file_option, path)))
        if env is not None and os.environ.get(env):
            sources.append((f"${env}", os.environ[env]))
        if len(sources) > 1:
            raise ConfigError(
                f"the {self.backend} {name} is given in two places ({sources[0][0]} and "
                f"{sources[1][0]}); give it in one place only"
            )
        return sources[0][1] if sources else None

    def _read_secret_file(self, option: str, path: str) -> str:
        try:
            return Path(path).expanduser().read_text().rstrip("\r\n")
        except (OSError, UnicodeDecodeError) as exc:
            detail = getattr(exc, "strerror", None) or exc.__class__.__name__
            raise ConfigError(
                f"{self.backend} option {option}={path!r} cannot be read ({detail}); check "
                "the path and its permissions"
            ) from None

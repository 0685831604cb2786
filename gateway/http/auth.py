"""Who may talk to the gateway, and keeping store credentials out of everything it says.

    policy = ListenPolicy.parse("0.0.0.0:7480")
    policy.require_token_for_remote(tokens)      # ConfigError if remote and no token
    redactor = Redactor.for_url(backend_url)     # redactor("...p4ss...") -> "...***..."

Rules: listening on a loopback address (127.0.0.0/8, ::1, ``localhost``) or a unix
socket needs no token; any other address needs at least one bearer token, read from a
file or the environment (never argv, which ``/proc/*/cmdline`` shows to every user).
When tokens are configured, every request except ``/healthz`` must carry
``Authorization: Bearer TOKEN``; a leadership handle is bound to the token (and, on a
unix socket, to the peer uid) it was created with, so one caller cannot use another's
handle even if it learns it. Tokens are compared in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from tenure.errors import ConfigError

TOKEN_ENV = "TENURE_GATEWAY_TOKEN"
DEFAULT_PORT = 7480


@dataclass(frozen=True)
class ListenPolicy:
    """Where the gateway listens: ``host``/``port``, or a unix socket ``path``."""

    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    path: str | None = None

    @classmethod
    def parse(cls, listen: str | None = None, unix: str | None = None) -> ListenPolicy:
        """From ``--listen HOST:PORT`` (``[v6]:PORT``) or ``--unix PATH``; ConfigError
        naming the option when malformed."""
        if unix is not None:
            if listen is not None:
                raise ConfigError("give either --listen or --unix, not both")
            if not unix or "\0" in unix:
                raise ConfigError(f"--unix {unix!r} is not a usable socket path")
            return cls(path=unix)
        text = listen or f"127.0.0.1:{DEFAULT_PORT}"
        host, sep, port_text = text.rpartition(":")
        if not sep or not host:
            raise ConfigError(
                f"--listen {text!r} must be HOST:PORT, e.g. 127.0.0.1:7480 or [::1]:7480"
            )
        host = host.removeprefix("[").removesuffix("]")
        try:
            port = int(port_text)
        except ValueError:
            raise ConfigError(f"--listen {text!r}: port {port_text!r} is not a number") from None
        if not 0 <= port <= 65535:
            raise ConfigError(f"--listen {text!r}: port {port} is outside 0-65535")
        return cls(host=host, port=port)

    @property
    def loopback(self) -> bool:
        """True for a unix socket or a loopback address (127.0.0.0/8, ::1, localhost)."""
        if self.path is not None or self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False  # a host name: it may resolve anywhere

    def describe(self) -> str:
        """``unix:PATH`` or ``HOST:PORT``."""
        if self.path is not None:
            return f"unix:{self.path}"
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    def require_token_for_remote(self, tokens: tuple[str, ...]) -> None:
        """Raises ConfigError when listening off-loopback without a bearer token."""
        if not self.loopback and not tokens:
            raise ConfigError(
                f"listening on {self.describe()} (not loopback) needs a bearer token: give "
                f"--token-file FILE or set {TOKEN_ENV}; add --tls-cert/--tls-key for TLS"
            )


def load_tokens(token_file: str | None) -> tuple[str, ...]:
    """Bearer tokens: one per non-empty line of ``token_file``, else ``$TENURE_GATEWAY_TOKEN``
    (comma-separated). ConfigError if the file cannot be read or a token is too short."""
    if token_file is not None:
        try:
            text = Path(token_file).read_text()
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(
                f"--token-file {token_file!r} cannot be read ({exc.__class__.__name__}); "
                "check the path and permissions"
            ) from None
        tokens = [line.strip() for line in text.splitlines()]
        source = f"--token-file {token_file!r}"
    else:
        tokens = [t.strip() for t in os.environ.get(TOKEN_ENV, "").split(",")]
        source = TOKEN_ENV
    tokens = [t for t in tokens if t and not t.startswith("#")]
    if token_file is not None and not tokens:
        raise ConfigError(f"{source} holds no token; write one token per line")
    for token in tokens:
        if len(token) < 16 or any(c.isspace() or not c.isprintable() for c in token):
            raise ConfigError(
                f"a token in {source} is shorter than 16 characters or has spaces; use e.g. "
                "python -c 'import secrets; print(secrets.token_urlsafe(32))'"
            )
    return tuple(tokens)


class TokenCheck:
    """Checks ``Authorization`` headers against the configured tokens.

        check = TokenCheck(("s3cret-token-1234",))
        check.identify("Bearer s3cret-token-1234")   # -> a stable caller id, or None
    """

    def __init__(self, tokens: tuple[str, ...]) -> None:
        self._tokens = [(t.encode(), _fingerprint(t)) for t in tokens]

    @property
    def enabled(self) -> bool:
        """True when tokens are configured (every request must carry one)."""
        return bool(self._tokens)

    def identify(self, header: str | None) -> str | None:
        """The caller identity (a hash of its token) or None if the header is wrong."""
        if not header or not header.startswith("Bearer "):
            return None
        offered = header[len("Bearer "):].strip().encode()
        found = None
        for token, fingerprint in self._tokens:
            if hmac.compare_digest(offered, token):
                found = fingerprint
        return found


def _fingerprint(secret: str) -> str:
    return "token:" + hashlib.sha256(secret.encode()).hexdigest()[:16]


class Redactor:
    """Replaces every secret (password, user:password, tokens) in a text by ``***``.

        redact = Redactor.for_url("redis://:pw@h:6379")
        redact("cannot reach redis://:pw@h:6379")   # "cannot reach redis://:***@h:6379"
    """

    def __init__(self, secrets: tuple[str, ...] = ()) -> None:
        self.secrets = tuple(sorted({s for s in secrets if s}, key=len, reverse=True))

    @classmethod
    def for_url(cls, url: str | None, extra: tuple[str, ...] = ()) -> Redactor:
        """A redactor for the password of ``url`` (raw and percent-decoded) and ``extra``."""
        found: list[str] = list(extra)
        if url:
            try:
                parts = urlsplit(url)
                netloc = parts.netloc
            except ValueError:
                netloc = url.split("://", 1)[-1].split("/", 1)[0]
            if "@" in netloc:
                userinfo = netloc.rpartition("@")[0]
                if ":" in userinfo:
                    password = userinfo.split(":", 1)[1]
                    found += [password, unquote(password)]
        return cls(tuple(found))

    def __call__(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, "***")
        return text

    def install_log_filter(self, logger: logging.Logger | None = None) -> None:
        """Redacts every record that reaches ``logger``'s handlers (root by default)."""
        target = logger or logging.getLogger()
        for handler in target.handlers:
            handler.addFilter(_RedactingFilter(self))


class _RedactingFilter(logging.Filter):
    def __init__(self, redact: Redactor) -> None:
        super().__init__()
        self._redact = redact

    def filter(self, record: logging.LogRecord) -> bool:
        if self._redact.secrets:
            message = record.getMessage()
            record.msg = self._redact(message)
            record.args = None
            if record.exc_info:
                record.exc_text = self._redact(logging.Formatter().formatException(
                    record.exc_info))
                record.exc_info = None
        return True

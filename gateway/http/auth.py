"""Who may talk to the gateway, and keeping store credentials out of everything it says.

    policy = ListenPolicy.parse("0.0.0.0:7480")
    policy.require_token_for_remote(tokens)      # ConfigError if remote and no token
    redactor = Redactor.for_url(backend_url)     # redactor("...p4ss...") -> "...***..."
    sites = SiteCheck(hosts=(parse_allowed_host("leader.example.com"),))
    sites.host_problem("evil.example:7480", ("127.0.0.1", 7480), tls=False)  # a message

Rules: listening on a loopback address (127.0.0.0/8, ::1, ``localhost``) or a unix
socket needs no token; any other address needs at least one bearer token, read from a
file or the environment (never argv, which ``/proc/*/cmdline`` shows to every user).
When tokens are configured, every request except ``/healthz`` must carry
``Authorization: Bearer TOKEN``; a leadership handle is bound to the token (and, on a
unix socket, to the peer uid) it was created with, so one caller cannot use another's
handle even if it learns it. Tokens are compared in constant time.

Web pages are kept out (:class:`SiteCheck`): a browser lets any page send a "simple"
cross-site POST to a loopback port, and a DNS-rebinding name (evil.example resolving to
127.0.0.1) even lets it read the answer. So a request must name this gateway in
``Host`` (the address it arrived on, its loopback spellings, or an ``--allowed-host``),
must not come from a foreign ``Origin`` (unless ``--allowed-origin``), and a body must
be ``application/json``, which no page can send cross-site without a CORS preflight.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import os
import re
from dataclasses import dataclass, field
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


LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
HOST_ANSWERS = 256
_UNKNOWN = "\0unknown"
_LABEL = r"[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?"
_HOST_NAME = re.compile(rf"^{_LABEL}(\.{_LABEL})*$")


def split_host(text: str) -> tuple[str, int | None] | None:
    """``Host``-header syntax -> (lower-case host without brackets, port or None);
    None when malformed (empty, bad port, an unbracketed IPv6 address, a bad name)."""
    text = text.strip().lower()
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep:
            return None
        try:
            if ipaddress.ip_address(host).version != 6:
                return None
        except ValueError:
            return None
        if not rest:
            return host, None
        if not rest.startswith(":"):
            return None
        port_text = rest[1:]
    else:
        host, sep, port_text = text.partition(":")
        if not sep:
            port_text = ""
        if ":" in port_text:
            return None  # an IPv6 address must be bracketed
        if not (_is_ipv4(host) or _HOST_NAME.fullmatch(host)):
            return None
        if not sep:
            return host, None
    if not port_text.isdigit() or not 0 < int(port_text) <= 65535:
        return None
    return host, int(port_text)


def _is_ipv4(text: str) -> bool:
    try:
        return ipaddress.ip_address(text).version == 4
    except ValueError:
        return False


def _join_host(host: str, port: int | None) -> str:
    shown = f"[{host}]" if ":" in host else host
    return shown if port is None else f"{shown}:{port}"


def parse_allowed_host(text: str) -> str:
    """An ``--allowed-host`` value: ``NAME`` (any port) or ``NAME:PORT``, normalised to
    lower case; ConfigError naming the option otherwise."""
    parsed = split_host(text)
    if parsed is None or "/" in text or "*" in text:
        raise ConfigError(
            f"--allowed-host {text!r} is not a host name as clients send it in 'Host'; give "
            "e.g. leader.example.com (any port) or leader.example.com:8443"
        )
    return _join_host(*parsed)


def parse_allowed_origin(text: str) -> str:
    """An ``--allowed-origin`` value: ``http(s)://HOST[:PORT]`` (what browsers send in
    ``Origin``), normalised; ConfigError naming the option otherwise."""
    origin = normalise_origin(text.strip().removesuffix("/"))
    if origin is None:
        raise ConfigError(
            f"--allowed-origin {text!r} is not an origin; give the scheme, host and port a "
            "browser sends in 'Origin', e.g. https://dashboard.example.com or "
            "http://localhost:3000 (no path, no '*')"
        )
    return origin


def normalise_origin(text: str) -> str | None:
    """``scheme://host[:port]`` in lower case without the scheme's default port, or None
    when ``text`` is not such an origin (``null``, a path, credentials, another scheme)."""
    try:
        parts = urlsplit(text)
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or parts.path or parts.query or parts.fragment:
        return None
    if "@" in parts.netloc:
        return None
    parsed = split_host(parts.netloc)
    if parsed is None:
        return None
    host, port = parsed
    if port == (443 if parts.scheme == "https" else 80):
        port = None
    return f"{parts.scheme}://{_join_host(host, port)}"


@dataclass(frozen=True)
class SiteCheck:
    """Which ``Host`` and ``Origin`` headers name this gateway (DNS-rebinding and
    cross-site protection; see the module docstring).

    A ``Host`` is accepted when it is the address the connection arrived on
    (``127.0.0.1:7480``), a loopback spelling of it when that address is loopback
    (``localhost:7480``, ``[::1]:7480``; no port only if it is the scheme's default), or
    one of ``hosts`` (``NAME`` matches any port, ``NAME:PORT`` only that one). An
    ``Origin`` is accepted when it is the gateway's own (``scheme://`` + the accepted
    Host) or one of ``origins``; ``Origin: null`` never is. It promises nothing about
    clients that are not browsers: those are what the bearer token is for.
    """

    hosts: tuple[str, ...] = ()
    origins: tuple[str, ...] = ()
    _answers: dict[tuple[str | None, tuple[str, int], bool], str | None] = field(
        default_factory=dict, compare=False, repr=False)

    def host_problem(self, header: str | None, local: tuple[str, int], tls: bool) -> str | None:
        """None if ``header`` (the request's Host) names this gateway, reached at
        ``local`` (the socket's own address); else the message for the refusal.
        Remembers its last ``HOST_ANSWERS`` answers (the same few Host headers arrive on
        every request; parsing one costs more than the rest of a leader query)."""
        key = (header, local, tls)
        answer = self._answers.get(key, _UNKNOWN)
        if answer is _UNKNOWN:
            answer = self._host_problem(header, local, tls)
            if len(self._answers) >= HOST_ANSWERS:
                self._answers.clear()
            self._answers[key] = answer
        return answer

    def _host_problem(self, header: str | None, local: tuple[str, int],
                      tls: bool) -> str | None:
        if header is None:
            return "the request has no 'Host' header; send HTTP/1.1 with 'Host: HOST:PORT'"
        parsed = split_host(header)
        if parsed is not None:
            host, port = parsed
            local_host, local_port = local[0].lower(), local[1]
            port_ok = port == local_port or (port is None and local_port == (443 if tls else 80))
            if port_ok and (host == local_host or (_loopback(local_host) and (
                    host in LOOPBACK_NAMES or _loopback(host)))):
                return None
            if host in self.hosts or _join_host(host, port) in self.hosts:
                return None
        return (
            f"'Host: {header[:100]}' does not name this gateway (a web page reaching it "
            "through a DNS-rebinding name looks like this); use the address it listens on, "
            "or start it with --allowed-host NAME for a name clients or a proxy use"
        )

    def origin_allowed(self, origin: str, host: str, tls: bool) -> bool:
        """Whether a request with ``Origin: origin`` and the accepted ``Host: host`` may
        proceed: its own origin, or a configured one."""
        normal = normalise_origin(origin)
        if normal is None:
            return False
        own = normalise_origin(f"{'https' if tls else 'http'}://{host}")
        return normal == own or normal in self.origins

    def cross_origin(self, origin: str) -> bool:
        """True when ``origin`` is one of the configured ``--allowed-origin`` values
        (its answers carry CORS headers)."""
        return normalise_origin(origin) in self.origins


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False

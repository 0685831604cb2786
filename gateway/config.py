"""Backend URLs, ``tenure.toml`` and ``TENURE_*`` environment variables.

Which store serves an election is configuration, never code. The backend URL is found,
first match wins, in: the ``url`` argument (``--backend``), ``TENURE_BACKEND``, the
``backend`` key of the config file (``config_file`` argument, else ``TENURE_CONFIG``,
else ``./tenure.toml`` if present), else the embedded default
``sqlite:///$XDG_STATE_HOME/tenure/default.db``.

URL forms: ``scheme://[user[:password]@]host[:port][,host[:port]...][/path][?k=v&...]``
for etcd, zookeeper, consul and redis; ``sqlite:///absolute/path.db`` or
``sqlite://relative/path.db`` for SQLite; ``migrate+<stage>://?source=..&target=..`` for
a live migration (:mod:`tenure.migration`; in the config file a ``[migration]`` table
with ``source``, ``target`` and ``stage`` stands for it). Query options ``ttl`` and ``drift`` are
understood by every backend; the others belong to the adapter, which rejects any it
does not know.
"""

from __future__ import annotations

import math
import os
import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from tenure.errors import ConfigError
from tenure.names import DEFAULT_MAX_VALUE_BYTES, check_candidate_id

DEFAULT_TTL = 10.0
DEFAULT_DRIFT = 0.01
MAX_DRIFT = 0.5
DEFAULT_PORTS = {"etcd": 2379, "zookeeper": 2181, "consul": 8500, "redis": 6379, "rediss": 6379,
                 "postgresql": 5432, "postgres": 5432}
CONFIG_KEYS = frozenset({"backend", "ttl", "drift", "candidate_id", "max_value_bytes", "options",
                         "migration"})


@dataclass(frozen=True)
class BackendURL:
    """A parsed backend URL. ``options`` holds the query, minus ``ttl`` and ``drift``."""

    scheme: str
    hosts: tuple[tuple[str, int], ...]
    path: str
    options: dict[str, str] = field(default_factory=dict)
    username: str | None = None
    password: str | None = field(default=None, repr=False)

    @property
    def redacted(self) -> str:
        """The URL with any password replaced by ``***``, for messages and logs. Backend
        URLs nested in the query (``migrate+<stage>://?source=..``) are shown decoded,
        with their passwords replaced too."""
        auth = ""
        if self.username is not None:
            auth = self.username + (":***" if self.password is not None else "") + "@"
        hosts = ",".join(_format_host(host, port) for host, port in self.hosts)
        query = "&".join(f"{k}={redact_url(v)}" for k, v in self.options.items())
        return f"{self.scheme}://{auth}{hosts}{self.path}" + (f"?{query}" if query else "")

    @property
    def secrets(self) -> tuple[str, ...]:
        """The passwords this URL holds, its own and those of backend URLs nested in its
        query, for redacting texts that may quote them (see :func:`redact`)."""
        found = [self.password] if self.password else []
        for value in self.options.values():
            found += url_secrets(value)
        return tuple(found)


@dataclass(frozen=True)
class Settings:
    """Everything needed to connect: the backend, session TTL and drift allowance."""

    url: BackendURL
    ttl: float = DEFAULT_TTL
    drift: float = DEFAULT_DRIFT
    candidate_id: str | None = None
    max_value_bytes: int = DEFAULT_MAX_VALUE_BYTES


_USERINFO = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*://[^\s/?#@:'\"]*):((?:(?!://)[^\s?#'\"])*)@")
_ENCODED_USERINFO = re.compile(
    r"(?i)(%3A%2F%2F[^\s&#'\"@:/?%]*%3A)((?:(?!%3A%2F%2F)[^\s&#'\"])*)(%40)"
)


def redact(text: str, secrets: tuple[str, ...] = ()) -> str:
    """``text`` with every ``scheme://user:password@`` password (also percent-encoded,
    as in a ``migrate+`` query) and each of ``secrets`` replaced by ``***``.

    Meant for messages and logs that may quote a backend URL. It cannot know a secret
    that appears in no URL form and is not in ``secrets``."""
    for secret in sorted({s for s in secrets if s}, key=len, reverse=True):
        text = text.replace(secret, "***")
    text = _USERINFO.sub(r"\1:***@", text)
    return _ENCODED_USERINFO.sub(r"\1***\3", text)


def redact_url(url: str) -> str:
    """One backend URL (well formed or not, with or without a scheme) with the password
    of its userinfo replaced by ``***``; nested URLs in its query are redacted too."""
    head, sep, rest = url.partition("://")
    if not sep:
        head, rest = "", url
    end = min((i for i in (rest.find("?"), rest.find("#")) if i >= 0), default=len(rest))
    authority, tail = rest[:end], rest[end:]
    userinfo, at, hostpart = authority.rpartition("@")
    if at and ":" in userinfo:
        authority = userinfo.split(":", 1)[0] + ":***@" + hostpart
    if tail:
        tail = "".join(
            redact_url(unquote(piece)) if "%40" in piece.upper() or "@" in piece else piece
            for piece in re.split(r"([?&#=])", tail)
        )
    return redact(head + sep + authority + tail)


def url_secrets(url: str) -> list[str]:
    """The passwords in ``url``'s userinfo and in URLs nested in its query, as written
    and percent-decoded; [] when there are none or ``url`` is not a URL."""
    if not isinstance(url, str):
        return []
    _, sep, rest = url.partition("://")
    rest = rest if sep else url
    end = min((i for i in (rest.find("?"), rest.find("#")) if i >= 0), default=len(rest))
    userinfo, at, _ = rest[:end].rpartition("@")
    found: list[str] = []
    if at and ":" in userinfo:
        password = userinfo.split(":", 1)[1]
        found += [password, unquote(password)]
    for _key, value in parse_qsl(rest[end + 1:].split("#", 1)[0], keep_blank_values=True):
        if "@" in value:
            found += url_secrets(value)
    return [secret for secret in found if secret]


def _shown(url: str) -> str:
    """``url`` quoted for an error message, its passwords replaced by ``***``."""
    return repr(redact_url(url))


def _format_host(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def default_backend_url() -> str:
    """The embedded default store, under the user's state directory."""
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return f"sqlite://{Path(state) / 'tenure' / 'default.db'}"


def parse_backend_url(url: str) -> tuple[BackendURL, dict[str, str]]:
    """Parses ``url``; returns it and the core options (``ttl``, ``drift``) found in it.

    Raises ConfigError naming the problem and the expected form.
    """
    if not isinstance(url, str) or not url.strip():
        raise ConfigError(
            "backend URL is empty; give one like etcd://127.0.0.1:2379 or sqlite:///path/to.db"
        )
    if "://" not in url:
        raise ConfigError(
            f"backend URL {_shown(url)} has no scheme; write it as SCHEME://HOST:PORT, e.g. "
            "etcd://127.0.0.1:2379, zookeeper://..., consul://..., redis://..., sqlite:///path.db"
        )
    try:
        parts = urlsplit(url)
    except ValueError as exc:  # e.g. "Invalid IPv6 URL" for an unbalanced '['
        raise ConfigError(
            f"backend URL {_shown(url)} cannot be parsed ({exc}); write it as "
            "SCHEME://HOST:PORT[,HOST:PORT...], with IPv6 hosts as [ADDRESS]:PORT"
        ) from None
    scheme = parts.scheme.lower()
    if parts.fragment:
        raise ConfigError(f"backend URL {_shown(url)} has a '#' fragment; remove it")
    options: dict[str, str] = {}
    try:
        pairs = parse_qsl(parts.query, keep_blank_values=True, strict_parsing=bool(parts.query))
    except ValueError as exc:
        raise ConfigError(
            f"backend URL {_shown(url)} has a malformed query: {redact(str(exc))}; write it "
            "as ?key=value&key=value"
        ) from None
    for key, value in pairs:
        if key in options:
            raise ConfigError(f"backend URL option {key!r} is given twice; give it once")
        options[key] = value
    core: dict[str, str] = {k: options.pop(k) for k in ("ttl", "drift") if k in options}
    if scheme == "sqlite":
        path = parts.netloc + parts.path
        if not path or path.endswith("/"):
            raise ConfigError(
                f"backend URL {_shown(url)} names no database file; use sqlite:///absolute/path.db"
            )
        return BackendURL(scheme, (), unquote(path), options), core
    if scheme.startswith("migrate+"):  # two backend URLs in the query (tenure.migration)
        return BackendURL(scheme, (), parts.path, options), core
    if scheme == "kubernetes":  # kubernetes://[NAMESPACE]: the server is in the kubeconfig
        if parts.path.strip("/") or "@" in parts.netloc:
            raise ConfigError(
                f"backend URL {_shown(url)}: a kubernetes URL names only a namespace, "
                "as kubernetes://NAMESPACE?kubeconfig=PATH&context=NAME")
        return BackendURL(scheme, (), unquote(parts.netloc), options), core
    netloc = parts.netloc
    username = password = None
    if "@" in netloc:
        auth, netloc = netloc.rsplit("@", 1)
        user, _, secret = auth.partition(":")
        username = unquote(user)
        password = unquote(secret) if ":" in auth else None
    hosts = tuple(_parse_host(item, scheme, url) for item in netloc.split(",")) if netloc else ()
    if not hosts:
        raise ConfigError(f"backend URL {_shown(url)} names no host; add HOST:PORT after '://'")
    return BackendURL(scheme, hosts, parts.path, options, username, password), core


def _parse_host(item: str, scheme: str, url: str) -> tuple[str, int]:
    if item.startswith("["):
        host, sep, rest = item[1:].partition("]")
        if not sep:
            raise ConfigError(f"backend URL {_shown(url)}: unclosed '[' in host {item!r}")
        port_text = rest[1:] if rest.startswith(":") else ""
    else:
        host, _, port_text = item.partition(":")
    if not host:
        raise ConfigError(
            f"backend URL {_shown(url)} has an empty host in {item!r}; write HOST:PORT"
        )
    if not port_text:
        default = DEFAULT_PORTS.get(scheme)
        if default is None:
            raise ConfigError(
                f"backend URL {_shown(url)}: host {item!r} needs a port, as HOST:PORT"
            )
        return host, default
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ConfigError(
            f"backend URL {_shown(url)} has the invalid port {port_text!r} in {item!r}; "
            "use a number from 1 to 65535"
        )
    return host, int(port_text)


def parse_seconds(value: object, source: str, *, text: bool = True) -> float:
    """A duration in seconds: a number, or (when ``text``) a string such as "10", "10s",
    "1.5" or "500ms". Not checked for range. ConfigError naming ``source`` for anything
    else -- a boolean (``ttl = true``), a string where only numbers are allowed, NaN."""
    if isinstance(value, bool):
        raise ConfigError(f"{source} is {value!r}, a boolean; give a number of seconds, e.g. 10")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and text:
        match = re.fullmatch(
            r"\s*([+-]?[0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*(ms|s)?\s*", value
        )
        if match is None:
            raise ConfigError(
                f"{source} {value!r} is not a number of seconds; give e.g. 10, 10s or 500ms"
            )
        seconds = float(match.group(1)) / (1000 if match.group(2) == "ms" else 1)
    else:
        kind = "number or a duration string" if text else "number (int or float)"
        raise ConfigError(
            f"{source} must be a {kind} of seconds, not {type(value).__name__} {value!r}; "
            "e.g. 10"
        )
    if not math.isfinite(seconds):
        raise ConfigError(f"{source} {value!r} must be a finite number of seconds, e.g. 10")
    return seconds


def parse_ttl(value: object, source: str, *, text: bool = True) -> float:
    """A positive, finite TTL in seconds (see :func:`parse_seconds` for the forms), or
    ConfigError naming ``source``."""
    ttl = parse_seconds(value, source, text=text)
    if ttl <= 0:
        raise ConfigError(f"{source} {value!r} must be a positive number of seconds, e.g. 10")
    return ttl


def parse_duration_option(
    backend: str, name: str, text: str, low: float, high: float, *, allow_zero: bool = False
) -> float:
    """A backend URL option given in seconds ("2", "2s", "0.5", "500ms"), within
    [``low``, ``high``] (``low`` excluded unless ``allow_zero``); else a ConfigError
    naming the backend, the option and the range."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*(ms|s)?\s*", text)
    if match is None:
        raise ConfigError(
            f"{backend} option {name}={text!r} is not a duration; give seconds, e.g. "
            f"{name}=2 or {name}=500ms"
        )
    value = float(match.group(1)) / (1000 if match.group(2) == "ms" else 1)
    too_low = value < low if allow_zero else value <= low
    if too_low or value > high:
        bounds = f"[{low:g}, {high:g}]" if allow_zero else f"({low:g}, {high:g}]"
        raise ConfigError(
            f"{backend} option {name}={text!r} is out of range; use seconds in {bounds}"
        )
    return value


def parse_drift(value: object, source: str, *, text: bool = True) -> float:
    """A clock-drift allowance in [0, 0.5), or ConfigError naming ``source``. A number,
    or (when ``text``) its decimal string; never a boolean."""
    if isinstance(value, bool) or not (
        isinstance(value, int | float) or (text and isinstance(value, str))
    ):
        raise ConfigError(
            f"{source} must be a number, not {type(value).__name__} {value!r}; e.g. 0.01 for 1 %"
        )
    try:
        drift = float(value)
    except ValueError:
        raise ConfigError(f"{source} {value!r} is not a number; e.g. 0.01 for 1 %") from None
    if not math.isfinite(drift) or not 0 <= drift < MAX_DRIFT:
        raise ConfigError(f"{source} {value!r} must be in [0, {MAX_DRIFT}); e.g. 0.01 for 1 %")
    return drift


def load_config_file(path: str | os.PathLike[str] | None = None) -> tuple[dict[str, Any], str]:
    """Reads the config file; returns its table and its path ({} and "" when none)."""
    explicit = path if path is not None else os.environ.get("TENURE_CONFIG")
    candidate = Path(explicit) if explicit else Path("tenure.toml")
    if not candidate.exists():
        if explicit:
            raise ConfigError(f"config file {str(candidate)!r} does not exist; check the path")
        return {}, ""
    try:
        table = tomllib.loads(candidate.read_text())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"config file {str(candidate)!r} cannot be read: {exc}") from None
    unknown = sorted(set(table) - CONFIG_KEYS)
    if unknown:
        raise ConfigError(
            f"config file {str(candidate)!r} has unknown key(s) {', '.join(unknown)}; "
            f"known keys are {', '.join(sorted(CONFIG_KEYS))}"
        )
    return table, str(candidate)


def load_settings(
    url: str | None = None,
    *,
    ttl: float | None = None,
    drift: float | None = None,
    candidate_id: str | None = None,
    config_file: str | os.PathLike[str] | None = None,
) -> Settings:
    """Resolves the settings from arguments, environment and config file."""
    if url is not None and not isinstance(url, str):
        raise ConfigError(
            f"the backend URL must be a str such as 'etcd://127.0.0.1:2379', not "
            f"{type(url).__name__}"
        )
    table, table_path = load_config_file(config_file)
    where = f"config file {table_path!r}" if table_path else "config"
    raw_url = url if url is not None else os.environ.get("TENURE_BACKEND") or table.get("backend")
    if raw_url is None and "migration" in table:
        raw_url = _migration_table_url(table["migration"], where)
    if raw_url is None:
        raw_url = default_backend_url()
    if not isinstance(raw_url, str):
        raise ConfigError(f"'backend' in {where} must be a URL string")
    backend, core = parse_backend_url(raw_url)
    extra = table.get("options", {})
    if not isinstance(extra, dict):
        raise ConfigError(f"'options' in {where} must be a table of backend options")
    for key, value in extra.items():
        backend.options.setdefault(str(key), str(value))
    resolved_ttl = _first_given("ttl", ttl, core, table, where, parse_ttl, DEFAULT_TTL)
    resolved_drift = _first_given("drift", drift, core, table, where, parse_drift,
                                  DEFAULT_DRIFT)
    chosen_id = candidate_id or table.get("candidate_id")
    if chosen_id is not None:
        chosen_id = check_candidate_id(chosen_id)
    max_value = table.get("max_value_bytes", DEFAULT_MAX_VALUE_BYTES)
    if not isinstance(max_value, int) or isinstance(max_value, bool) or max_value < 0:
        raise ConfigError(f"'max_value_bytes' in {where} must be a non-negative integer")
    return Settings(backend, resolved_ttl, resolved_drift, chosen_id, max_value)


def _first_given(
    name: str, argument: object, core: dict[str, str], table: dict[str, Any], where: str,
    parse: Callable[..., float], default: float,
) -> float:
    """``name`` from the argument (a number: a string is refused), else the URL's query,
    else the config file (a number or a string), else ``default``; parsed, with errors
    naming where the bad value came from."""
    if argument is not None:
        return float(parse(argument, name, text=False))
    if name in core:
        return parse(core[name], f"backend URL option {name}")
    if name in table:
        return parse(table[name], f"'{name}' in {where}")
    return default


def _migration_table_url(table: object, where: str) -> str:
    """The ``migrate+<stage>://`` URL for a ``[migration]`` table (source, target, stage)."""
    from urllib.parse import quote

    if not isinstance(table, dict) or set(table) != {"source", "target", "stage"} or not all(
        isinstance(v, str) for v in table.values()
    ):
        raise ConfigError(
            f"'migration' in {where} must be a table with exactly the strings source, target "
            "and stage, e.g. source = \"zookeeper://zk:2181\", target = \"etcd://e:2379\", "
            "stage = \"dual-source\""
        )
    return (f"migrate+{table['stage']}://?source={quote(table['source'], safe='')}"
            f"&target={quote(table['target'], safe='')}")

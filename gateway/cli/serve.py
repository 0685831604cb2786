"""``tenure serve``: the HTTP gateway sidecar (docs/http.md).

    tenure serve --backend-file /etc/tenure/backend --listen 127.0.0.1:7480
    tenure serve --unix /run/tenure.sock            # backend from $TENURE_BACKEND
    tenure serve --listen 0.0.0.0:7480 --token-file /etc/tenure/tokens \
        --tls-cert cert.pem --tls-key key.pem

Prints ``tenure serve: listening on URL`` on stdout once it serves. Refuses (exit 2) a
backend URL with a password on the command line, where ``/proc/*/cmdline`` shows it
to every user: give it with ``--backend-file`` or ``TENURE_BACKEND``. Every message it
prints or logs has the store password replaced by ``***``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import logging
import os
import signal
import ssl
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from tenure.cli.common import fail, positive_int, ttl_seconds
from tenure.errors import ConfigError, StoreUnavailable, TenureError
from tenure.http.auth import (
    ListenPolicy,
    Redactor,
    load_tokens,
    parse_allowed_host,
    parse_allowed_origin,
)

if TYPE_CHECKING:
    from aiohttp import web

    from tenure.http.app import GatewayConfig

EXIT_USAGE = 2

log = logging.getLogger("tenure.http")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "serve", help="run the HTTP gateway (campaign/leader/observe over HTTP)",
        description="Serves the election API over HTTP for programs in any language. "
        "Listens on 127.0.0.1:7480 by default; any non-loopback address needs a bearer "
        "token (--token-file or $TENURE_GATEWAY_TOKEN). See docs/http.md.",
    )
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--backend", metavar="URL",
                        help="store URL WITHOUT a password (default: $TENURE_BACKEND, then "
                        "tenure.toml, then the embedded SQLite store)")
    source.add_argument("--backend-file", metavar="FILE",
                        help="read the store URL (which may hold a password) from FILE")
    parser.add_argument("--config", metavar="FILE", help="config file (default ./tenure.toml)")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--listen", metavar="HOST:PORT",
                       help="TCP address (default 127.0.0.1:7480; port 0 picks a free one)")
    where.add_argument("--unix", metavar="PATH", help="listen on a unix socket instead")
    parser.add_argument("--token-file", metavar="FILE",
                        help="bearer tokens, one per line (else $TENURE_GATEWAY_TOKEN)")
    parser.add_argument("--tls-cert", metavar="FILE", help="TLS certificate chain (PEM)")
    parser.add_argument("--tls-key", metavar="FILE", help="TLS private key (PEM)")
    parser.add_argument("--ttl", type=ttl_seconds, metavar="SECONDS",
                        help="default session TTL and keepalive window, e.g. 10 or 10s "
                        "(default 10; at most --max-ttl)")
    parser.add_argument("--max-ttl", type=ttl_seconds, default=60.0, metavar="SECONDS",
                        help="largest TTL (keepalive window) a caller may ask for: how long "
                        "a vanished caller can keep a leadership (default 60s)")
    parser.add_argument("--max-campaigns", type=positive_int, default=256, metavar="N",
                        help="most campaigns held at once (default 256)")
    parser.add_argument("--warm-sessions", type=warm_count, default=2, metavar="N",
                        help="idle store sessions kept open per TTL in use, so that a "
                        "campaign opens no connection (default 2; 0: a fresh connection "
                        "and session per campaign). Each caller still has a session of "
                        "its own while it campaigns and leads")
    parser.add_argument("--log-format", choices=("text", "json"), default="text",
                        help="json: one JSON line per leadership change on stderr")
    parser.add_argument("--allowed-host", action="append", default=[], metavar="NAME",
                        help="also accept requests whose Host header is NAME (any port) or "
                        "NAME:PORT, e.g. the name a reverse proxy forwards; repeatable. "
                        "Other Host values are refused (421) against DNS rebinding")
    parser.add_argument("--allowed-origin", action="append", default=[], metavar="ORIGIN",
                        help="let web pages from ORIGIN (e.g. https://dash.example.com) call "
                        "the gateway (CORS); repeatable. Other origins are refused (403)")
    parser.set_defaults(handler=run, own_logging=True)


DEFAULT_TTL = 10.0
MAX_WARM = 64


def warm_count(text: str) -> int:
    """An argparse type for --warm-sessions: a whole number from 0 to 64."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if not 0 <= value <= MAX_WARM:
        raise argparse.ArgumentTypeError(f"{text!r} must be from 0 to {MAX_WARM}")
    return value


def check_ttls(args: argparse.Namespace) -> float:
    """The default TTL (--ttl, else 10 s); ConfigError naming both options if it is
    larger than --max-ttl, the largest a caller may ask for."""
    ttl: float = args.ttl if args.ttl is not None else DEFAULT_TTL
    if ttl > args.max_ttl:
        given = f"--ttl {ttl:g}" if args.ttl is not None else f"the default --ttl {ttl:g}"
        raise ConfigError(
            f"{given} is larger than --max-ttl {args.max_ttl:g}, the largest TTL a caller "
            f"may ask for; give --ttl {args.max_ttl:g} or less, or a larger --max-ttl"
        )
    return ttl


def backend_url(args: argparse.Namespace) -> str | None:
    """The backend URL from --backend-file or --backend; ConfigError (redacted) for a
    password given on the command line."""
    if args.backend_file is not None:
        try:
            text = Path(args.backend_file).read_text().strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"--backend-file {args.backend_file!r} cannot be read "
                              f"({exc.__class__.__name__}); check the path") from None
        if not text:
            raise ConfigError(f"--backend-file {args.backend_file!r} is empty")
        return text
    if args.backend is not None and Redactor.for_url(args.backend).secrets:
        raise ConfigError(
            f"--backend {Redactor.for_url(args.backend)(args.backend)} holds a password, "
            "which /proc/*/cmdline shows to every user; put the URL in a file and give "
            "--backend-file FILE, or set TENURE_BACKEND"
        )
    url: str | None = args.backend
    return url


def allowed_sites(args: argparse.Namespace,
                  policy: ListenPolicy) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The Host names (--allowed-host, plus a host NAME given to --listen) and origins
    (--allowed-origin) the gateway accepts besides its own address; ConfigError naming
    a malformed one."""
    hosts = [parse_allowed_host(name) for name in args.allowed_host]
    if policy.path is None and not policy.loopback:
        with contextlib.suppress(ConfigError):
            if not ipaddress_literal(policy.host):
                hosts.append(parse_allowed_host(policy.host))
    origins = [parse_allowed_origin(origin) for origin in args.allowed_origin]
    return tuple(hosts), tuple(origins)


def ipaddress_literal(host: str) -> bool:
    """True for an IP address (0.0.0.0 included), False for a host name."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def tls_context(args: argparse.Namespace) -> ssl.SSLContext | None:
    """A server TLS context from --tls-cert/--tls-key (both or neither)."""
    if (args.tls_cert is None) != (args.tls_key is None):
        raise ConfigError("give both --tls-cert and --tls-key, or neither")
    if args.tls_cert is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(args.tls_cert, args.tls_key)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"--tls-cert/--tls-key cannot be loaded: {exc}; give PEM files "
                          "of a certificate and its private key") from None
    return context


def run(args: argparse.Namespace) -> int:
    ttl = check_ttls(args)
    try:
        from tenure.http.app import GatewayConfig
    except ModuleNotFoundError as exc:
        return fail("serve", f"needs the Python package {exc.name!r}; install it with: "
                    "pip install 'tenure[serve]'")
    url = backend_url(args)
    raw = url if url is not None else os.environ.get("TENURE_BACKEND")
    tokens = load_tokens(args.token_file)
    redact = Redactor.for_url(raw, extra=tokens)
    policy = ListenPolicy.parse(args.listen, args.unix)
    policy.require_token_for_remote(tokens)
    hosts, origins = allowed_sites(args, policy)
    context = tls_context(args)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    redact.install_log_filter()
    if not policy.loopback and context is None:
        log.warning("serving %s without TLS: bearer tokens cross the network in clear; "
                    "add --tls-cert/--tls-key", policy.describe())
    config = GatewayConfig(
        backend_url=url, ttl=ttl, config_file=args.config, tokens=tokens,
        max_campaigns=args.max_campaigns, max_ttl=args.max_ttl,
        json_log=sys.stderr if args.log_format == "json" else None, redact=redact,
        allowed_hosts=hosts, allowed_origins=origins, warm_sessions=args.warm_sessions,
    )
    try:
        return asyncio.run(_serve(config, policy, context))
    except (ConfigError, StoreUnavailable) as exc:
        code = EXIT_USAGE if isinstance(exc, ConfigError) else 1
        return fail("serve", redact(str(exc)), code)
    except TenureError as exc:
        return fail("serve", redact(str(exc)))
    except OSError as exc:
        return fail("serve", f"cannot listen on {policy.describe()}: {exc.strerror or exc}")


async def _serve(config: GatewayConfig, policy: ListenPolicy,
                 context: ssl.SSLContext | None) -> int:
    from aiohttp import web

    from tenure.http.app import GatewayRunner, build_app

    app = build_app(config)
    runner = GatewayRunner(app, access_log=None, shutdown_timeout=2.0)
    await runner.setup()
    try:
        site: web.BaseSite
        if policy.path is not None:
            with contextlib.suppress(FileNotFoundError):
                if Path(policy.path).is_socket():
                    os.unlink(policy.path)
            site = web.UnixSite(runner, policy.path, ssl_context=context)
        else:
            site = web.TCPSite(runner, policy.host, policy.port, ssl_context=context,
                               reuse_address=True)
        await site.start()
        print(f"tenure serve: listening on {_address(site, policy, context)}", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        await stop.wait()
        log.info("tenure serve: stopping (resigning every leadership held for callers)")
    finally:
        await runner.cleanup()
    return 0


def _address(site: web.BaseSite, policy: ListenPolicy, context: ssl.SSLContext | None) -> str:
    if policy.path is not None:
        return f"unix:{policy.path}"
    server = getattr(site, "_server", None)
    port = policy.port
    if server is not None and server.sockets:
        port = server.sockets[0].getsockname()[1]
    host = f"[{policy.host}]" if ":" in policy.host else policy.host
    return f"{'https' if context else 'http'}://{host}:{port}"

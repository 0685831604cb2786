"""``tenure postgres init``: create tenure's tables in PostgreSQL ahead of time.

    tenure postgres init --backend postgresql://admin@db:5432/app?schema=tenure
    tenure postgres init --backend URL --grant app_user   # and let app_user use them
    tenure postgres init --backend URL --print-sql        # only print the SQL, for a DBA

The first campaign creates the tables by itself when its user may; this is for users
without DDL rights: run it once as one who has them (it is idempotent and never drops
or resets anything, so fencing tokens keep rising), grant the application's user the
use of the tables, and give the application the same URL with its own user.
"""

from __future__ import annotations

import argparse

from tenure.config import load_settings
from tenure.errors import ConfigError


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "postgres", help="PostgreSQL backend tools (create the tables ahead of time)",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="postgres_command", metavar="ACTION", required=True)
    init = sub.add_parser("init", help="create tenure's schema and tables (idempotent)")
    init.add_argument("--backend", metavar="URL",
                      help="postgresql:// URL of a user who may create the schema "
                      "(default: $TENURE_BACKEND, then tenure.toml)")
    init.add_argument("--config", metavar="FILE", help="config file (default ./tenure.toml)")
    init.add_argument("--grant", action="append", default=[], metavar="ROLE",
                      help="also grant ROLE the use of the tables (repeatable)")
    init.add_argument("--print-sql", action="store_true",
                      help="print the SQL instead of running it")
    init.set_defaults(handler=run_init)


def run_init(args: argparse.Namespace) -> int:
    from tenure.adapters.postgres import PostgresStore
    from tenure.adapters.postgres_client import SCHEMA_VERSION, Statements, parse_url

    url = load_settings(args.backend, config_file=args.config).url
    if url.scheme not in ("postgresql", "postgres"):
        raise ConfigError(f"tenure postgres init needs a postgresql:// backend URL, not "
                          f"{url.scheme}://")
    config = parse_url(url)
    if args.print_sql:
        statements = Statements.for_schema(config.schema)
        print(statements.create.as_string(None).strip())
        for role in args.grant:
            print(statements.grant(role).as_string(None).strip())
        return 0
    store = PostgresStore(config)
    try:
        version = store.init_schema()
        for role in args.grant:
            store.grant(role)
    finally:
        store.close()
    granted = f"; {', '.join(args.grant)} may use it" if args.grant else ""
    print(f"schema {config.schema!r} at {config.description} is ready (tenure schema "
          f"version {version}, this tenure knows {SCHEMA_VERSION}){granted}")
    return 0

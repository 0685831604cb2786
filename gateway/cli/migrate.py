"""``tenure migrate status|advance``: watch and gate a live migration between stores.

    tenure migrate status  --from zookeeper://zk:2181 --to etcd://e:2379 --election jobs
    tenure migrate advance --from zookeeper://zk:2181 --to etcd://e:2379 --election jobs \\
        dual-target

``status`` prints the stage each live candidate publishes, the leader on each store,
the epoch marker (source) and token offset (target), and for each stage whether it is
safe to roll out now. ``advance STAGE`` records nothing: it checks that rolling out
STAGE is safe (every live candidate on a stage adjacent to it; no going back below
dual-target once the epoch is recorded; target only once an offset is recorded) and
prints the URL to roll out, or exits 1 naming each candidate in the way. See
docs/migration.md for the runbook.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from tenure.adapters import open_store
from tenure.cli.common import EXIT_STATUS_HELP, election_name, fail, require_existing_stores
from tenure.config import parse_backend_url
from tenure.errors import StoreUnavailable
from tenure.migration import STAGES, MigrationStatus, migration_status
from tenure.store import LeaderInfo, Store

EXIT_UNSAFE = 1


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "migrate", help="status of a live migration between two stores; gate each stage",
        description="Live migration of an election between stores (docs/migration.md).",
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    for name, text in (("status", "show candidates' stages, leaders, epoch and offset"),
                       ("advance", "check that rolling out STAGE is safe now")):
        sub = actions.add_parser(
            name, help=text, description=text + ". Only reads both stores: a SQLite store "
            "that does not exist is an error, not created.",
            epilog=EXIT_STATUS_HELP + ("; for advance, 1 also when the stage is not safe yet"
                                       if name == "advance" else ""),
        )
        sub.add_argument("--from", dest="source", required=True, metavar="URL",
                         help="the source store's backend URL")
        sub.add_argument("--to", dest="target", required=True, metavar="URL",
                         help="the target store's backend URL")
        sub.add_argument("--election", required=True, type=election_name, metavar="NAME",
                         help="the election being migrated")
        sub.add_argument("--json", action="store_true", help="print one JSON object")
        if name == "advance":
            sub.add_argument("stage", choices=STAGES, help="the stage to roll out next")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    stores: list[Store[Any]] = []
    try:
        urls = [parse_backend_url(url)[0] for url in (args.source, args.target)]
        for url in urls:  # only reads: a missing SQLite store is refused, not created
            require_existing_stores(url)
        for url in urls:
            stores.append(open_store(url))
        status = migration_status(stores[0], stores[1], args.election)
    except StoreUnavailable as exc:
        return fail(f"migrate {args.action}", f"store unavailable: {exc}")
    finally:
        for store in stores:
            store.close()
    if args.action == "status":
        print(json.dumps(status.as_dict(), indent=2) if args.json else render(status))
        return 0
    problems = status.problems(args.stage)
    if args.json:
        print(json.dumps({"stage": args.stage, "safe": not problems, "problems": problems}))
    elif problems:
        print(f"NOT safe to roll out {args.stage} for {args.election!r}:", file=sys.stderr)
        for problem in problems:
            print(f"  - {problem}", file=sys.stderr)
    else:
        print(f"safe to roll out {args.stage} for {args.election!r}: restart the candidates "
              f"one at a time with backend migrate+{args.stage}://?source=..&target=.. "
              "(or stage = \"" + args.stage + "\" in [migration]); run status between restarts")
    return EXIT_UNSAFE if problems else 0


def render(status: MigrationStatus) -> str:
    """The human-readable status."""
    lines = [f"election {status.election!r}",
             f"  source: {status.source}", f"  target: {status.target}",
             f"candidates ({len(status.candidates)}):"]
    lines += [f"  {cid:<40} {stage}" for cid, stage in sorted(status.candidates.items())]
    lines += [f"leader in source: {_leader(status.source_leader)}",
              f"leader in target: {_leader(status.target_leader)}"
              + ("" if status.offset is None or status.target_leader is None else
                 f" (token in force {status.target_leader.token + status.offset})"),
              f"epoch marker (source): {status.epoch or 'none'}",
              f"token offset (target): {'none' if status.offset is None else status.offset}",
              "safe to roll out:"]
    for stage in STAGES:
        problems = status.problems(stage)
        lines.append(f"  {stage:<12} {'yes' if not problems else 'no: ' + '; '.join(problems)}")
    return "\n".join(lines)


def _leader(info: LeaderInfo | None) -> str:
    return "none" if info is None else f"{info.candidate_id} (store token {info.token})"

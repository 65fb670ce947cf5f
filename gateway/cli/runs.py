"""`parallel-gateway runs ...`: arguments in, reports out; the work is in keys/ownership.py."""

from __future__ import annotations

import argparse
import dataclasses
import sys

import orjson

from ..config import Settings
from ..keys.ownership import grant, list_access
from ..storage.open import run_with_storage
from .tables import print_table


def add_run_commands(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    common: argparse.ArgumentParser,
) -> None:
    runs = commands.add_parser("runs", parents=[common], help="run ownership (isolation)")
    run_commands = runs.add_subparsers(dest="runs_command", required=True, metavar="COMMAND")
    grant_cmd = run_commands.add_parser(
        "grant", parents=[common], help="let an app read a run or task group it did not create"
    )
    grant_cmd.add_argument(
        "run_id", metavar="RUN_ID", help="a run, task group, FindAll run or monitor id"
    )
    grant_cmd.add_argument("app", metavar="APP", help="the app's name")
    grant_cmd.set_defaults(run=cmd_runs_grant)
    listing = run_commands.add_parser(
        "list", parents=[common], help="list which app may read which run, and how"
    )
    listing.add_argument("--app", metavar="NAME", help="only this app's runs")
    listing.add_argument("--json", action="store_true", help="one JSON object per line")
    listing.set_defaults(run=cmd_runs_list)
    revoke = run_commands.add_parser(
        "revoke", parents=[common], help="remove an app's grant, or its record as creator"
    )
    revoke.add_argument("run_id", metavar="RUN_ID", help="the id granted or created")
    revoke.add_argument("app", metavar="APP", help="the app's name")
    revoke.set_defaults(run=cmd_runs_revoke)


def cmd_runs_grant(args: argparse.Namespace, settings: Settings) -> int:
    added = run_with_storage(
        settings.storage, lambda s: grant(s.run_access, s.app_keys, args.run_id, args.app)
    )
    state = "may now read" if added else "could already read"
    print(f"App {args.app!r} {state} {args.run_id}.", file=sys.stderr)
    return 0


def cmd_runs_list(args: argparse.Namespace, settings: Settings) -> int:
    records = run_with_storage(
        settings.storage, lambda s: list_access(s.run_access, s.app_keys, args.app)
    )
    if args.json:
        for record in records:
            print(orjson.dumps(dataclasses.asdict(record)).decode())
        return 0
    print_table([("ID", "APP", "HOW", "AT"), *((r.id, r.app, r.how, r.at) for r in records)])
    return 0


def cmd_runs_revoke(args: argparse.Namespace, settings: Settings) -> int:
    how = run_with_storage(settings.storage, lambda s: s.run_access.revoke(args.run_id, args.app))
    if how is None:
        print(f"App {args.app!r} had no record of {args.run_id}: nothing removed.", file=sys.stderr)
    else:
        record = "grant" if how == "granted" else "record as the creator"
        print(
            f"App {args.app!r} may no longer read {args.run_id}: its {record} was removed.",
            file=sys.stderr,
        )
    return 0

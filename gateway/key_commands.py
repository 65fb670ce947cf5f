"""`parallel-gateway keys ...`: arguments in, reports out; the work is in keys."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from datetime import UTC, datetime

import orjson

from .config import Settings
from .db import Database, run_with_database
from .keys import (
    AppKeyError,
    create_key,
    list_keys,
    parse_expiry,
    parse_limit,
    revoke_key,
    set_expiry,
    set_limit,
    set_max_open,
)
from .ratelimit import Limit
from .store import now_rfc3339


def add_key_commands(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    common: argparse.ArgumentParser,
) -> None:
    keys = commands.add_parser("keys", parents=[common], help="manage app keys")
    key_commands = keys.add_subparsers(dest="keys_command", required=True, metavar="COMMAND")
    create = key_commands.add_parser(
        "create", parents=[common], help="create a key for an app and print it"
    )
    create.add_argument("name", help="the app's unique name")
    create.add_argument(
        "--allow",
        action="append",
        metavar="'METHOD /path'",
        help="limit the key to this route (repeatable; * is one path segment, a final ** the "
        "rest); without --allow the key may use every route",
    )
    _add_limit_options(create)
    create.set_defaults(run=cmd_keys_create)
    update = key_commands.add_parser(
        "update", parents=[common], help="change an app's rate limit or expiry"
    )
    update.add_argument("name", help="the app whose key to change")
    _add_limit_options(update)
    update.add_argument("--no-rate", action="store_true", help="remove the rate limit")
    update.add_argument("--no-expiry", action="store_true", help="make the key never expire")
    update.add_argument("--no-max-open", action="store_true", help="remove the open-call cap")
    update.set_defaults(run=cmd_keys_update)
    listing = key_commands.add_parser("list", parents=[common], help="list app keys")
    listing.add_argument("--json", action="store_true", help="one JSON object per line")
    listing.set_defaults(run=cmd_keys_list)
    revoke = key_commands.add_parser("revoke", parents=[common], help="revoke an app's key")
    revoke.add_argument("name", help="the app whose key to revoke")
    revoke.set_defaults(run=cmd_keys_revoke)


def _add_limit_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--rate", type=float, metavar="R", help="rate limit: requests per second, hits included"
    )
    parser.add_argument(
        "--burst",
        type=int,
        metavar="B",
        help="requests allowed at once before --rate applies (default: the rate, at least 1)",
    )
    parser.add_argument(
        "--expires", metavar="DURATION", help="the key stops working after this: 90m, 12h, 30d, 8w"
    )
    parser.add_argument(
        "--max-open",
        type=int,
        metavar="N",
        help="at most N of the app's calls open at once (long polls and streams included); "
        "past it, 429",
    )


def _limit_and_expiry(args: argparse.Namespace) -> tuple[Limit | None, datetime | None]:
    """What --rate/--burst and --expires ask for (None where not given)."""
    expires_at = parse_expiry(args.expires, datetime.now(UTC)) if args.expires else None
    return parse_limit(args.rate, args.burst), expires_at


def cmd_keys_create(args: argparse.Namespace, settings: Settings) -> int:
    limit, expires_at = _limit_and_expiry(args)
    print(
        run_with_database(
            settings.storage,
            lambda db: create_key(db, args.name, args.allow, limit, expires_at, args.max_open),
        )
    )
    return 0


def cmd_keys_update(args: argparse.Namespace, settings: Settings) -> int:
    if args.no_rate and args.rate is not None:
        raise AppKeyError("Give --rate or --no-rate, not both.")
    if args.no_expiry and args.expires:
        raise AppKeyError("Give --expires or --no-expiry, not both.")
    if args.no_max_open and args.max_open is not None:
        raise AppKeyError("Give --max-open or --no-max-open, not both.")
    limit, expires_at = _limit_and_expiry(args)
    max_open_given = args.max_open is not None or args.no_max_open
    changes = (limit, expires_at) != (None, None) or args.no_rate or args.no_expiry
    if not changes and not max_open_given:
        raise AppKeyError(
            "Nothing to change: give --rate, --no-rate, --expires, --no-expiry, --max-open "
            "or --no-max-open."
        )

    async def update(db: Database) -> None:
        if limit is not None or args.no_rate:
            await set_limit(db, args.name, limit)
        if expires_at is not None or args.no_expiry:
            await set_expiry(db, args.name, expires_at)
        if max_open_given:
            await set_max_open(db, args.name, args.max_open)

    run_with_database(settings.storage, update)
    print(f"Updated the key of app {args.name!r}.", file=sys.stderr)
    return 0


def cmd_keys_list(args: argparse.Namespace, settings: Settings) -> int:
    keys = run_with_database(settings.storage, list_keys)
    now = now_rfc3339()
    if args.json:
        for key in keys:
            print(orjson.dumps({**dataclasses.asdict(key), "status": key.status(now)}).decode())
        return 0
    rows = [
        ("NAME", "PREFIX", "CREATED", "LAST USED", "STATUS", "EXPIRES", "RATE", "MAX OPEN", "ALLOW")
    ]
    rows += [
        (
            k.name,
            k.prefix,
            k.created_at,
            k.last_used_at or "never",
            k.status(now),
            k.expires_at or "never",
            "none" if k.rate is None else f"{k.rate:g}/s burst {k.burst}",
            "none" if k.max_open is None else str(k.max_open),
            "all routes" if k.allow is None else ", ".join(k.allow),
        )
        for k in keys
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )
    return 0


def cmd_keys_revoke(args: argparse.Namespace, settings: Settings) -> int:
    run_with_database(settings.storage, lambda db: revoke_key(db, args.name))
    print(f"Revoked the key of app {args.name!r}.", file=sys.stderr)
    return 0

"""`parallel-gateway keys ...`: arguments in, reports out; the work is in keys/app_keys.py."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from datetime import UTC, datetime

import orjson

from ..billing.budgets import spend_of
from ..billing.periods import PERIODS, period_start
from ..billing.prices import price_table
from ..config import Settings
from ..keys.app_keys import (
    AppKeyError,
    KeyUpdate,
    create_key,
    delete_app,
    parse_budget,
    parse_expiry,
    parse_grace,
    parse_limit,
    revoke_key,
    rotate_key,
    update_key,
)
from ..keys.ratelimit import Limit
from ..storage.open import run_with_storage
from ..storage.protocols import Storage
from ..storage.types import KEEP, AppKey, ReplayMode
from ..timestamps import now_rfc3339, rfc3339
from .tables import print_table

ALLOW_HELP = "limit the key to this route (repeatable; * is one path segment, a final ** the rest)"
REPLAY_MODES = [mode.value for mode in ReplayMode]
REPLAY_HELP = (
    "what the app's creates do with recordings: off (upstream), record (upstream, recorded), "
    "replay (a finished recording answers, a miss goes upstream and is recorded), replay-only "
    "(a miss is a 503)"
)


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
        help=ALLOW_HELP + "; without --allow the key may use every route",
    )
    _add_limit_options(create)
    create.add_argument(
        "--replay", choices=REPLAY_MODES, default="off", help=REPLAY_HELP + " (default: off)"
    )
    create.set_defaults(run=cmd_keys_create)
    update = key_commands.add_parser(
        "update",
        parents=[common],
        help="change an app's allowlist, rate limit, expiry, open-call cap, replay mode or budget",
    )
    update.add_argument("name", help="the app whose key to change")
    update.add_argument(
        "--allow",
        action="append",
        metavar="'METHOD /path'",
        help=ALLOW_HELP + "; replaces the key's rules",
    )
    update.add_argument("--no-allow", action="store_true", help="remove the allowlist: every route")
    _add_limit_options(update)
    update.add_argument("--no-rate", action="store_true", help="remove the rate limit")
    update.add_argument("--no-expiry", action="store_true", help="make the key never expire")
    update.add_argument("--no-max-open", action="store_true", help="remove the open-call cap")
    update.add_argument("--replay", choices=REPLAY_MODES, help=REPLAY_HELP)
    update.add_argument("--no-budget", action="store_true", help="remove the budget")
    update.set_defaults(run=cmd_keys_update)
    listing = key_commands.add_parser("list", parents=[common], help="list app keys")
    listing.add_argument("--json", action="store_true", help="one JSON object per line")
    listing.set_defaults(run=cmd_keys_list)
    rotate = key_commands.add_parser(
        "rotate", parents=[common], help="give an app a new key and print it"
    )
    rotate.add_argument("name", help="the app to give a new key")
    rotate.add_argument(
        "--grace",
        metavar="DURATION",
        default="0",
        help="how long the old key keeps working: 0 (the default: it stops at once), 90m, "
        "12h, 30d, 8w",
    )
    rotate.set_defaults(run=cmd_keys_rotate)
    revoke = key_commands.add_parser(
        "revoke", parents=[common], help="revoke an app's key (and any key it replaced)"
    )
    revoke.add_argument("name", help="the app whose key to revoke")
    revoke.set_defaults(run=cmd_keys_revoke)
    delete = key_commands.add_parser(
        "delete",
        parents=[common],
        help="remove a revoked app, its keys and run records, freeing its name",
    )
    delete.add_argument("name", help="the revoked app to remove")
    delete.add_argument("--yes", action="store_true", help="confirm: this cannot be undone")
    delete.set_defaults(run=cmd_keys_delete)


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
    parser.add_argument(
        "--budget",
        type=float,
        metavar="USD",
        help="cap the app's estimated spend per --per period; a billable call past it gets 402",
    )
    parser.add_argument("--per", choices=PERIODS, help="the budget's UTC period")


def _limit_and_expiry(args: argparse.Namespace) -> tuple[Limit | None, datetime | None]:
    """What --rate/--burst and --expires ask for (None where not given)."""
    expires_at = parse_expiry(args.expires, datetime.now(UTC)) if args.expires else None
    return parse_limit(args.rate, args.burst), expires_at


def cmd_keys_create(args: argparse.Namespace, settings: Settings) -> int:
    limit, expires_at = _limit_and_expiry(args)
    budget = parse_budget(args.budget, args.per)
    print(
        run_with_storage(
            settings.storage,
            lambda s: create_key(
                s.app_keys,
                args.name,
                args.allow,
                limit,
                expires_at,
                args.max_open,
                ReplayMode(args.replay),
                budget,
            ),
        )
    )
    return 0


def cmd_keys_update(args: argparse.Namespace, settings: Settings) -> int:
    pairs = (
        (args.allow, args.no_allow, "--allow", "--no-allow"),
        (args.rate, args.no_rate, "--rate", "--no-rate"),
        (args.expires, args.no_expiry, "--expires", "--no-expiry"),
        (args.max_open, args.no_max_open, "--max-open", "--no-max-open"),
        (args.budget, args.no_budget, "--budget", "--no-budget"),
    )
    for value, removed, give, remove in pairs:
        if removed and value is not None:
            raise AppKeyError(f"Give {give} or {remove}, not both.")
    limit, expires_at = _limit_and_expiry(args)
    budget = parse_budget(args.budget, args.per)
    update = KeyUpdate(
        allow=None if args.no_allow else args.allow or KEEP,
        limit=None if args.no_rate else limit or KEEP,
        expires_at=None if args.no_expiry else expires_at or KEEP,
        max_open=None if args.no_max_open else KEEP if args.max_open is None else args.max_open,
        replay=KEEP if args.replay is None else ReplayMode(args.replay),
        budget=None if args.no_budget else budget or KEEP,
    )
    if update == KeyUpdate():
        raise AppKeyError(
            "Nothing to change: give --allow, --no-allow, --rate, --no-rate, --expires, "
            "--no-expiry, --max-open, --no-max-open, --replay, --budget or --no-budget."
        )
    run_with_storage(settings.storage, lambda s: update_key(s.app_keys, args.name, update))
    print(f"Updated the key of app {args.name!r}.", file=sys.stderr)
    return 0


def cmd_keys_rotate(args: argparse.Namespace, settings: Settings) -> int:
    grace = parse_grace(args.grace)
    now = datetime.now(UTC)
    key = run_with_storage(
        settings.storage, lambda s: rotate_key(s.app_keys, args.name, grace, now)
    )
    print(key)
    until = "no longer works" if not grace else f"works until {rfc3339(now + grace)}"
    print(f"New key for app {args.name!r}; the old key {until}.", file=sys.stderr)
    return 0


def cmd_keys_delete(args: argparse.Namespace, settings: Settings) -> int:
    if not args.yes:
        raise AppKeyError(
            f"Deleting app {args.name!r} removes its keys and its run records for good; "
            "give --yes to do it."
        )
    deleted = run_with_storage(settings.storage, lambda s: delete_app(s.app_keys, args.name))
    print(
        f"Deleted app {args.name!r} ({_count(deleted.keys, 'key')}, "
        f"{_count(deleted.runs, 'run record')}); the name is free.",
        file=sys.stderr,
    )
    return 0


def _count(n: int, thing: str) -> str:
    return f"{n} {thing}{'' if n == 1 else 's'}"


def cmd_keys_list(args: argparse.Namespace, settings: Settings) -> int:
    prices = price_table(settings.prices)
    today = datetime.now(UTC).date()

    async def keys_and_spend(s: Storage) -> list[tuple[AppKey, float | None]]:
        """Each app, and its estimated spend in its budget's current period (None: no budget)."""
        listed = []
        for key in await s.app_keys.list_apps():
            spent = None
            if key.budget_usd is not None and key.budget_per is not None:
                first = period_start(key.budget_per, today).isoformat()
                counts = await s.billing_calls.counts(first, today.isoformat(), key.name)
                spent = round(spend_of(counts, prices), 6)
            listed.append((key, spent))
        return listed

    keys = run_with_storage(settings.storage, keys_and_spend)
    now = now_rfc3339()
    if args.json:
        for key, spent in keys:
            row = {**dataclasses.asdict(key), "status": key.status(now), "spent_usd": spent}
            print(orjson.dumps(row).decode())
        return 0
    rows = [
        (
            "NAME",
            "PREFIX",
            "CREATED",
            "LAST USED",
            "STATUS",
            "EXPIRES",
            "RATE",
            "MAX OPEN",
            "REPLAY",
            "BUDGET (EST. USD)",
            "ALLOW",
        )
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
            k.replay.value,
            "none" if spent is None else f"{spent:.4f} of {k.budget_usd:g}/{k.budget_per}",
            "all routes" if k.allow is None else ", ".join(k.allow),
        )
        for k, spent in keys
    ]
    print_table(rows)
    return 0


def cmd_keys_revoke(args: argparse.Namespace, settings: Settings) -> int:
    run_with_storage(settings.storage, lambda s: revoke_key(s.app_keys, args.name))
    print(f"Revoked the key of app {args.name!r}.", file=sys.stderr)
    return 0

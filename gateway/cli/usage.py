"""`parallel-gateway usage`: arguments in, the report out; the sums are in billing/report.py."""

from __future__ import annotations

import argparse
import csv
import dataclasses
import sys
from datetime import UTC, datetime

import orjson

from ..billing.prices import price_table
from ..billing.report import BY, PeriodError, UsageRow, day_of, first_day, total_row, usage_rows
from ..config import Settings
from ..storage.open import run_with_storage
from .tables import print_table

COLUMNS = {"day": "DAY", "app": "APP", "kind": "KIND", "processor": "PROCESSOR"}
SHOWN = {
    None: ("app", "kind", "processor"),
    "day": ("day", "app", "kind", "processor"),
    "app": ("app",),
    "processor": ("kind", "processor"),
}
FIGURES = ("CALLS", "EST. USD", "SAVED CALLS", "SAVED USD")


def add_usage_command(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    common: argparse.ArgumentParser,
) -> None:
    usage = commands.add_parser(
        "usage",
        parents=[common],
        help="billable calls per app, their estimated cost, and the calls the cache saved",
    )
    usage.add_argument(
        "--since",
        metavar="WHEN",
        default="30d",
        help="first UTC day: YYYY-MM-DD, or the last N days or weeks (30d, 4w; default 30d)",
    )
    usage.add_argument("--until", metavar="DATE", help="last UTC day, YYYY-MM-DD (default today)")
    usage.add_argument("--app", metavar="NAME", help="only this app's calls")
    usage.add_argument("--by", choices=BY, help="one row per day, per app, or per processor")
    output = usage.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true", help="a JSON list of rows")
    output.add_argument("--csv", action="store_true", help="CSV with a header line")
    usage.set_defaults(run=cmd_usage)


def cmd_usage(args: argparse.Namespace, settings: Settings) -> int:
    today = datetime.now(UTC).date()
    try:
        until = today if args.until is None else day_of(args.until)
        since = first_day(args.since, today)
    except PeriodError as e:
        args.usage.error(str(e))
    first, last = since.isoformat(), until.isoformat()
    counts = run_with_storage(
        settings.storage, lambda s: s.billing_calls.counts(first, last, args.app)
    )
    rows = usage_rows(counts, price_table(settings.prices), args.by)
    if args.json:
        print(orjson.dumps([dataclasses.asdict(r) for r in rows]).decode())
    elif args.csv:
        names = [f.name for f in dataclasses.fields(UsageRow)]
        writer = csv.DictWriter(sys.stdout, names, lineterminator="\n")
        writer.writeheader()
        writer.writerows(dataclasses.asdict(r) for r in rows)
    else:
        print(f"UTC days {first} to {last}; costs are estimates from [prices], not the bill.")
        shown = SHOWN[args.by]
        total = total_row(rows)
        print_table(
            [
                (*(COLUMNS[c] for c in shown), *FIGURES),
                *(_cells(r, shown) for r in rows),
                ("TOTAL", *("" for _ in shown[1:]), *_cells(total, ())),
            ]
        )
        if total.unpriced_calls:
            print(f"{total.unpriced_calls} calls have no price in [prices]: not in EST. USD.")
    return 0


def _cells(row: UsageRow, shown: tuple[str, ...]) -> tuple[str, ...]:
    labels = tuple(getattr(row, column) or "-" for column in shown)
    return (
        *labels,
        str(row.calls),
        _usd(row.estimated_usd),
        str(row.saved_calls),
        _usd(row.saved_usd),
    )


def _usd(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"

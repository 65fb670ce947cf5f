"""`parallel-gateway storage copy`: arguments in, a report out; the work is in storage/copy.py."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import sys
from typing import Any

from tqdm import tqdm

from ..config import Settings, StorageSettings
from ..storage.copy import Copied, copy_storage
from ..storage.location import is_postgres_url, redacted
from ..storage.open import open_storage
from ..storage.types import StorageError
from .tables import print_table


def add_storage_commands(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    common: argparse.ArgumentParser,
) -> None:
    storage = commands.add_parser("storage", parents=[common], help="move the gateway's store")
    storage_commands = storage.add_subparsers(
        dest="storage_command", required=True, metavar="COMMAND"
    )
    copy = storage_commands.add_parser(
        "copy",
        parents=[common],
        help="copy keys (hashes only), cached runs, ownership and purges into another store",
    )
    copy.add_argument(
        "--from", dest="source", required=True, metavar="DATABASE", help="a SQLite file or URL"
    )
    copy.add_argument(
        "--to", dest="target", required=True, metavar="DATABASE", help="a postgresql:// URL or file"
    )
    copy.set_defaults(run=cmd_storage_copy)


def cmd_storage_copy(args: argparse.Namespace, settings: Settings) -> int:
    if not is_postgres_url(args.source) and not os.path.exists(args.source):
        raise StorageError(f"No database at {os.path.abspath(args.source)} to copy from.")
    source = dataclasses.replace(settings.storage, database=args.source)
    target = dataclasses.replace(settings.storage, database=args.target)
    print(f"Copying {redacted(args.source)} into {redacted(args.target)}.", file=sys.stderr)
    copied = asyncio.run(_copy(source, target))
    rows = [["TABLE", "ROWS", "ADDED"]]
    rows += [[c.table, str(c.rows), str(c.added)] for c in copied]
    print_table(rows)
    return 0


async def _copy(source: StorageSettings, target: StorageSettings) -> list[Copied]:
    opened = await open_storage(source)
    try:
        into = await open_storage(target)
        try:
            return await copy_storage(opened, into, _progress)
        finally:
            await into.close()
    finally:
        await opened.close()


def _progress(total: int, table: str) -> tqdm[Any]:
    return tqdm(
        total=total, unit="row", desc=table, file=sys.stderr, disable=not sys.stderr.isatty()
    )

"""`parallel-gateway storage copy`: one store's keys (hashes only), cached entries, ownership and
purges into another, typically SQLite into PostgreSQL. Idempotent: what is there stays."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tqdm import tqdm

from .protocols import Storage


@dataclass(frozen=True, slots=True)
class Copied:
    table: str
    rows: int  # in the source
    added: int  # new in the target


async def copy_storage(
    source: Storage, target: Storage, progress: Callable[[int, str], tqdm[Any]]
) -> list[Copied]:
    """Copy every table of `source` into `target`, a page at a time; what each one added."""
    copied = []
    for table in source.transfer.tables:
        total = await source.transfer.count(table)
        added = 0
        with progress(total, table) as bar:
            async for page in source.transfer.pages(table):
                added += await target.transfer.add(table, page)
                bar.update(len(page))
        copied.append(Copied(table, total, added))
    return copied

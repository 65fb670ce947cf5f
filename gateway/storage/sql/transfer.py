"""Rows as they are, table by table, for `parallel-gateway storage copy`: the same schema in both
backends, read in key order a page at a time, and added unless already there."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from .database import SqlDatabase

PAGE = 500


@dataclass(frozen=True, slots=True)
class Table:
    name: str
    columns: tuple[str, ...]
    key: tuple[str, ...]  # the primary key, for reading in order and knowing a copy is there


APP_KEY_COLUMNS = (
    "name",
    "key_hash",
    "prefix",
    "created_at",
    "last_used_at",
    "revoked_at",
    "allow",
    "rate",
    "burst",
    "expires_at",
    "max_open",
    "replay",
    "budget_usd",
    "budget_per",
)
# In the order they are copied: keys before the records that name their apps. Key hashes are
# copied, never keys (there are none to copy). A purge's number is the target's own.
TABLES = (
    Table("app_keys", APP_KEY_COLUMNS, ("name",)),
    Table("retired_keys", ("key_hash", "app", "prefix", "created_at", "retires_at"), ("key_hash",)),
    Table("run_access", ("id", "app", "how", "at"), ("id", "app")),
    Table("run_inputs", ("run_id", "body", "size", "stored_at"), ("run_id",)),
    Table(
        "final_answers",
        ("run_id", "kind", "beta", "body", "size", "stored_at"),
        ("run_id", "kind", "beta"),
    ),
    Table(
        "create_recordings",
        ("app", "match_hash", "fields", "run_id", "recorded_at"),
        ("app", "match_hash", "run_id"),
    ),
    Table("cache_purges", ("seq", "run_ids", "purged_at"), ("seq",)),
    Table(
        "billing_calls",
        ("app", "day", "kind", "processor", "calls", "saved_calls"),
        ("app", "day", "kind", "processor"),
    ),
)
TABLE_NAMES = tuple(table.name for table in TABLES)


class SqlTransfer:
    """Transfer over one database."""

    tables = TABLE_NAMES

    def __init__(self, database: SqlDatabase) -> None:
        self.database = database

    async def count(self, table: str) -> int:
        row = await self.database.fetchone(f"SELECT count(*) FROM {_table(table).name}")  # noqa: S608
        return int(row[0]) if row else 0

    async def pages(self, table: str) -> AsyncIterator[list[tuple[Any, ...]]]:
        spec = _table(table)
        columns, key = ", ".join(spec.columns), ", ".join(spec.key)
        first = f"SELECT {columns} FROM {spec.name} ORDER BY {key} LIMIT {PAGE}"  # noqa: S608
        marks = ", ".join("?" for _ in spec.key)
        after = (
            f"SELECT {columns} FROM {spec.name} WHERE ({key}) > ({marks})"  # noqa: S608
            f" ORDER BY {key} LIMIT {PAGE}"
        )
        positions = [spec.columns.index(column) for column in spec.key]
        rows = await self.database.fetchall(first)
        while rows:
            yield rows
            if len(rows) < PAGE:
                return
            rows = await self.database.fetchall(after, [rows[-1][i] for i in positions])

    async def add(self, table: str, rows: list[tuple[Any, ...]]) -> int:
        """Add the rows not already there; how many were added."""
        spec = _table(table)
        if spec.name == "cache_purges":
            # Numbered by the target: a purge is there if one of its time and runs is.
            return await self.database.write_many(
                "INSERT INTO cache_purges (run_ids, purged_at)"
                " SELECT CAST(? AS TEXT), CAST(? AS TEXT) WHERE NOT EXISTS"
                " (SELECT 1 FROM cache_purges WHERE purged_at = ?"
                " AND (run_ids = ? OR (run_ids IS NULL AND CAST(? AS TEXT) IS NULL)))",
                [(runs, at, at, runs, runs) for _, runs, at in rows],
            )
        marks = ", ".join("?" for _ in spec.columns)
        return await self.database.write_many(
            f"INSERT INTO {spec.name} ({', '.join(spec.columns)}) VALUES ({marks})"  # noqa: S608
            " ON CONFLICT DO NOTHING",
            rows,
        )


def _table(name: str) -> Table:
    for table in TABLES:
        if table.name == name:
            return table
    raise ValueError(f"no table {name!r}")

"""Schema migrations: numbered SQL files, applied in order, each recorded once."""

from __future__ import annotations

import re
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from importlib.abc import Traversable
from pathlib import Path

import aiosqlite

MIGRATION_NAME = re.compile(r"(\d{4})_[a-z0-9_]+\.sql")


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str


def migrations_dir() -> Traversable:
    """Where the SQL files are: inside the installed package, else the repository's migrations/."""
    packaged = resources.files("gateway") / "migrations"
    if packaged.is_dir():
        return packaged
    # An editable install runs from the source tree, where migrations/ sits beside gateway/.
    return Path(__file__).resolve().parent.parent / "migrations"


def load_migrations(directory: Traversable | None = None) -> list[Migration]:
    directory = migrations_dir() if directory is None else directory
    found = []
    for entry in directory.iterdir():
        m = MIGRATION_NAME.fullmatch(entry.name)
        if m:
            found.append(Migration(int(m.group(1)), entry.name, entry.read_text("utf-8")))
    found.sort(key=lambda mig: mig.version)
    versions = [mig.version for mig in found]
    if len(set(versions)) != len(versions):
        raise RuntimeError(f"Two migrations share a version number: {versions}")
    return found


async def apply_migrations(conn: aiosqlite.Connection) -> list[str]:
    """Apply every migration not yet recorded; return the names applied."""
    await conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations ("
        " version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)"
    )
    applied: list[str] = []
    for migration in load_migrations():
        # IMMEDIATE takes the write lock before checking, so two processes starting at once
        # cannot both apply the same migration.
        await conn.execute("BEGIN IMMEDIATE")
        try:
            async with conn.execute(
                "SELECT 1 FROM schema_migrations WHERE version = ?", (migration.version,)
            ) as cursor:
                done = await cursor.fetchone() is not None
            if not done:
                for statement in split_statements(migration.sql):
                    await conn.execute(statement)
                await conn.execute(
                    "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                    (migration.version, migration.name, datetime.now(UTC).isoformat()),
                )
                applied.append(migration.name)
            await conn.execute("COMMIT")
        except BaseException:
            await conn.execute("ROLLBACK")
            raise
    return applied


def split_statements(script: str) -> list[str]:
    """Split a SQL script into complete statements, so they run inside our own transaction."""
    statements, current = [], ""
    for line in script.splitlines(keepends=True):
        current += line
        if sqlite3.complete_statement(current):
            statements.append(current.strip())
            current = ""
    if current.strip() and not current.strip().startswith("--"):
        raise ValueError(f"Migration ends with an incomplete statement: {current.strip()[:80]!r}")
    return statements

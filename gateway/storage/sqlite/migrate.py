"""Schema migrations: numbered SQL files, applied in order, each recorded once."""

from __future__ import annotations

import re
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from importlib.abc import Traversable
from pathlib import Path

MIGRATION_NAME = re.compile(r"(\d{4})_[a-z0-9_]+\.sql")


class MigrationError(Exception):
    """The migration files themselves are wrong."""


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
    return Path(__file__).resolve().parents[3] / "migrations"


def load_migrations(directory: Traversable | None = None) -> list[Migration]:
    """The migrations in `directory` (default: the shipped ones), in version order."""
    directory = migrations_dir() if directory is None else directory
    found = []
    for entry in directory.iterdir():
        if not entry.name.endswith(".sql"):
            continue
        m = MIGRATION_NAME.fullmatch(entry.name)
        if m is None:
            raise MigrationError(f"Migration file {entry.name!r} is not named NNNN_name.sql.")
        found.append(Migration(int(m.group(1)), entry.name, entry.read_text("utf-8")))
    found.sort(key=lambda mig: mig.version)
    versions = [mig.version for mig in found]
    if len(set(versions)) != len(versions):
        raise MigrationError(f"Two migrations share a version number: {versions}")
    return found


def apply_migrations(conn: sqlite3.Connection, directory: Traversable | None = None) -> list[str]:
    """Apply every migration not yet recorded, each in its own transaction; return their names.
    Blocking: run it in the connection's thread."""
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations ("
        " version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)"
    )
    done = {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}
    applied: list[str] = []
    for migration in load_migrations(directory):
        if migration.version not in done and _apply(conn, migration):
            applied.append(migration.name)
    return applied


def missing_versions(applied: set[int]) -> list[int]:
    """The versions of the shipped migrations not among `applied`, in order."""
    return sorted({migration.version for migration in load_migrations()} - applied)


def _apply(conn: sqlite3.Connection, migration: Migration) -> bool:
    """Record, then run, one migration in one transaction; False if another process won."""
    # The record goes first: if two processes start at once, the second one's INSERT hits the
    # primary key, and it rolls back having changed nothing. Values are safe to inline: the
    # name matched MIGRATION_NAME and the timestamp is ours.
    applied_at = datetime.now(UTC).isoformat()
    script = (
        "BEGIN IMMEDIATE;\n"
        "INSERT INTO schema_migrations (version, name, applied_at) VALUES "
        f"({migration.version}, '{migration.name}', '{applied_at}');\n"
        f"{migration.sql}\n;\nCOMMIT;"
    )
    try:
        conn.executescript(script)
    except sqlite3.IntegrityError:
        _rollback(conn)
        return False
    except BaseException:
        _rollback(conn)
        raise
    return True


def _rollback(conn: sqlite3.Connection) -> None:
    # SQLite may already have rolled back by itself (on BUSY or FULL, say).
    if conn.in_transaction:
        conn.execute("ROLLBACK")

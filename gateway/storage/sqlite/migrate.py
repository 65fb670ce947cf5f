"""SQLite's schema migrations: migrations/sqlite/NNNN_name.sql, applied in order, each recorded
once."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from importlib.abc import Traversable

from ..migrations import Migration, load_migrations, migrations_dir


def sqlite_migrations() -> Traversable:
    return migrations_dir("sqlite")


def apply_migrations(conn: sqlite3.Connection, directory: Traversable | None = None) -> list[str]:
    """Apply every migration not yet recorded, each in its own transaction; return their names.
    Blocking: run it in the connection's thread."""
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations ("
        " version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)"
    )
    done = {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}
    applied: list[str] = []
    for migration in load_migrations(sqlite_migrations() if directory is None else directory):
        if migration.version not in done and _apply(conn, migration):
            applied.append(migration.name)
    return applied


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

"""PostgreSQL's schema migrations: migrations/postgresql/NNNN_name.sql, applied in order, each
exactly once however many replicas start at the same moment."""

from __future__ import annotations

from datetime import UTC, datetime
from importlib.abc import Traversable
from typing import Any

from psycopg import AsyncConnection

from ..migrations import load_migrations, migrations_dir

# pg_advisory_xact_lock's key for migrating: replicas starting together take turns, and each
# finds what the one before it applied.
MIGRATION_LOCK = 0x7067775F6D6967  # "pgw_mig"


def postgres_migrations() -> Traversable:
    return migrations_dir("postgresql")


async def apply_migrations(
    conn: AsyncConnection[Any], directory: Traversable | None = None
) -> list[str]:
    """Apply every migration not yet recorded, in one transaction under an advisory lock;
    return their names."""
    migrations = load_migrations(postgres_migrations() if directory is None else directory)
    if {m.version for m in migrations} <= await applied_versions(conn):
        return []  # nothing to do, and nothing written: a read-only database opens too
    applied: list[str] = []
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version integer PRIMARY KEY, name text NOT NULL, applied_at text NOT NULL)"
        )
        cursor = await conn.execute("SELECT version FROM schema_migrations")
        done = {row[0] for row in await cursor.fetchall()}
        for migration in migrations:
            if migration.version in done:
                continue
            await conn.execute(migration.sql.encode())  # several statements: no parameters
            await conn.execute(
                "INSERT INTO schema_migrations (version, name, applied_at) VALUES (%s, %s, %s)",
                (migration.version, migration.name, datetime.now(UTC).isoformat()),
            )
            applied.append(migration.name)
    return applied


async def applied_versions(conn: AsyncConnection[Any]) -> set[int]:
    """The versions recorded as applied (none in a database never migrated)."""
    cursor = await conn.execute("SELECT to_regclass('schema_migrations') IS NOT NULL")
    if not (await cursor.fetchall())[0][0]:
        return set()
    cursor = await conn.execute("SELECT version FROM schema_migrations")
    return {row[0] for row in await cursor.fetchall()}

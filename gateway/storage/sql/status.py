"""What readiness asks of a store: its schema's migrations, and whether it takes writes."""

from __future__ import annotations

from importlib.abc import Traversable

from ..migrations import missing_versions
from .database import SqlDatabase


class SqlStatus:
    """StorageStatus over one database, whose backend's migrations are in `migrations`."""

    def __init__(self, database: SqlDatabase, migrations: Traversable) -> None:
        self.database = database
        self.migrations = migrations

    async def missing_migrations(self) -> list[int]:
        rows = await self.database.fetchall("SELECT version FROM schema_migrations")
        return missing_versions(self.migrations, {row[0] for row in rows})

    async def check_writable(self) -> None:
        # Rewriting a row with its own values still writes it, and commits it: a read-only
        # file, a full disk or a read-only server fails here, as a miss's insert would.
        await self.database.write(
            "UPDATE schema_migrations SET name = name"
            " WHERE version = (SELECT max(version) FROM schema_migrations)"
        )

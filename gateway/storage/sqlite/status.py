"""What readiness asks of a SQLite store: its schema's migrations, and whether it takes writes."""

from __future__ import annotations

from .database import Database
from .migrate import missing_versions


class SQLiteStatus:
    """StorageStatus over one database."""

    def __init__(self, database: Database) -> None:
        self.database = database

    async def missing_migrations(self) -> list[int]:
        rows = await self.database.fetchall("SELECT version FROM schema_migrations")
        return missing_versions({row[0] for row in rows})

    async def check_writable(self) -> None:
        # Rewriting a row with its own values still writes its page, and commits it: a
        # read-only file or a full disk fails here, as a miss's insert would.
        await self.database.write(
            "UPDATE schema_migrations SET name = name"
            " WHERE version = (SELECT max(version) FROM schema_migrations)"
        )

"""The SQLite backend: its connections (one reader, one group-committing writer), its
migrations, and the shared SQL (storage/sql/) over them."""

from __future__ import annotations

from ...config import StorageSettings
from ..protocols import Storage
from ..sql import sql_storage
from .database import Database
from .migrate import sqlite_migrations


async def open_sqlite(settings: StorageSettings) -> Storage:
    """Open (and migrate) the database file `settings.database`; StorageError if it cannot be.
    One machine: a process's own single flight, limits and polling are enough."""
    database = await Database.open(settings)
    return sql_storage(database, sqlite_migrations(), database.applied_migrations, database.close)

"""open_storage: the one place where a backend is chosen for `storage.database`."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from ..config import StorageSettings
from .location import is_postgres_url
from .protocols import Storage
from .sqlite import open_sqlite

T = TypeVar("T")


async def open_storage(settings: StorageSettings) -> Storage:
    """Open the store `settings.database` names, migrated; StorageError if it cannot be.

    A postgresql:// (or postgres://) URL is a PostgreSQL database, for replicas; anything else
    is the path of a SQLite file.
    """
    if is_postgres_url(settings.database):
        # Imported only here: psycopg adds a hundred modules and thousands of objects that
        # every garbage collection of a SQLite gateway would walk for nothing.
        from .postgres import open_postgres

        return await open_postgres(settings)
    return await open_sqlite(settings)


def run_with_storage(settings: StorageSettings, action: Callable[[Storage], Awaitable[T]]) -> T:
    """For the CLI: open the store (migrating it), run `action`, close it."""

    async def run() -> T:
        storage = await open_storage(settings)
        try:
            return await action(storage)
        finally:
            await storage.close()

    return asyncio.run(run())

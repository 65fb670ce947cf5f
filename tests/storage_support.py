"""A store opened for the length of a block: tests that make keys or entries before a start."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from gateway.config import StorageSettings
from gateway.storage.open import open_storage
from gateway.storage.protocols import Storage


@asynccontextmanager
async def opened_storage(settings: StorageSettings) -> AsyncIterator[Storage]:
    """The store `settings` names, opened (and migrated), closed when the block ends."""
    storage = await open_storage(settings)
    try:
        yield storage
    finally:
        await storage.close()

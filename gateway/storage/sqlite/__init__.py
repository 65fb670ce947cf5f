"""The SQLite backend: the only code that holds SQL or names sqlite3."""

from __future__ import annotations

from ...config import StorageSettings
from ..protocols import Storage
from .app_keys import SQLiteAppKeys
from .database import Database
from .run_access import SQLiteRunAccess
from .run_inputs import SQLiteRunInputs
from .status import SQLiteStatus


async def open_sqlite(settings: StorageSettings) -> Storage:
    """Open (and migrate) the database file `settings.database`; StorageError if it cannot be."""
    database = await Database.open(settings)
    run_inputs = SQLiteRunInputs(database)
    return Storage(
        run_inputs=run_inputs,
        purges=run_inputs,
        app_keys=SQLiteAppKeys(database),
        run_access=SQLiteRunAccess(database),
        status=SQLiteStatus(database),
        applied_migrations=database.applied_migrations,
        close=database.close,
    )

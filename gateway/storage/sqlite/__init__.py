"""The SQLite backend: its connections (one reader, one group-committing writer), its
migrations, and the shared SQL (storage/sql/) over them."""

from __future__ import annotations

from ...config import StorageSettings
from ..protocols import Storage
from ..sql.app_keys import SqlAppKeys
from ..sql.final_answers import SqlFinalAnswers
from ..sql.run_access import SqlRunAccess
from ..sql.run_inputs import SqlRunInputs
from ..sql.status import SqlStatus
from ..sql.transfer import SqlTransfer
from .database import Database
from .migrate import sqlite_migrations


async def open_sqlite(settings: StorageSettings) -> Storage:
    """Open (and migrate) the database file `settings.database`; StorageError if it cannot be."""
    database = await Database.open(settings)
    run_inputs = SqlRunInputs(database)
    return Storage(
        run_inputs=run_inputs,
        final_answers=SqlFinalAnswers(database),
        purges=run_inputs,
        app_keys=SqlAppKeys(database),
        run_access=SqlRunAccess(database),
        status=SqlStatus(database, sqlite_migrations()),
        transfer=SqlTransfer(database),
        shared=False,
        fetch_leases=None,
        replica_usage=None,
        watch_changes=None,
        applied_migrations=database.applied_migrations,
        close=database.close,
    )

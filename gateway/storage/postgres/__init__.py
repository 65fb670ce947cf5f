"""The PostgreSQL backend, for replicas: a psycopg pool, its migrations, the shared SQL
(storage/sql/) over them, and what replicas share besides (fetch leases, usage)."""

from __future__ import annotations

from ...config import StorageSettings
from ..protocols import Storage
from ..sql.app_keys import SqlAppKeys
from ..sql.fetch_leases import SqlFetchLeases
from ..sql.final_answers import SqlFinalAnswers
from ..sql.replica_usage import SqlReplicaUsage
from ..sql.run_access import SqlRunAccess
from ..sql.run_inputs import SqlRunInputs
from ..sql.status import SqlStatus
from ..sql.transfer import SqlTransfer
from .database import PgDatabase
from .listener import ChangeListener
from .migrate import postgres_migrations


async def open_postgres(settings: StorageSettings) -> Storage:
    """Open (and migrate) the database `settings.database` names; StorageError if it cannot be."""
    database = await PgDatabase.open(settings)
    run_inputs = SqlRunInputs(database)
    return Storage(
        run_inputs=run_inputs,
        final_answers=SqlFinalAnswers(database),
        purges=run_inputs,
        app_keys=SqlAppKeys(database),
        run_access=SqlRunAccess(database),
        status=SqlStatus(database, postgres_migrations()),
        transfer=SqlTransfer(database),
        shared=True,
        fetch_leases=SqlFetchLeases(database),
        replica_usage=SqlReplicaUsage(database),
        watch_changes=lambda on_change: ChangeListener(settings.database, on_change).run(),
        applied_migrations=database.applied_migrations,
        close=database.close,
    )

"""The PostgreSQL backend, for replicas: a psycopg pool, its migrations, the shared SQL
(storage/sql/) over them, and what replicas share besides (fetch leases, usage)."""

from __future__ import annotations

from ...config import StorageSettings
from ..protocols import Storage
from ..sql import sql_storage
from ..sql.fetch_leases import SqlFetchLeases
from ..sql.replica_usage import SqlReplicaUsage
from .database import PgDatabase
from .listener import ChangeListener
from .migrate import postgres_migrations


async def open_postgres(settings: StorageSettings) -> Storage:
    """Open (and migrate) the database `settings.database` names; StorageError if it cannot be."""
    database = await PgDatabase.open(settings)
    return sql_storage(
        database,
        postgres_migrations(),
        database.applied_migrations,
        database.close,
        fetch_leases=SqlFetchLeases(database),
        replica_usage=SqlReplicaUsage(database),
        watch_changes=lambda on_change: ChangeListener(settings.database, on_change).run(),
    )

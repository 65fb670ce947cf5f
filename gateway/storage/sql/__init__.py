"""The SQL both backends run: each protocol written once, with ? placeholders, over SqlDatabase;
`sql_storage` builds a Storage of them for a backend's open connections."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine
from importlib.abc import Traversable
from typing import Any

from ..protocols import FetchLeases, ReplicaUsage, Storage
from .app_keys import SqlAppKeys
from .billing_calls import SqlBillingCalls
from .database import SqlDatabase
from .final_answers import SqlFinalAnswers
from .recordings import SqlRecordings
from .run_access import SqlRunAccess
from .run_inputs import SqlRunInputs
from .status import SqlStatus
from .transfer import SqlTransfer


def sql_storage(
    database: SqlDatabase,
    migrations: Traversable,
    applied_migrations: list[str],
    close: Callable[[], Awaitable[None]],
    *,
    fetch_leases: FetchLeases | None = None,
    replica_usage: ReplicaUsage | None = None,
    watch_changes: Callable[[Callable[[str], None]], Coroutine[Any, Any, None]] | None = None,
) -> Storage:
    """Every protocol over `database`; shared (replicas) when it takes fetch leases."""
    run_inputs = SqlRunInputs(database)
    return Storage(
        run_inputs=run_inputs,
        final_answers=SqlFinalAnswers(database),
        purges=run_inputs,
        recordings=SqlRecordings(database),
        app_keys=SqlAppKeys(database),
        run_access=SqlRunAccess(database),
        status=SqlStatus(database, migrations),
        transfer=SqlTransfer(database),
        billing_calls=SqlBillingCalls(database),
        shared=fetch_leases is not None,
        fetch_leases=fetch_leases,
        replica_usage=replica_usage,
        watch_changes=watch_changes,
        applied_migrations=applied_migrations,
        close=close,
    )

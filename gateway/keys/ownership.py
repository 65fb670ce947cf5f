"""Run ownership for [isolation] mode = "app": who created or was granted each run and group."""

from __future__ import annotations

import shlex
from collections.abc import Iterable, Sequence

import orjson
import structlog

from ..cache.policy import is_valid_owned_id
from ..errors import StorageUnavailableError
from ..http.catalog import Creates
from ..storage.health import StorageHealth
from ..storage.protocols import AppKeys, RunAccess
from ..storage.types import Access, StoreError
from ..timestamps import now_rfc3339

# The field of a create's answer that names what it created (the SDK's types).
CREATED_ID = {
    Creates.RUN: "run_id",
    Creates.GROUP: "taskgroup_id",
    Creates.FINDALL: "findall_id",
    Creates.MONITOR: "monitor_id",
}
log = structlog.get_logger("gateway.ownership")
# Seconds between tries of the ownership records that could not be written when made.
RETRY_INTERVAL = 1.0


class GrantError(Exception):
    """A grant that cannot be made (an unknown app, an invalid id)."""


def created_ids(creates: Creates, body: bytes) -> list[str]:
    """The ids a successful create answered with; [] for a body without them. Pure."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return []
    if not isinstance(data, dict):
        return []
    ids = data.get("run_ids") if creates is Creates.GROUP_RUNS else [data.get(CREATED_ID[creates])]
    if not isinstance(ids, list):
        return []
    return [i for i in ids if isinstance(i, str) and i]


def grant_commands(app: str, ids: Iterable[str]) -> list[str]:
    """The CLI commands an operator can run to record these ids by hand. Pure."""
    return [f"parallel-gateway runs grant {shlex.quote(i)} {shlex.quote(app)}" for i in ids]


class OwnershipRecorder:
    """Records which app created each run and group; a record that cannot be written when the
    create is answered (the database is locked or failing) is kept in memory and written later,
    so the app still gets upstream's answer and its run is not orphaned."""

    def __init__(self, access: RunAccess, health: StorageHealth | None = None) -> None:
        self._access = access
        self._health = health  # a failed record is a storage fault like any other write
        self._pending: dict[str, dict[str, None]] = {}  # app -> ids not yet written, in order

    async def record(self, app: str, ids: Sequence[str]) -> None:
        """Write that `app` created `ids`; never raises: a failure is logged and kept."""
        if not ids:
            return
        try:
            await self._write(app, ids)
        except Exception as e:
            self._pending.setdefault(app, {}).update(dict.fromkeys(ids))
            # A warning is written at once: after a kill, this line is what to replay.
            log.warning(
                "ownership.record_failed",
                app=app,
                run_ids=list(ids),
                error=f"{type(e).__name__}: {e}",
                retry_in=RETRY_INTERVAL,
                replay=grant_commands(app, ids),
            )

    async def may_read(self, app: str, ids: Iterable[str | None]) -> bool:
        """`may_read`, counting the records still waiting to be written: the app that created
        a run reads it at once (the SDK polls it next), while the record waits for the lock."""
        waiting = self._pending.get(app, {})
        try:
            return await may_read(self._access, app, [i for i in ids if i not in waiting])
        except StoreError as e:
            # Fail closed, counted and logged at the storage rate: no traceback per request.
            if self._health is not None:
                self._health.failed(e, "read")
            raise StorageUnavailableError(
                "The gateway could not read who may use this run from its database; try again "
                "later."
            ) from None

    async def retry(self) -> None:
        """Write what could not be written before (every RETRY_INTERVAL, and at shutdown)."""
        for app, pending in list(self._pending.items()):
            ids = list(pending)
            try:
                await self._write(app, ids)
            except Exception as e:
                # Warned when it first failed, with the grants to replay; tried next round.
                log.debug("ownership.retry_failed", app=app, run_ids=ids, error=type(e).__name__)
                continue
            for i in ids:
                pending.pop(i, None)
            if not pending:
                self._pending.pop(app, None)
            log.info("ownership.recorded", app=app, run_ids=ids)

    async def _write(self, app: str, ids: Sequence[str]) -> None:
        """The record written, its outcome told to the store's health (/readyz, the metrics)."""
        try:
            await self._access.record_created(app, ids, now_rfc3339())
        except Exception as e:
            if self._health is not None:
                self._health.failed(e, "write")
            raise
        if self._health is not None:
            self._health.wrote()

    async def flush(self) -> None:
        """At shutdown: a last try, then an error line with the grants still to be made."""
        await self.retry()
        for app, pending in self._pending.items():
            ids = list(pending)
            log.error("ownership.unrecorded", app=app, run_ids=ids, replay=grant_commands(app, ids))


async def grant(access: RunAccess, keys: AppKeys, run_id: str, app: str) -> bool:
    """Let `app` read `run_id`; False if it already could."""
    if not is_valid_owned_id(run_id):
        raise GrantError(
            f"Id {run_id!r} is not valid: a run, task group, FindAll run or monitor id is one "
            "path segment of A-Z, a-z, 0-9, '_' and '-'."
        )
    await _known_app(keys, app)
    return await access.grant(run_id, app, now_rfc3339())


async def _known_app(keys: AppKeys, app: str) -> None:
    if await keys.get(app) is None:
        raise GrantError(f"No app named {app!r}.")


async def list_access(access: RunAccess, keys: AppKeys, app: str | None = None) -> list[Access]:
    """Every run each app may read (only `app`'s when given), by app, then time, then id."""
    if app is not None:
        await _known_app(keys, app)
    return await access.list_records(app)


async def may_read(access: RunAccess, app: str, ids: Iterable[str | None]) -> bool:
    """Whether `app` created, or was granted, every id given (None ids are ignored)."""
    return await access.may_read(app, [run_id for run_id in ids if run_id is not None])

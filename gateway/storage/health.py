"""The store's health as the gateway sees it: whether writes succeed, and its faults by kind,
counted in metrics, reported by /readyz, and logged at a bounded rate."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import structlog

from ..ops.metrics import Metrics
from ..ops.throttle import LOG_INTERVAL, Throttle
from ..timestamps import now_rfc3339
from .location import is_postgres_url, redacted
from .protocols import StorageStatus
from .types import StoreError

log = structlog.get_logger("gateway.storage")


@dataclass(frozen=True, slots=True)
class StorageFault:
    kind: str
    operation: str  # "read", "write" or "start-up check"
    detail: str
    at: str


class StorageHealth:
    """Records the outcome of the store's reads and writes.

    A failed write (other than a busy lock, which passes) marks the store not writable, until
    a write succeeds again: /readyz then answers 503, and gateway_storage_writable is 0.
    """

    def __init__(
        self,
        database: str,
        metrics: Metrics | None = None,
        interval: float = LOG_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.database = redacted(database)
        self.shared = is_postgres_url(database)  # a store other replicas use too
        self.writable = True
        self.reachable = True
        self.last_fault: StorageFault | None = None
        self._metrics = metrics
        self._throttle = Throttle(interval, clock)
        self._counts: dict[str, int] = {}
        if metrics is not None:
            metrics.storage_writable.set(1)
            metrics.storage_reachable.set(1)

    def failed(self, error: Exception, operation: str, **context: str) -> None:
        """Record a failed read or write: counted always, logged once per kind per interval."""
        kind = error.kind if isinstance(error, StoreError) else "other"
        self._counts[kind] = self._counts.get(kind, 0) + 1
        self.last_fault = StorageFault(kind, operation, str(error), now_rfc3339())
        if self._metrics is not None:
            self._metrics.storage_errors.labels(kind).inc()
        if kind == "cannot-open" and self.shared:
            # Every replica sees the same outage: each goes on serving, statically (memory
            # hits, pass-through, misses unstored), and stays ready; see readiness().
            self._set_reachable(False)
        elif operation != "read" and kind != "busy":
            self._set_writable(False)
        count = self._throttle.count(kind)
        if count is not None:
            log.error(
                "storage.error",
                kind=kind,
                operation=operation,
                database=self.database,
                error=str(error),
                count=count,
                per_seconds=self._throttle.interval,
                **context,
            )

    async def check(self, status: StorageStatus) -> None:
        """Learn whether the store takes writes (at start: /readyz and the metrics say)."""
        try:
            await status.check_writable()
        except StoreError as e:
            self.failed(e, "start-up check")
        else:
            self.wrote()

    def answered(self) -> None:
        """Record that the store answered (a read, or any call that reached it)."""
        if not self.reachable:
            self._set_reachable(True)
            log.info("storage.reachable", database=self.database)

    def wrote(self) -> None:
        """Record a committed write."""
        self.answered()
        if not self.writable:
            self._set_writable(True)
            log.info("storage.writable", database=self.database)

    def report(self) -> dict[str, object]:
        """What /readyz says of the store."""
        return {
            "writable": self.writable,
            "reachable": self.reachable,
            "errors": dict(self._counts),
            "last_error": None if self.last_fault is None else asdict(self.last_fault),
        }

    def _set_reachable(self, reachable: bool) -> None:
        self.reachable = reachable
        if self._metrics is not None:
            self._metrics.storage_reachable.set(int(reachable))

    def _set_writable(self, writable: bool) -> None:
        self.writable = writable
        if self._metrics is not None:
            self._metrics.storage_writable.set(int(writable))

"""The counts' way to the store: taken from memory every few seconds, off the request path, as
one batch of additive upserts; once more at shutdown, so a SIGTERM loses none."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime

import structlog

from ..ops.metrics import Metrics
from ..storage.protocols import BillingCalls
from ..storage.types import StoreError
from .tally import Tally

log = structlog.get_logger("gateway.billing")


def utc_day(now: float) -> str:
    """The UTC day of a POSIX time, as YYYY-MM-DD."""
    return datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%d")


class BillingFlush:
    """Moves a Tally's counts to the store. A count is dated when it is flushed, so one made in
    the last flush_interval seconds of a UTC day may be dated the next."""

    def __init__(
        self,
        tally: Tally,
        store: BillingCalls,
        metrics: Metrics,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._tally = tally
        self._store = store
        self._metrics = metrics
        self._clock = clock

    async def flush(self) -> None:
        """Store what was counted; on a StoreError it is kept in memory for the next flush."""
        counts = self._tally.take(utc_day(self._clock()))
        if not counts:
            return
        try:
            await self._store.add(counts)
        except StoreError:
            self._tally.give_back(counts)
            raise
        self._metrics.count_billing(counts)

    async def last_flush(self) -> None:
        """At shutdown: what cannot be stored now is lost, and said so in the log."""
        try:
            await self.flush()
        except StoreError as e:
            lost = self._tally.take(utc_day(self._clock()))
            log.error(
                "billing.counts_lost",
                error=str(e),
                calls=sum(c.calls for c in lost),
                saved_calls=sum(c.saved_calls for c in lost),
            )

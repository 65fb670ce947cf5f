"""Hearing of changes other replicas (and the CLI) commit: LISTEN on a connection of its own.

NOTIFY reaches only sessions listening when it commits, with no replay, and a dead connection
may go unnoticed until it is used. So the listener checks its connection every
`liveness_interval` seconds with a query, reconnects by itself, and reports "*" (everything may
have changed) after each (re)connect: the replica then re-reads keys and purges, and nothing
committed while it was deaf is missed. Its storage-sync polling stays as the last fallback.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import psycopg
import structlog
from psycopg import AsyncConnection

from ..location import redacted
from ..types import EVERYTHING
from .database import CONNECTION_OPTIONS

CHANNEL = "parallel_gateway_changes"
# Its connection's name in pg_stat_activity, told apart from the pool's ("parallel-gateway").
APPLICATION_NAME = "parallel-gateway listener"
log = structlog.get_logger("gateway.storage")


class ChangeListener:
    """Calls `on_change(table)` for each change notified, and `on_change("*")` once connected."""

    def __init__(
        self,
        url: str,
        on_change: Callable[[str], None],
        *,
        liveness_interval: float = 5.0,
        backoff_initial: float = 0.1,
        backoff_max: float = 2.0,
    ) -> None:
        self._url = url
        self._on_change = on_change
        self._liveness = liveness_interval
        self._backoff_initial = backoff_initial
        self._backoff_max = backoff_max
        self.connections = 0  # how many times it has connected: 1 + its reconnects

    async def run(self) -> None:
        """Listen until cancelled, reconnecting after any failure."""
        backoff = self._backoff_initial
        while True:
            try:
                conn = await AsyncConnection.connect(
                    self._url, **{**CONNECTION_OPTIONS, "application_name": APPLICATION_NAME}
                )
            except psycopg.Error as e:
                log.warning("storage.listener_down", database=redacted(self._url), error=str(e))
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self._backoff_max)
                continue
            backoff = self._backoff_initial
            try:
                async with conn:
                    await self._listen(conn)
            except psycopg.Error as e:
                log.warning("storage.listener_lost", database=redacted(self._url), error=str(e))

    async def _listen(self, conn: AsyncConnection[Any]) -> None:
        await conn.execute(f"LISTEN {CHANNEL}")
        self.connections += 1
        if self.connections > 1:
            log.info("storage.listener_reconnected", database=redacted(self._url))
        self._on_change(EVERYTHING)
        while True:
            async for notify in conn.notifies(timeout=self._liveness):
                self._on_change(notify.payload)
            await conn.execute("SELECT 1")  # a dead connection fails here, not never

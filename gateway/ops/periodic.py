"""Background chores that run every few seconds while the gateway serves."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

import structlog

from .throttle import LOG_INTERVAL, Throttle

log = structlog.get_logger("gateway.periodic")


class Periodic:
    """Calls `chore` every `interval` seconds until stopped, and at once when woken; a failure
    is logged (once a LOG_INTERVAL at most, with a count), not fatal."""

    def __init__(self, name: str, interval: float, chore: Callable[[], Awaitable[None]]) -> None:
        self.name = name
        self._interval = interval
        self._chore = chore
        self._task: asyncio.Task[None] | None = None
        self._failures = Throttle(LOG_INTERVAL)
        self._woken = asyncio.Event()
        self._busy = False  # the chore is running
        self._stopping = False

    def start(self) -> None:
        self._stopping = False
        self._task = asyncio.create_task(self._run(), name=self.name)

    async def stop(self, *, let_finish: bool = False) -> None:
        """Stop. With `let_finish`, a chore running now ends first rather than being cut off
        midway (a write of counts taken from memory, which a cancel would lose)."""
        task, self._task = self._task, None
        if task is None:
            return
        if let_finish and self._busy:
            self._stopping = True  # the loop ends after this round
            await task
            return
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    def wake(self) -> None:
        """Run the chore now rather than at the end of the interval (a change was announced)."""
        self._woken.set()

    async def _run(self) -> None:
        while not self._stopping:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._woken.wait(), self._interval)
            self._woken.clear()
            self._busy = True
            try:
                await self._chore()
            except Exception:
                # Keep serving with what we have; the next round tries again.
                count = self._failures.count(self.name)
                if count is not None:
                    log.exception("periodic.failed", chore=self.name, count=count)
            finally:
                self._busy = False

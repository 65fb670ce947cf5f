"""One upstream fetch per cold run across replicas that share a store.

A replica missing a run takes the run's fetch lease, or, if another replica holds it, waits for
that replica's entry to appear in the store. The holder renews its lease while it fetches; if
it dies, the lease runs out within LEASE seconds and a waiting replica takes the run over. An
error is never stored: its holder lets the lease go, and a waiting replica then fetches for
itself. If the store fails, a replica fetches directly rather than fail.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from ..storage.protocols import FetchLeases, RunInputs
from ..storage.types import StoredInput, StoreError

LEASE = 5.0  # seconds a lease holds unless renewed; a dead holder's run is taken over after it
POLL_INITIAL = 0.02  # first wait between looks at a run another replica is fetching
POLL_MAX = 0.25


# Releases under way, kept so that they finish (a lease not released runs out by itself).
_releasing: set[asyncio.Task[None]] = set()


def replica_id() -> str:
    """This process, as lease owners name it: host, pid, and a random part (pids repeat)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


@dataclass
class Held:
    """A lease this replica holds while it fetches `run_id`: renewed until released."""

    leases: FetchLeases
    run_id: str
    owner: str
    clock: Callable[[], float]
    _renewer: asyncio.Task[None] | None = field(default=None, repr=False)

    def start(self) -> None:
        self._renewer = asyncio.create_task(self._renew(), name=f"lease-{self.run_id}")

    async def stop_renewing(self) -> None:
        if self._renewer is not None:
            self._renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._renewer
            self._renewer = None

    def let_go(self) -> None:
        """`release` in the background, off the answer's path (done with the fetch)."""
        task = asyncio.create_task(self.release(), name=f"release-{self.run_id}")
        _releasing.add(task)
        task.add_done_callback(_releasing.discard)

    async def release(self) -> None:
        """Stop renewing and let the lease go (once the entry is stored, or the fetch failed)."""
        await self.stop_renewing()
        with contextlib.suppress(StoreError):  # it runs out by itself in any case
            await self.leases.release(self.run_id, self.owner)

    async def _renew(self) -> None:
        while True:
            await asyncio.sleep(LEASE / 3)
            with contextlib.suppress(StoreError):  # a failed renewal is tried again
                await self.leases.renew(self.run_id, self.owner, self.clock() + LEASE)


class ColdRuns:
    """Decides, for a run missing from the store, whether this replica fetches it."""

    def __init__(
        self,
        leases: FetchLeases,
        store: RunInputs,
        owner: str,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._leases = leases
        self._store = store
        self._owner = owner
        self._clock = clock

    async def claim(self, run_id: str) -> StoredInput | Held | None:
        """The run's entry, once another replica has stored it; or the lease, held, for this
        replica to fetch it; or None when the store failed (fetch it without a lease)."""
        delay = POLL_INITIAL
        while True:
            now = self._clock()
            try:
                # Not taken if the run is stored meanwhile: the look below then finds it.
                if await self._leases.take(run_id, self._owner, now, now + LEASE):
                    held = Held(self._leases, run_id, self._owner, self._clock)
                    held.start()
                    return held
                entry = await self._store.get(run_id)
            except StoreError:
                return None
            if entry is not None:
                return entry
            await asyncio.sleep(delay)
            delay = min(delay * 2, POLL_MAX)

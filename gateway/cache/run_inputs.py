"""Run-input cache: a bounded memory LRU in front of the store, and single-flight on misses."""

from __future__ import annotations

import asyncio
import functools
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import structlog

from ..config import CacheSettings
from ..errors import UpstreamInvalidError
from ..storage.health import StorageHealth
from ..storage.protocols import Purges, RunInputs
from ..storage.types import CacheStats, StoredInput, StoreError
from ..timestamps import now_rfc3339
from ..upstream.client import UpstreamResponse
from .cold_runs import ColdRuns
from .final_policy import run_of
from .mcp_headers import input_without_header_values
from .policy import CACHE_HIT, Storability, cache_status, storability

log = structlog.get_logger("gateway.cache")
# Read faults that mean the stored row itself cannot be read (it cannot be replaced either).
UNREADABLE = frozenset({"corrupt", "io"})

Fetch = Callable[[str], Awaitable[UpstreamResponse]]


class MemoryLRU:
    """Bodies by key, bounded by entry count and total bytes: run inputs by run id, and final
    answers by final_policy.answer_key (the run id, then "/")."""

    def __init__(self, max_entries: int, max_bytes: int) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.bytes = 0
        self._entries: OrderedDict[str, bytes] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, run_id: str) -> bytes | None:
        body = self._entries.get(run_id)
        if body is not None:
            self._entries.move_to_end(run_id)
        return body

    def put(self, run_id: str, body: bytes) -> None:
        if len(body) > self.max_bytes:
            return
        self.discard(run_id)
        self._entries[run_id] = body
        self.bytes += len(body)
        self._evict()

    def resize(self, max_entries: int, max_bytes: int) -> None:
        """New bounds (SIGHUP): the least recently used entries leave until it fits them."""
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._evict()

    def _evict(self) -> None:
        while len(self._entries) > self.max_entries or self.bytes > self.max_bytes:
            _, evicted = self._entries.popitem(last=False)
            self.bytes -= len(evicted)

    def clear(self) -> None:
        self._entries.clear()
        self.bytes = 0

    def discard(self, run_id: str) -> None:
        body = self._entries.pop(run_id, None)
        if body is not None:
            self.bytes -= len(body)

    def discard_runs(self, run_ids: set[str]) -> None:
        """Drop everything of the runs named: inputs and final answers (purges are rare; this
        reads every key)."""
        for key in [key for key in self._entries if run_of(key) in run_ids]:
            self.discard(key)


@dataclass(frozen=True, slots=True)
class Lookup:
    """What the cache answers for one run: upstream's status and body, and how it was served."""

    status: int
    body: bytes
    headers: dict[str, str]
    stored: bool = False
    fetched: bool = False  # False when the store already had it

    def cache_status(self, collapsed: bool) -> str:
        if not self.fetched:
            return CACHE_HIT
        return cache_status(stored=self.stored, collapsed=collapsed, fwd_status=self.status)


class RunInputCache:
    """Memory, then the store, then upstream, with at most one upstream fetch per run at a time."""

    def __init__(
        self,
        memory: MemoryLRU,
        store: RunInputs,
        purges: Purges,
        fetch: Fetch,
        max_body_bytes: int,
        health: StorageHealth,
        cold_runs: ColdRuns | None = None,
    ) -> None:
        self.memory = memory
        self._cold_runs = cold_runs  # replicas sharing the store: one fetches a cold run
        self.health = health
        self._store = store
        self._purges = purges
        self._fetch = fetch
        self._max_body_bytes = max_body_bytes
        self._inflight: dict[str, asyncio.Task[Lookup]] = {}
        self._purge_seq = 0

    def reconfigure(self, settings: CacheSettings) -> None:
        """The memory bounds and the largest storable input, from now on (SIGHUP)."""
        self.memory.resize(settings.memory_entries, settings.memory_bytes)
        self._max_body_bytes = settings.max_body_bytes

    async def start_purge_sync(self) -> None:
        """Skip purges made before now: memory starts empty."""
        self._purge_seq = await self._purges.last_purge()

    async def sync_purges(self) -> None:
        """Drop from memory what the CLI purged from the store (possibly in another process):
        run inputs and final answers, which share the memory layer."""
        for purge in await self._purges.purges_since(self._purge_seq):
            if purge.run_ids is None:
                self.memory.clear()
            else:
                self.memory.discard_runs(set(purge.run_ids))
            self._purge_seq = purge.seq

    async def store_stats(self) -> CacheStats:
        return await self._store.stats()

    def in_flight(self, run_id: str) -> bool:
        """Whether a lookup of `run_id` started now would wait on one already under way."""
        return run_id in self._inflight

    async def lookup(self, run_id: str) -> Lookup:
        """Answer a run whose body is not in memory (callers try `memory.get` first)."""
        task = self._inflight.get(run_id)
        if task is None:
            task = asyncio.create_task(self._load(run_id))
            self._inflight[run_id] = task
            task.add_done_callback(functools.partial(self._forget, run_id))
        # Shielded: a client that goes away must not cancel the fetch others are waiting on.
        return await asyncio.shield(task)

    def _forget(self, run_id: str, task: asyncio.Task[Lookup]) -> None:
        self._inflight.pop(run_id, None)
        if not task.cancelled():
            task.exception()  # every waiter has it; mark it retrieved even if none are left

    async def _load(self, run_id: str) -> Lookup:
        unreadable = False
        try:
            stored = await self._store.get(run_id)
        except StoreError as e:
            # A stored copy that cannot be read (a corrupt page) is fetched again, rather than
            # failing for ever. A store that did not answer at all (out of reach, busy) may
            # hold it or not: the fresh copy is offered to it as any miss's is.
            self.health.failed(e, "read", run_id=run_id)
            stored, unreadable = None, e.kind in UNREADABLE
        if stored is not None:
            return self._from_store(stored)
        if self._cold_runs is None or unreadable:
            return await self._fetch_and_store(run_id, unreadable)
        claim = await self._cold_runs.claim(run_id)
        if isinstance(claim, StoredInput):  # another replica fetched it meanwhile
            return self._from_store(claim)
        try:
            return await self._fetch_and_store(run_id, unreadable)
        finally:
            if claim is not None:
                claim.let_go()  # after the answer: waiting replicas look at the store

    def _from_store(self, stored: StoredInput) -> Lookup:
        # Stored before MCP header values were scrubbed, an input may still hold them.
        body = input_without_header_values(stored.body)
        self.memory.put(stored.run_id, body)
        return Lookup(200, body, {})

    async def _fetch_and_store(self, run_id: str, unreadable: bool) -> Lookup:
        response = await self._fetch(run_id)
        decision = storability(response.status, response.body, self._max_body_bytes)
        if decision is Storability.STORE:
            # An app's MCP tokens are kept nowhere, and answered as stored (mcp_headers.py).
            body = input_without_header_values(response.body)
            if unreadable:
                # A store may not replace an entry it cannot read (SQLite cannot): the fresh
                # copy is kept in memory, and not promised as stored.
                self.memory.put(run_id, body)
                return Lookup(200, body, {}, fetched=True)
            try:
                await self._store.put(StoredInput(run_id, body, now_rfc3339()))
            except Exception as e:
                # The app still gets its input; only the promise "stored" is withheld.
                self.health.failed(e, "write", run_id=run_id)
                return Lookup(200, body, {}, fetched=True)
            self.health.wrote()
            self.memory.put(run_id, body)
            return Lookup(200, body, {}, stored=True, fetched=True)
        if decision is Storability.NOT_JSON:
            error = UpstreamInvalidError(
                f"Parallel API answered {response.status} for run {run_id} with a body that is "
                "not JSON; it was not stored."
            )
            log.warning(
                "cache.not_stored",
                run_id=run_id,
                reason=decision.value,
                size=len(response.body),
                ref_id=error.ref_id,
            )
            raise error
        if decision is not Storability.NOT_OK:
            log.warning(
                "cache.not_stored", run_id=run_id, reason=decision.value, size=len(response.body)
            )
        # Relayed unstored (too large, not a run input): its MCP tokens are never shown either.
        body = response.body
        if response.status == 200:
            body = input_without_header_values(body)
        return Lookup(response.status, body, dict(response.headers), fetched=True)

"""What domain code asks of storage: one small protocol per concern, and the Storage holding them.

Every method raises StoreError (with its kind) when the store cannot answer.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from .types import (
    Access,
    AnswerKind,
    AppKey,
    CacheStats,
    CallCount,
    Deleted,
    KeyChanges,
    KeyState,
    NewKey,
    Purge,
    Recording,
    StoredAnswer,
    StoredInput,
    Usage,
)


class RunInputs(Protocol):
    """Run inputs, byte for byte: an input never changes, so the first stored copy wins."""

    async def get(self, run_id: str) -> StoredInput | None:
        """The entry, None if there is none."""

    async def put(self, entry: StoredInput) -> None:
        """Store an entry unless one exists; return only once it is durable."""

    async def put_many(self, entries: Iterable[StoredInput]) -> int:
        """Store entries in one transaction (all or none); return how many were new."""

    def scan(self, run_ids: Sequence[str] = ()) -> AsyncIterator[StoredInput]:
        """Every entry (or those named), in run_id order."""

    async def stats(self) -> CacheStats:
        """Entries, bytes, oldest and newest."""


class FinalAnswers(Protocol):
    """Answers about a run that never change once given (a result, a finished run's object),
    byte for byte: the first stored copy wins."""

    async def get(self, kind: AnswerKind, run_id: str, beta: str) -> StoredAnswer | None:
        """The answer, None if there is none."""

    async def put(self, answer: StoredAnswer) -> None:
        """Store an answer unless one exists; return only once it is durable."""

    async def put_many(self, answers: Iterable[StoredAnswer]) -> int:
        """Store answers in one transaction (all or none), each unless one exists; return how
        many were new."""

    def scan(self, run_ids: Sequence[str] = ()) -> AsyncIterator[StoredAnswer]:
        """Every answer (or those of the runs named), in run_id, kind and beta order."""

    async def has_run(self, run_id: str) -> bool:
        """Whether any answer about `run_id` is stored."""

    async def stats(self) -> dict[AnswerKind, CacheStats]:
        """Entries, bytes, oldest and newest, for each kind."""


class Recordings(Protocol):
    """Recorded creates (record and replay): a match hash, field hashes and the run a create
    made, never its body; several runs may be recorded for one match. A purge of a run takes
    its recordings."""

    async def put(self, recording: Recording) -> bool:
        """Store one recording unless it is there (same app, match and run): what a recorded
        create writes, and what an import of recordings calls for each one. Whether it is new."""

    async def matching(self, match_hash: str, app: str | None = None) -> list[Recording]:
        """The recordings of one match (only `app`'s when given), newest first."""

    async def list_recordings(
        self, app: str | None = None, limit: int | None = None
    ) -> list[Recording]:
        """Every recording (only `app`'s when given; at most `limit`), newest first: what an
        export of recordings reads, and the pool a replay miss finds the nearest in."""

    async def has_run(self, run_id: str) -> bool:
        """Whether any recording names `run_id`."""


class Purges(Protocol):
    """Removing runs (their inputs and final answers), each removal recorded so that other
    processes drop them too."""

    async def purge(self, run_ids: Sequence[str] | None) -> int:
        """Remove the runs named (None: all) and record the purge; return how many runs had
        anything removed."""

    async def purges_since(self, seq: int) -> list[Purge]:
        """Purges recorded after `seq`, oldest first."""

    async def last_purge(self) -> int:
        """The sequence number of the last purge recorded (0: none)."""


class AppKeys(Protocol):
    """Apps and their keys, by hash."""

    async def create(self, key: NewKey) -> bool:
        """Store a new app's key; False, storing nothing, if the name is taken."""

    async def get(self, name: str) -> AppKey | None:
        """App `name`, None if there is none."""

    async def list_apps(self) -> list[AppKey]:
        """Every app, by name."""

    async def update(self, name: str, changes: KeyChanges) -> None:
        """Set what `changes` names on app `name`, in one write."""

    async def rotate(
        self, name: str, key_hash: str, prefix: str, at: str, old_retires_at: str
    ) -> None:
        """Give app `name` a new key made `at`; its key until now keeps opening until
        `old_retires_at`. A revoked app becomes active again, every key it had staying dead."""

    async def revoke(self, name: str, at: str) -> bool:
        """Revoke app `name`'s key and those it replaced; False if it was already revoked."""

    async def delete_revoked(self, name: str) -> Deleted:
        """Remove revoked app `name`: its keys, replaced ones included, and its run records."""

    async def key_states(self) -> dict[str, KeyState]:
        """Each key's hash, replaced keys' included, to its app and state."""

    async def record_last_used(self, names: set[str], at: str) -> None:
        """The apps `names` were last seen `at`."""


class RunAccess(Protocol):
    """Which app may read which run (isolation mode "app"): as its creator or by a grant."""

    async def record_created(self, app: str, ids: Sequence[str], at: str) -> None:
        """`app` created `ids` (a record already there is kept)."""

    async def grant(self, run_id: str, app: str, at: str) -> bool:
        """Let `app` read `run_id`; False if it already could."""

    async def may_read(self, app: str, ids: Iterable[str]) -> bool:
        """Whether `app` has a record of every id given."""

    async def list_records(self, app: str | None = None) -> list[Access]:
        """Every record (only `app`'s when given), by app, then time, then id."""

    async def revoke(self, run_id: str, app: str) -> str | None:
        """Remove `app`'s record of `run_id`; which it was ("granted", "created"), or None."""


class FetchLeases(Protocol):
    """Which replica fetches a cold run: a lease per run, held until a time (POSIX seconds)."""

    async def take(self, run_id: str, owner: str, now: float, until: float) -> bool:
        """Hold `run_id`'s lease until `until`, unless the run is stored or another owner
        holds the lease past `now`."""

    async def renew(self, run_id: str, owner: str, until: float) -> bool:
        """Hold it longer; False if `owner` no longer holds it."""

    async def release(self, run_id: str, owner: str) -> None:
        """Let it go, if `owner` holds it."""


class ReplicaUsage(Protocol):
    """Each replica's admitted and open calls per app, for limits that hold across replicas."""

    async def exchange(
        self, replica: str, mine: Sequence[Usage], now: float, since: float
    ) -> list[Usage]:
        """Record `replica`'s figures as of `now` (POSIX seconds); return the other replicas'
        that were recorded at `since` or later."""

    async def leave(self, replica: str) -> None:
        """Remove `replica`'s figures (it is stopping)."""


class BillingCalls(Protocol):
    """Billable calls and saved calls per app, UTC day, kind and processor: aggregates, added to
    (never a row per call), by every process sharing the store."""

    async def add(self, counts: Sequence[CallCount]) -> None:
        """Add each count to its row (made at zero if there is none), all in one transaction."""

    async def counts(self, since: str, until: str, app: str | None = None) -> list[CallCount]:
        """The rows of days `since` to `until` (YYYY-MM-DD, both included), only `app`'s when
        given; by day, app, kind, then processor."""


class Transfer(Protocol):
    """Every row of the store, table by table, for copying it to another backend."""

    tables: tuple[str, ...]  # in the order to copy them

    async def count(self, table: str) -> int:
        """How many rows `table` holds."""

    def pages(self, table: str) -> AsyncIterator[list[tuple[Any, ...]]]:
        """Its rows, a page at a time, in key order."""

    async def add(self, table: str, rows: list[tuple[Any, ...]]) -> int:
        """Add the rows not already there; how many were added."""


class StorageStatus(Protocol):
    """What readiness asks of the store."""

    async def missing_migrations(self) -> list[int]:
        """The versions of the migrations this code ships that the store has not applied."""

    async def check_writable(self) -> None:
        """Commit a write that changes nothing; StoreError if the store cannot take one."""


@dataclass(frozen=True, slots=True)
class Storage:
    """An open store: one attribute per protocol, and close."""

    run_inputs: RunInputs
    final_answers: FinalAnswers
    purges: Purges
    recordings: Recordings
    app_keys: AppKeys
    run_access: RunAccess
    status: StorageStatus
    transfer: Transfer
    billing_calls: BillingCalls
    # Replicas sharing the store take turns fetching a cold run, share their usage for limits,
    # and hear of each other's changes as they commit (`watch_changes(on_change)` runs until
    # cancelled, calling on_change with a table's name, or "*" for all of them). None where
    # one machine serves alone (SQLite: its own single flight and polling are enough).
    shared: bool
    fetch_leases: FetchLeases | None
    replica_usage: ReplicaUsage | None
    watch_changes: Callable[[Callable[[str], None]], Coroutine[Any, Any, None]] | None
    applied_migrations: list[str]  # what opening it applied, by name
    close: Callable[[], Awaitable[None]]

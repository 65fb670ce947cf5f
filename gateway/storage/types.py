"""The values that cross the storage protocols, and the errors a store raises."""

from __future__ import annotations

import enum
from dataclasses import dataclass

# What a change announcement names when every table may have changed (after a reconnect).
EVERYTHING = "*"


class StoreError(Exception):
    """The store failed to read or write; `kind` says why: read-only, disk-full, io, corrupt,
    busy, cannot-open or other."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


class StorageError(Exception):
    """The store cannot be opened or migrated."""


@dataclass(frozen=True, slots=True)
class StoredInput:
    run_id: str
    body: bytes
    stored_at: str  # RFC 3339, UTC


class AnswerKind(enum.Enum):
    """A final answer's kind: a 200 of GET /v1/tasks/runs/{id}/result, a run object
    (GET /v1/tasks/runs/{id}) whose status is final, or a finished run's event stream
    (GET /v1/tasks/runs/{id}/events) that ended with a final task_run.state."""

    RESULT = "result"
    RUN = "run"
    EVENTS = "events"


@dataclass(frozen=True, slots=True)
class StoredAnswer:
    """A final answer, byte for byte, under its run and its normalised parallel-beta set."""

    kind: AnswerKind
    run_id: str
    beta: str  # the normalised set (cache/policy.py: beta_set); "" for none
    body: bytes
    stored_at: str  # RFC 3339, UTC


@dataclass(frozen=True, slots=True)
class CacheStats:
    entries: int
    bytes: int
    oldest_stored_at: str | None
    newest_stored_at: str | None


@dataclass(frozen=True, slots=True)
class Purge:
    """One purge: the run ids removed, or None when the whole cache was emptied."""

    seq: int
    run_ids: list[str] | None


class ReplayMode(enum.Enum):
    """What an app's creates do with recordings (keys --replay): off (every create goes
    upstream), record (upstream, recorded), replay (a finished recording answers, a miss goes
    upstream and is recorded), replay-only (as replay, but a miss never goes upstream)."""

    OFF = "off"
    RECORD = "record"
    REPLAY = "replay"
    REPLAY_ONLY = "replay-only"


@dataclass(frozen=True, slots=True)
class Recording:
    """A recorded create: its match hash and field hashes (cache/match_key.py), the run it
    made, never its body."""

    app: str
    match_hash: str
    fields: dict[str, str]  # field path -> hash of its canonical value
    run_id: str
    recorded_at: str  # RFC 3339, UTC


@dataclass(frozen=True, slots=True)
class AppKey:
    """An app and its key, as stored (the key itself never is: only its hash and prefix)."""

    name: str
    prefix: str
    created_at: str
    last_used_at: str | None
    revoked_at: str | None
    allow: list[str] | None = None  # route rules; None: every route
    rate: float | None = None  # requests per second; None: no limit
    burst: int | None = None
    expires_at: str | None = None  # None: never
    max_open: int | None = None  # calls open at once; None: no cap
    replay: ReplayMode = ReplayMode.OFF
    budget_usd: float | None = None  # estimated spend per budget_per; None: no cap
    budget_per: str | None = None  # "day", "week" or "month" (UTC)

    def status(self, now: str) -> str:
        if self.revoked_at:
            return "revoked"
        return "expired" if self.expires_at is not None and self.expires_at <= now else "active"


@dataclass(frozen=True, slots=True)
class NewKey:
    """An app's key to store: its hash, never the key."""

    name: str
    key_hash: str
    prefix: str
    created_at: str
    allow: list[str] | None = None
    rate: float | None = None
    burst: int | None = None
    expires_at: str | None = None
    max_open: int | None = None
    replay: ReplayMode = ReplayMode.OFF
    budget_usd: float | None = None
    budget_per: str | None = None


@dataclass(frozen=True, slots=True)
class KeyState:
    """What authentication needs of a key: its app, and whether it still opens anything."""

    name: str
    revoked: bool
    expires: float | None  # POSIX seconds; None: never
    retires: float | None = None  # a key replaced by `keys rotate`: when it stops; POSIX seconds


class Keep(enum.Enum):
    KEEP = "keep"


KEEP = Keep.KEEP


@dataclass(frozen=True, slots=True)
class KeyChanges:
    """The fields of an app's key to set: one left at KEEP stays as it is; None clears it."""

    allow: list[str] | Keep | None = KEEP
    rate: float | Keep | None = KEEP
    burst: int | Keep | None = KEEP
    expires_at: str | Keep | None = KEEP
    max_open: int | Keep | None = KEEP
    replay: ReplayMode | Keep = KEEP
    budget_usd: float | Keep | None = KEEP
    budget_per: str | Keep | None = KEEP


@dataclass(frozen=True, slots=True)
class Deleted:
    keys: int  # the app's key and the keys rotation replaced
    runs: int  # its records of runs created or granted


@dataclass(frozen=True, slots=True)
class Access:
    """One ownership record: `app` may read `id`, as its creator or by a grant."""

    id: str
    app: str
    how: str  # "created" or "granted"
    at: str


@dataclass(frozen=True, slots=True)
class Usage:
    """What one replica has let one app do: calls admitted since it began counting them (at
    `started`, POSIX seconds: when it started, or later, when it loaded the app's first
    limit), and open now."""

    replica: str
    app: str
    taken: int
    open: int
    started: float = 0.0


@dataclass(frozen=True, slots=True)
class CallCount:
    """Billable calls one app made upstream, and calls the gateway saved it, on one UTC day, of
    one kind ("task_run", "search", ...) and processor (None where a kind has none)."""

    app: str
    day: str  # YYYY-MM-DD, UTC
    kind: str
    processor: str | None
    calls: int
    saved_calls: int

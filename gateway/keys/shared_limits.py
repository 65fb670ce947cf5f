"""Rate limits and open-call caps across replicas: what the others did, as this one must count it.

Each replica keeps its own token buckets and open-call counts, so a call never waits on the
database. Every exchange interval it publishes, per app, the calls it has admitted since it
began counting them (since it started, or since it loaded the app's first limit, whichever is
later) and the calls it holds open, and reads the other replicas' figures. Tokens the others
took since its last look are taken from its own buckets too (a bucket may go below zero: the
excess is paid back before the next call), and the others' open calls count against each
app's cap. So each replica's buckets follow the app's use everywhere, late by at most one
interval: across all replicas, an app gets at most its limit plus what the other replicas
admit in one interval, which is at most (replicas - 1) x (burst + rate x interval). Pure.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from ..storage.types import Usage

# A replica whose figures are older than this many exchange intervals (and at least STALE_MIN
# seconds) is taken for gone: its open calls no longer count.
STALE_INTERVALS = 8
STALE_MIN = 2.0


@dataclass(frozen=True, slots=True)
class PeerTotals:
    taken: dict[str, int]  # per app: calls the other replicas admitted since the last look
    open: dict[str, int]  # per app: calls the other replicas hold open now


@dataclass
class Peers:
    """What this replica (started at `started`, POSIX seconds) has seen of the others'
    counts, to tell what is new in the next."""

    started: float
    _seen: dict[tuple[str, str], int] = field(default_factory=dict)

    def absorb(self, rows: Iterable[Usage]) -> PeerTotals:
        """The totals new since the last call. A row seen for the first time is charged all
        it counts if its counting began after this one started (it all happened in this one's
        time), else nothing of its past; one no longer in `rows` is forgotten."""
        taken: dict[str, int] = {}
        open_calls: dict[str, int] = {}
        seen: dict[tuple[str, str], int] = {}
        for usage in rows:
            key = (usage.replica, usage.app)
            before = self._seen.get(key)
            if before is None:
                before = 0 if usage.started >= self.started else usage.taken
            if usage.taken > before:
                taken[usage.app] = taken.get(usage.app, 0) + usage.taken - before
            seen[key] = usage.taken
            if usage.open > 0:
                open_calls[usage.app] = open_calls.get(usage.app, 0) + usage.open
        self._seen = seen
        return PeerTotals(taken, open_calls)

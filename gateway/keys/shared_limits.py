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

from collections.abc import Container, Iterable
from dataclasses import dataclass, field

from ..storage.types import Usage

# A replica whose figures are older than this many exchange intervals (and at least STALE_MIN
# seconds) is taken for gone: its open calls no longer count.
STALE_INTERVALS = 8
STALE_MIN = 2.0
# How many rows gone from view are remembered (replica ids are new with each process).
REMEMBERED = 10_000


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
    # Rows seen once and gone since (stale, or their limit taken away), oldest first.
    _gone: dict[tuple[str, str], None] = field(default_factory=dict)

    def absorb(self, rows: Iterable[Usage], limited: Container[str]) -> PeerTotals:
        """The totals new since the last call, for the apps this replica rate-limits
        (`limited`); open calls for every app. A row seen for the first time is charged all it
        counts if its counting began after this one started (it all happened in this one's
        time), else nothing of its past. A row seen before that comes back after a gap is
        charged only from its return. A row of an app not limited here is left unseen until it
        is: its calls would be charged to no bucket."""
        taken: dict[str, int] = {}
        open_calls: dict[str, int] = {}
        seen: dict[tuple[str, str], int] = {}
        for usage in rows:
            if usage.open > 0:
                open_calls[usage.app] = open_calls.get(usage.app, 0) + usage.open
            if usage.app not in limited:
                continue
            key = (usage.replica, usage.app)
            before = self._seen.get(key)
            if before is None:
                if key in self._gone:  # back after a gap: charged from its return
                    del self._gone[key]
                    before = usage.taken
                else:
                    before = 0 if usage.started >= self.started else usage.taken
            if usage.taken > before:
                taken[usage.app] = taken.get(usage.app, 0) + usage.taken - before
            seen[key] = usage.taken
        for key in self._seen.keys() - seen.keys():
            self._gone[key] = None
        while len(self._gone) > REMEMBERED:
            del self._gone[next(iter(self._gone))]
        self._seen = seen
        return PeerTotals(taken, open_calls)

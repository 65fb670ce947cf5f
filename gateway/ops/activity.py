"""What `parallel-gateway status` shows: recent requests per app, and the last upstream errors.

Counts come from the request counter /metrics exposes, snapshotted once a minute off the
request path, so the summary costs a hit nothing; the window is the difference between now
and the oldest snapshot kept (WINDOW_MINUTES).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

from ..timestamps import rfc3339

WINDOW_MINUTES = 5
SNAPSHOT_INTERVAL = 60.0
RECENT_ERRORS = 10
KINDS = ("requests", "hits", "misses", "errors")
Totals = dict[tuple[str, str], float]  # (app, kind) -> count since the process started


def totals_of(samples: Iterable[tuple[Mapping[str, str], float]]) -> Totals:
    """Requests, hits, misses and errors per app, from gateway_requests_total samples. Pure."""
    totals: Totals = {}
    for labels, value in samples:
        app, cache = labels.get("app") or "(no key)", labels.get("cache", "")
        kinds = ["requests"]
        if cache == "hit":
            kinds.append("hits")
        elif cache.startswith("fwd=uri-miss"):
            kinds.append("misses")
        if int(labels.get("status", "0")) >= 400:
            kinds.append("errors")
        for kind in kinds:
            totals[app, kind] = totals.get((app, kind), 0.0) + value
    return totals


@dataclass(frozen=True, slots=True)
class UpstreamErrorNote:
    at: str
    status: int
    ref_id: str
    route: str
    run_id: str | None
    message: str | None


class Activity:
    """Snapshots of the request totals, and the last few upstream errors, of one process."""

    def __init__(self, now: float | None = None) -> None:
        self._snapshots: deque[tuple[float, Totals]] = deque(maxlen=WINDOW_MINUTES + 1)
        self._errors: deque[UpstreamErrorNote] = deque(maxlen=RECENT_ERRORS)
        self.snapshot({}, now)  # nothing had happened at start

    def snapshot(self, totals: Totals, now: float | None = None) -> None:
        self._snapshots.append((time.time() if now is None else now, totals))

    def upstream_error(
        self, status: int, ref_id: str, route: str, run_id: str | None, message: str | None
    ) -> None:
        at = rfc3339(datetime.now(UTC))
        self._errors.append(UpstreamErrorNote(at, status, ref_id, route, run_id, message))

    def summary(self, totals: Totals, now: float | None = None) -> dict[str, object]:
        """Per app, what happened since the oldest snapshot kept."""
        now = time.time() if now is None else now
        since, before = self._snapshots[0]
        per_app = {
            app: {
                kind: round(totals.get((app, kind), 0) - before.get((app, kind), 0))
                for kind in KINDS
            }
            for app in sorted({app for app, _ in totals})
        }
        return {
            "since": rfc3339(datetime.fromtimestamp(since, UTC)),
            "window_seconds": round(now - since),
            "apps": {app: counts for app, counts in per_app.items() if counts["requests"]},
            "upstream_errors": [asdict(note) for note in reversed(self._errors)],
        }

"""Once per key per interval: a count of how often something happened, in place of a log line
each time. Pure: the clock is passed in."""

from __future__ import annotations

import time
from collections.abc import Callable

# How often a repeated error is logged, at most: a fault that fails every request (a full disk
# logged 24 MB of tracebacks for 15,000 misses) gets one line a minute, with its count.
LOG_INTERVAL = 60.0


class Throttle:
    """Says when to report an occurrence of a key: the first at once, then at most one report
    per `interval` seconds, each counting the occurrences held back since the last one."""

    def __init__(self, interval: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval = interval
        self._clock = clock
        self._reported_at: dict[str, float] = {}
        self._held: dict[str, int] = {}

    def count(self, key: str) -> int | None:
        """Count one occurrence of `key`: how many to report now (this one included), or None
        to hold it back."""
        held = self._held.get(key, 0) + 1
        now = self._clock()
        last = self._reported_at.get(key)
        if last is not None and now - last < self.interval:
            self._held[key] = held
            return None
        self._reported_at[key] = now
        self._held[key] = 0
        return held

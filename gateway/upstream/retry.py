"""Retry policy for idempotent upstream calls: pure decisions, no I/O."""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC
from email.utils import parsedate_to_datetime

# 429 asks us to slow down; 502/503/504 come from proxies or overload in front of the API.
# Any other status is an answer, returned to the app as it is.
RETRY_STATUSES = frozenset({429, 502, 503, 504})
# What the SDK retries on its own (besides a broken connection), unless told not to.
SDK_RETRY_STATUSES = frozenset({408, 409, 429, *range(500, 600)})
# RFC 9110 section 9.2.2: a request with one of these methods may be sent again. The SDK sends
# any method again after a 408, 409, 429, 5xx or a broken connection, a POST that creates a
# run included: the gateway must not give it that reason where Parallel may have the request.
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_attempts: int
    backoff_initial: float
    backoff_max: float
    retry_after_cap: float
    rand: Callable[[], float] = random.random

    def next_delay(
        self,
        attempt: int,
        remaining: float,
        status: int | None = None,
        headers: Mapping[str, str] | None = None,
        now: float | None = None,
    ) -> float | None:
        """Seconds to wait before attempt `attempt + 1`, or None to stop.

        `status` is None after a connection error. `remaining` is what is left of the deadline.
        """
        if attempt >= self.max_attempts:
            return None
        if status is not None and status not in RETRY_STATUSES:
            return None
        if headers is not None and headers.get("x-should-retry") == "false":
            return None  # upstream's own word that a retry cannot help
        requested = server_delay(headers, now) if headers is not None else None
        if requested is not None:
            if requested > self.retry_after_cap:
                return None
            delay = requested
        else:
            # Equal jitter: at least half the exponential step, so retries do spread out.
            step = min(self.backoff_max, self.backoff_initial * 2 ** (attempt - 1))
            delay = step * (0.5 + self.rand() / 2)
        return delay if delay < remaining else None


def server_delay(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """The wait a response asks for: `retry-after-ms`, else `retry-after` (RFC 9110 10.2.3)."""
    ms = headers.get("retry-after-ms")
    if ms is not None:
        try:
            value = float(ms) / 1000
        except ValueError:
            value = -1
        if value >= 0:
            return value
    after = headers.get("retry-after")
    if after is None:
        return None
    after = after.strip()
    if after.isascii() and after.isdigit():
        return float(after)
    try:
        when = parsedate_to_datetime(after)
    except (TypeError, ValueError, OverflowError):
        return None
    if when.tzinfo is None:  # "-0000" means UTC with no zone given (RFC 5322 3.3)
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - (time.time() if now is None else now))

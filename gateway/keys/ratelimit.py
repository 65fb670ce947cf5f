"""Per-app rate limits: a token bucket per key, as pure policy (the clock is passed in)."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Limit:
    """`rate` requests per second on average, up to `burst` at once."""

    rate: float
    burst: int


class TokenBucket:
    """Holds up to `burst` tokens, refilled at `rate` per second; a request takes one."""

    __slots__ = ("_tokens", "_updated", "limit")

    def __init__(self, limit: Limit, now: float) -> None:
        self.limit = limit
        self._tokens = float(limit.burst)
        self._updated = now

    def take(self, now: float) -> float:
        """Take a token and return 0.0, or return the seconds until one will be there."""
        self._refill(now)
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return 0.0
        return (1.0 - self._tokens) / self.limit.rate

    def debit(self, tokens: int, now: float) -> None:
        """Take `tokens` that calls elsewhere (other replicas) used; the bucket may go below
        zero, and refills from there."""
        self._refill(now)
        self._tokens -= tokens

    def with_limit(self, limit: Limit, now: float) -> TokenBucket:
        """This bucket under a changed limit: what it holds is kept, up to the new burst."""
        self._refill(now)
        bucket = TokenBucket(limit, now)
        bucket._tokens = min(float(limit.burst), self._tokens)
        return bucket

    def _refill(self, now: float) -> None:
        elapsed = max(0.0, now - self._updated)  # a clock that steps back refills nothing
        self._updated = now
        self._tokens = min(float(self.limit.burst), self._tokens + elapsed * self.limit.rate)


def retry_after_headers(wait: float) -> dict[str, str]:
    """Headers telling a client when to retry: `retry-after` in whole seconds (RFC 9110
    section 10.2.3), rounded up, and `retry-after-ms`, which the official SDK reads first."""
    millis = max(1, math.ceil(wait * 1000))
    return {"retry-after": str(math.ceil(millis / 1000)), "retry-after-ms": str(millis)}

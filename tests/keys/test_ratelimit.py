"""The rate-limit policy with no server: token buckets, retry-after, limits and expiry parsing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson
import pytest

from gateway.errors import RateLimitedError
from gateway.keys.app_keys import (
    AppKeyError,
    hash_key,
    parse_expiry,
    parse_grace,
    parse_limit,
)
from gateway.keys.keyring import KeyRing
from gateway.keys.ratelimit import Limit, TokenBucket, retry_after_headers
from gateway.storage.types import KeyState

KEY = "pgw_limited0000000000000000000000000000000000"


def takes(bucket: TokenBucket, *times: float) -> list[float]:
    return [round(bucket.take(t), 9) for t in times]


def test_a_bucket_allows_its_burst_then_one_request_per_refill() -> None:
    bucket = TokenBucket(Limit(rate=2.0, burst=3), now=100.0)
    assert takes(bucket, 100.0, 100.0, 100.0, 100.0) == [0.0, 0.0, 0.0, 0.5]
    assert takes(bucket, 100.25) == [0.25]  # half a token has come back
    assert takes(bucket, 100.5, 100.5) == [0.0, 0.5]


def test_a_bucket_refills_no_further_than_its_burst() -> None:
    bucket = TokenBucket(Limit(rate=10.0, burst=2), now=0.0)
    assert takes(bucket, 0.0, 0.0) == [0.0, 0.0]
    assert takes(bucket, 3600.0, 3600.0, 3600.0) == [0.0, 0.0, 0.1]


def test_a_denied_request_takes_nothing() -> None:
    bucket = TokenBucket(Limit(rate=1.0, burst=1), now=0.0)
    assert takes(bucket, 0.0, 0.0, 0.0, 0.5, 1.0) == [0.0, 1.0, 1.0, 0.5, 0.0]


def test_a_clock_that_steps_back_refills_nothing() -> None:
    bucket = TokenBucket(Limit(rate=1.0, burst=1), now=50.0)
    assert takes(bucket, 50.0, 10.0, 10.5) == [0.0, 1.0, 0.5]


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        pytest.param(Limit(1.0, 10), Limit(1.0, 4), [0.0] * 4 + [1.0], id="smaller-burst-caps"),
        pytest.param(Limit(1.0, 2), Limit(1.0, 10), [0.0] * 2 + [1.0], id="bigger-burst-waits"),
        pytest.param(Limit(1.0, 2), Limit(4.0, 2), [0.0] * 2 + [0.25], id="faster-rate"),
    ],
)
def test_a_changed_limit_keeps_what_the_bucket_holds(
    old: Limit, new: Limit, expected: list[float]
) -> None:
    bucket = TokenBucket(old, now=0.0).with_limit(new, now=0.0)
    assert bucket.limit == new
    assert takes(bucket, *[0.0] * len(expected)) == expected


@pytest.mark.parametrize(
    ("wait", "after", "after_ms"),
    [
        (0.0000001, "1", "1"),
        (0.05, "1", "50"),
        (0.2001, "1", "201"),
        (1.0, "1", "1000"),
        (1.0004, "2", "1001"),
        (100.0, "100", "100000"),
    ],
)
def test_retry_after_rounds_up_so_a_retry_is_never_early(
    wait: float, after: str, after_ms: str
) -> None:
    assert retry_after_headers(wait) == {"retry-after": after, "retry-after-ms": after_ms}


def keyring(clock: list[float]) -> KeyRing:
    ring = KeyRing({hash_key(KEY): KeyState("billing", False, None)}, clock=lambda: clock[0])
    ring.set_limits({"billing": Limit(rate=0.5, burst=2)})
    return ring


def test_throttle_refuses_with_429_in_the_error_shape_and_retry_after() -> None:
    clock = [0.0]
    ring = keyring(clock)
    ring.throttle("billing")
    ring.throttle("billing")
    ring.throttle("other-app")  # no limit: never refused
    with pytest.raises(RateLimitedError) as e:
        ring.throttle("billing")
    message = (
        "Rate limit exceeded: app 'billing' may make 0.5 requests per second (bursts of 2); "
        "retry in 2.000 s."
    )
    assert (e.value.status, e.value.reason, e.value.message) == (429, "rate-limited", message)
    assert e.value.headers == {"retry-after": "2", "retry-after-ms": "2000"}
    assert orjson.loads(e.value.body()) == {
        "type": "error",
        "error": {"ref_id": e.value.ref_id, "message": message, "detail": None},
    }
    clock[0] = 2.0
    ring.throttle("billing")


def test_reloading_the_same_limits_keeps_each_bucket_and_dropping_one_lifts_it() -> None:
    clock = [0.0]
    ring = keyring(clock)
    ring.throttle("billing")
    ring.throttle("billing")
    ring.set_limits({"billing": Limit(rate=0.5, burst=2)})  # what each refresh does
    with pytest.raises(RateLimitedError):
        ring.throttle("billing")
    ring.set_limits({})
    for _ in range(100):
        ring.throttle("billing")


@pytest.mark.parametrize(
    ("rate", "burst", "expected"),
    [
        (None, None, None),
        (5.0, None, Limit(5.0, 5)),
        (0.1, None, Limit(0.1, 1)),
        (2.5, 10, Limit(2.5, 10)),
    ],
)
def test_parse_limit(rate: float | None, burst: int | None, expected: Limit | None) -> None:
    assert parse_limit(rate, burst) == expected


@pytest.mark.parametrize(
    ("rate", "burst", "message"),
    [
        (None, 5, "--burst needs --rate: a burst is the size of a rate's bucket."),
        (0.0, None, "Rate 0.0 is not valid: use requests per second, above 0."),
        (-1.0, None, "Rate -1.0 is not valid: use requests per second, above 0."),
        (float("nan"), None, "Rate nan is not valid: use requests per second, above 0."),
        (float("inf"), None, "Rate inf is not valid: use requests per second, above 0."),
        (5.0, 0, "Burst 0 is not valid: use a whole number from 1."),
    ],
)
def test_parse_limit_refuses(rate: float | None, burst: int | None, message: str) -> None:
    with pytest.raises(AppKeyError) as e:
        parse_limit(rate, burst)
    assert str(e.value) == message


NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("45s", datetime(2026, 11, 22, 12, 0, 45, tzinfo=UTC)),
        ("90m", datetime(2026, 11, 22, 13, 30, tzinfo=UTC)),
        ("12h", datetime(2026, 11, 23, 0, 0, tzinfo=UTC)),
        ("30d", datetime(2026, 12, 22, 12, 0, tzinfo=UTC)),
        ("2w", datetime(2026, 12, 6, 12, 0, tzinfo=UTC)),
    ],
)
def test_parse_expiry(text: str, expected: datetime) -> None:
    assert parse_expiry(text, NOW) == expected


@pytest.mark.parametrize("text", ["", "30", "d", "-1d", "1.5d", "30 d", "30D", "1y", "x1d", "01d"])
def test_parse_expiry_refuses(text: str) -> None:
    with pytest.raises(AppKeyError) as e:
        parse_expiry(text, NOW)
    assert str(e.value) == (
        f"Expiry {text!r} is not valid: use a whole number and a unit, such as 90m, 12h, 30d "
        "or 8w (s, m, h, d, w)."
    )


@pytest.mark.parametrize("text", ["0d", "0s", "0w"])
def test_parse_expiry_refuses_zero_as_zero(text: str) -> None:
    with pytest.raises(AppKeyError) as e:
        parse_expiry(text, NOW)
    assert str(e.value) == (
        f"Expiry {text!r} is not valid: 0 is not allowed, as the key would never work; give a "
        "count from 1 (or stop a key now with keys revoke)."
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [("0", timedelta(0)), ("0s", timedelta(0)), ("90m", timedelta(minutes=90)),
     ("2w", timedelta(weeks=2))],
)  # fmt: skip
def test_parse_grace(text: str, expected: timedelta) -> None:
    assert parse_grace(text) == expected


@pytest.mark.parametrize("text", ["", "5", "-1h", "1.5h", "1y"])
def test_parse_grace_refuses(text: str) -> None:
    with pytest.raises(AppKeyError) as e:
        parse_grace(text)
    assert str(e.value) == (
        f"Grace {text!r} is not valid: use a whole number and a unit, such as 90m, 12h, 30d "
        "or 8w (s, m, h, d, w)."
    )

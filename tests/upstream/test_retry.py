"""Retry decisions for idempotent upstream calls: statuses, backoff, jitter, Retry-After."""

from __future__ import annotations

import calendar
import random
import time
from collections.abc import Callable, Iterator

import pytest
from multidict import CIMultiDict, CIMultiDictProxy

from gateway.upstream.retry import RETRY_STATUSES, RetryPolicy, server_delay

# Wed, 21 Oct 2015 07:28:00 GMT, the clock for HTTP-date Retry-After values.
NOW = float(calendar.timegm((2015, 10, 21, 7, 28, 0)))
PLENTY = 1000.0


def no_jitter_expected() -> float:
    raise AssertionError("backoff was used where the server's delay should have been")


def policy(
    *,
    max_attempts: int = 4,
    backoff_initial: float = 0.25,
    backoff_max: float = 4.0,
    retry_after_cap: float = 10.0,
    rand: Callable[[], float] = lambda: 1.0,
) -> RetryPolicy:
    return RetryPolicy(
        max_attempts=max_attempts,
        backoff_initial=backoff_initial,
        backoff_max=backoff_max,
        retry_after_cap=retry_after_cap,
        rand=rand,
    )


def test_retry_statuses() -> None:
    assert frozenset({429, 502, 503, 504}) == RETRY_STATUSES


@pytest.mark.parametrize(
    "status",
    [
        pytest.param(s, id=str(s))
        for s in (200, 201, 204, 301, 304, 400, 401, 403, 404, 408, 409, 422, 500, 501, 505)
    ],
)
def test_answers_are_not_retried(status: int) -> None:
    assert policy().next_delay(1, PLENTY, status) is None


@pytest.mark.parametrize(
    "status",
    [pytest.param(s, id=str(s)) for s in (429, 502, 503, 504)]
    + [pytest.param(None, id="connection-error")],
)
def test_transient_failures_are_retried(status: int | None) -> None:
    assert policy().next_delay(1, PLENTY, status) == 0.25


def test_retry_after_on_a_non_retryable_status_is_ignored() -> None:
    assert policy().next_delay(1, PLENTY, 500, {"retry-after": "1"}) is None


@pytest.mark.parametrize(
    ("max_attempts", "attempt", "expected"),
    [
        pytest.param(4, 1, 0.25, id="first-of-4"),
        pytest.param(4, 3, 1.0, id="third-of-4"),
        pytest.param(4, 4, None, id="fourth-of-4"),
        pytest.param(4, 5, None, id="past-the-max"),
        pytest.param(1, 1, None, id="single-attempt"),
        pytest.param(2, 1, 0.25, id="first-of-2"),
    ],
)
def test_max_attempts(max_attempts: int, attempt: int, expected: float | None) -> None:
    p = policy(max_attempts=max_attempts)
    assert p.next_delay(attempt, PLENTY, 503) == expected
    assert p.next_delay(attempt, PLENTY, None) == expected


@pytest.mark.parametrize(
    ("attempt", "full", "half"),
    [
        pytest.param(1, 0.25, 0.125, id="1"),
        pytest.param(2, 0.5, 0.25, id="2"),
        pytest.param(3, 1.0, 0.5, id="3"),
        pytest.param(4, 2.0, 1.0, id="4"),
        pytest.param(5, 4.0, 2.0, id="5-reaches-max"),
        pytest.param(6, 4.0, 2.0, id="6-capped"),
        pytest.param(20, 4.0, 2.0, id="20-capped"),
    ],
)
def test_backoff_doubles_and_is_capped(attempt: int, full: float, half: float) -> None:
    assert policy(max_attempts=100, rand=lambda: 1.0).next_delay(attempt, PLENTY) == full
    assert policy(max_attempts=100, rand=lambda: 0.0).next_delay(attempt, PLENTY) == half


@pytest.mark.parametrize(
    ("rand", "expected"),
    [
        pytest.param(0.0, 0.5, id="0.0-half-step"),
        pytest.param(0.25, 0.625, id="0.25"),
        pytest.param(0.5, 0.75, id="0.5"),
        pytest.param(0.75, 0.875, id="0.75"),
        pytest.param(1.0, 1.0, id="1.0-full-step"),
    ],
)
def test_equal_jitter(rand: float, expected: float) -> None:
    # attempt 3 with backoff_initial 0.25: a 1 s step.
    assert policy(rand=lambda: rand).next_delay(3, PLENTY, 503) == expected


def test_jitter_with_real_randomness_stays_within_half_and_full_step() -> None:
    p = policy(max_attempts=100, rand=random.Random(1234).random)
    delays = [p.next_delay(2, PLENTY, 502) for _ in range(500)]
    assert all(d is not None and 0.25 <= d <= 0.5 for d in delays)
    assert len(set(delays)) > 400  # it really is jittered


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        pytest.param({}, None, id="none"),
        pytest.param({"retry-after": "3"}, 3.0, id="seconds"),
        pytest.param({"retry-after": "0"}, 0.0, id="zero"),
        pytest.param({"retry-after": " 7 "}, 7.0, id="seconds-with-spaces"),
        pytest.param({"retry-after": "120"}, 120.0, id="beyond-any-cap"),
        pytest.param({"retry-after-ms": "1500"}, 1.5, id="ms"),
        pytest.param({"retry-after-ms": "0"}, 0.0, id="ms-zero"),
        pytest.param({"retry-after-ms": "250.5"}, 0.2505, id="ms-fractional"),
        pytest.param({"retry-after-ms": "1500", "retry-after": "3"}, 1.5, id="ms-preferred"),
        pytest.param({"retry-after-ms": "abc", "retry-after": "3"}, 3.0, id="ms-garbage"),
        pytest.param({"retry-after-ms": "", "retry-after": "3"}, 3.0, id="ms-empty"),
        pytest.param({"retry-after-ms": "-5", "retry-after": "3"}, 3.0, id="ms-negative"),
        pytest.param({"retry-after-ms": "nan", "retry-after": "3"}, 3.0, id="ms-nan"),
        pytest.param({"retry-after-ms": "abc"}, None, id="ms-garbage-alone"),
        pytest.param(
            {"retry-after": "Wed, 21 Oct 2015 07:28:05 GMT"}, 5.0, id="http-date-in-5-seconds"
        ),
        pytest.param({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}, 0.0, id="http-date-now"),
        pytest.param(
            {"retry-after": "Wed, 21 Oct 2015 07:27:00 GMT"}, 0.0, id="http-date-in-the-past"
        ),
        pytest.param(
            {"retry-after": "Wed, 21 Oct 2015 07:30:00 GMT"}, 120.0, id="http-date-in-2-minutes"
        ),
        pytest.param({"retry-after": ""}, None, id="empty"),
        pytest.param({"retry-after": "soon"}, None, id="word"),
        pytest.param({"retry-after": "-1"}, None, id="negative"),
        pytest.param({"retry-after": "5.5"}, None, id="fractional-seconds"),
        pytest.param({"retry-after": "0x10"}, None, id="hex"),
        pytest.param({"retry-after": "1e3"}, None, id="exponent"),
        pytest.param({"retry-after": "Mon, 99 Foo 2015"}, None, id="bad-date"),
    ],
)
def test_server_delay(headers: dict[str, str], expected: float | None) -> None:
    assert server_delay(headers, now=NOW) == expected


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        pytest.param({"retry-after": "3"}, 3.0, id="seconds"),
        pytest.param({"retry-after": "0"}, 0.0, id="zero"),
        pytest.param({"retry-after-ms": "1500", "retry-after": "3"}, 1.5, id="ms-preferred"),
        pytest.param({"retry-after": "Wed, 21 Oct 2015 07:28:08 GMT"}, 8.0, id="http-date"),
        pytest.param({"retry-after": "10"}, 10.0, id="exactly-at-cap"),
        pytest.param({"retry-after": "11"}, None, id="over-cap"),
        pytest.param({"retry-after-ms": "10001"}, None, id="ms-over-cap"),
        pytest.param({"retry-after-ms": "inf"}, None, id="ms-infinite"),
        pytest.param({"retry-after": "Wed, 21 Oct 2015 07:29:00 GMT"}, None, id="date-over-cap"),
    ],
)
def test_next_delay_honours_the_server(headers: dict[str, str], expected: float | None) -> None:
    p = policy(rand=no_jitter_expected)
    assert p.next_delay(1, PLENTY, 503, headers, now=NOW) == expected


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(v, id=repr(v))
        for v in ("", "soon", "-1", "5.5", "0x10", "1e3", "Mon, 99 Foo 2015", "3 seconds")
    ],
)
def test_garbage_retry_after_falls_back_to_backoff(value: str) -> None:
    assert policy().next_delay(2, PLENTY, 429, {"retry-after": value}, now=NOW) == 0.5


def test_no_headers_means_backoff() -> None:
    assert policy().next_delay(2, PLENTY, 503, {}, now=NOW) == 0.5
    assert policy().next_delay(2, PLENTY, 503, None) == 0.5


@pytest.mark.parametrize(
    ("headers", "remaining", "expected"),
    [
        pytest.param(None, 0.26, 0.25, id="backoff-fits"),
        pytest.param(None, 0.25, None, id="backoff-equals-remaining"),
        pytest.param(None, 0.1, None, id="backoff-too-long"),
        pytest.param(None, 0.0, None, id="deadline-reached"),
        pytest.param(None, -1.0, None, id="deadline-passed"),
        pytest.param({"retry-after": "3"}, 3.5, 3.0, id="retry-after-fits"),
        pytest.param({"retry-after": "3"}, 3.0, None, id="retry-after-equals-remaining"),
        pytest.param({"retry-after": "3"}, 2.0, None, id="retry-after-too-long"),
        pytest.param({"retry-after": "0"}, 0.5, 0.0, id="retry-after-zero"),
    ],
)
def test_delay_must_fit_the_deadline(
    headers: dict[str, str] | None, remaining: float, expected: float | None
) -> None:
    assert policy().next_delay(1, remaining, 503, headers, now=NOW) == expected


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("\u00b2", id="superscript-two"),
        pytest.param("\u0663", id="arabic-indic-three"),
        pytest.param("\uff13", id="fullwidth-three"),
        pytest.param("1\u00b2", id="ascii-then-superscript"),
    ],
)
def test_non_ascii_digit_retry_after_falls_back_to_backoff(value: str) -> None:
    # str.isdigit() accepts these, and float() then raised ValueError out of next_delay.
    assert server_delay({"retry-after": value}, now=NOW) is None
    assert policy().next_delay(2, PLENTY, 503, {"retry-after": value}, now=NOW) == 0.5


@pytest.fixture
def local_time_not_utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A local zone 5 hours behind UTC, so a zone-less date read as local time is 5 h off."""
    monkeypatch.setenv("TZ", "EST+5")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param("Wed, 21 Oct 2015 07:28:05 -0000", 5.0, id="minus-0000-in-5-seconds"),
        pytest.param("Wed, 21 Oct 2015 07:28:00 -0000", 0.0, id="minus-0000-now"),
        pytest.param("Wed, 21 Oct 2015 07:27:00 -0000", 0.0, id="minus-0000-in-the-past"),
        pytest.param("Wed, 21 Oct 2015 07:28:05 +0000", 5.0, id="plus-0000"),
        pytest.param("Wed, 21 Oct 2015 07:28:05 UT", 5.0, id="UT"),
        pytest.param("Wed, 21 Oct 2015 08:28:05 +0100", 5.0, id="plus-0100"),
    ],
)
def test_http_date_without_a_zone_is_utc(
    local_time_not_utc: None, value: str, expected: float
) -> None:
    # RFC 5322 3.3: "-0000" is UTC with nothing said about the local zone; it is not local time.
    assert time.timezone == 5 * 3600
    assert server_delay({"retry-after": value}, now=NOW) == expected
    p = policy(rand=no_jitter_expected)
    assert p.next_delay(1, PLENTY, 503, {"retry-after": value}, now=NOW) == expected


@pytest.mark.parametrize("status", [pytest.param(s, id=str(s)) for s in (429, 502, 503, 504)])
def test_x_should_retry_false_stops(status: int) -> None:
    p = policy(rand=no_jitter_expected)
    assert p.next_delay(1, PLENTY, status, {"x-should-retry": "false"}, now=NOW) is None


def test_x_should_retry_false_beats_retry_after() -> None:
    headers = {"x-should-retry": "false", "retry-after": "1", "retry-after-ms": "100"}
    assert policy(rand=no_jitter_expected).next_delay(1, PLENTY, 503, headers, now=NOW) is None


def test_x_should_retry_false_in_case_insensitive_headers() -> None:
    # Upstream headers arrive as aiohttp's case-insensitive multidict.
    headers = CIMultiDictProxy(CIMultiDict([("X-Should-Retry", "false")]))
    assert policy().next_delay(1, PLENTY, 503, headers, now=NOW) is None


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        pytest.param({"x-should-retry": "true"}, 0.25, id="true-backoff"),
        pytest.param({}, 0.25, id="absent-backoff"),
        pytest.param({"x-should-retry": "true", "retry-after": "3"}, 3.0, id="true-retry-after"),
        pytest.param({"retry-after": "3"}, 3.0, id="absent-retry-after"),
        pytest.param({"x-should-retry": "true", "retry-after": "11"}, None, id="true-over-cap"),
    ],
)
def test_x_should_retry_true_or_absent_changes_nothing(
    headers: dict[str, str], expected: float | None
) -> None:
    assert policy().next_delay(1, PLENTY, 503, headers, now=NOW) == expected


@pytest.mark.parametrize("status", [pytest.param(s, id=str(s)) for s in (200, 400, 404, 500)])
def test_x_should_retry_true_does_not_retry_an_answer(status: int) -> None:
    # Only "false" is honoured: "true" never turns an answer into a retry.
    assert policy().next_delay(1, PLENTY, status, {"x-should-retry": "true"}, now=NOW) is None


@pytest.mark.parametrize(
    ("attempt", "remaining"),
    [
        pytest.param(4, PLENTY, id="attempts-used-up"),
        pytest.param(1, 0.1, id="deadline-too-close"),
    ],
)
def test_x_should_retry_true_does_not_lift_the_limits(attempt: int, remaining: float) -> None:
    headers = {"x-should-retry": "true"}
    assert policy().next_delay(attempt, remaining, 503, headers, now=NOW) is None


def test_http_date_with_an_enormous_year_falls_back_to_backoff() -> None:
    headers = {"retry-after": "Wed, 21 Oct 99999999999999999999 07:28:00 GMT"}
    assert policy().next_delay(2, PLENTY, 503, headers, now=NOW) == 0.5

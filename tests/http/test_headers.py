"""Which headers cross the gateway: hop-by-hop and credentials stay, the team key goes up."""

from __future__ import annotations

from collections.abc import Mapping

import pytest
from multidict import CIMultiDict, CIMultiDictProxy

from gateway.http.headers import (
    PASSED_BACK,
    forwarded_response_headers,
    request_headers,
    response_headers,
)
from gateway.ops.log import SecretScrubber

TEAM_KEY = "team-key-from-the-environment"
APP_KEY = "pgw_app-key-that-must-not-leave"
SCRUBBER = SecretScrubber([TEAM_KEY])
SDK_HEADERS = [
    ("User-Agent", "Parallel/Python 1.3.0"),
    ("Accept", "application/json"),
    ("X-Stainless-Lang", "python"),
    ("X-Stainless-Retry-Count", "0"),
]


def incoming(*headers: tuple[str, str]) -> CIMultiDictProxy[str]:
    """Headers as aiohttp hands them to a handler: case-insensitive and possibly repeated."""
    return CIMultiDictProxy(CIMultiDict([*SDK_HEADERS, *headers]))


def forwarded(*headers: tuple[str, str]) -> list[tuple[str, str]]:
    return list(request_headers(incoming(*headers), TEAM_KEY).items())


EXPECTED = [*SDK_HEADERS, ("x-api-key", TEAM_KEY)]


@pytest.mark.parametrize(
    "name",
    [
        # RFC 9110 section 7.6.1, plus the legacy hop-by-hop names of RFC 2616 section 13.5.1.
        "Connection",
        "Proxy-Connection",
        "Keep-Alive",
        "TE",
        "Trailer",
        "Transfer-Encoding",
        "Upgrade",
        "Proxy-Authenticate",
        "Proxy-Authorization",
        "connection",
        "KEEP-ALIVE",
    ],
)
def test_hop_by_hop_headers_are_dropped(name: str) -> None:
    assert forwarded((name, "some-value")) == EXPECTED


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("x-api-key", APP_KEY),
        ("X-API-Key", APP_KEY),
        ("X-API-KEY", APP_KEY),
        ("authorization", f"Bearer {APP_KEY}"),
        ("Authorization", f"Bearer {APP_KEY}"),
        ("AUTHORIZATION", "Basic dXNlcjpwYXNz"),
        ("Host", "gateway.internal:8080"),
        ("Content-Length", "0"),
        ("Accept-Encoding", "gzip, br"),
        ("Cookie", "session=abc"),
    ],
)
def test_credentials_and_client_managed_headers_are_dropped(name: str, value: str) -> None:
    assert forwarded((name, value)) == EXPECTED


@pytest.mark.parametrize(
    ("connection", "dropped"),
    [
        pytest.param("X-Custom", ["X-Custom"], id="one-name"),
        pytest.param("close, X-Custom , x-other", ["X-Custom", "X-Other"], id="list-with-spaces"),
        pytest.param("PARALLEL-BETA", ["parallel-beta"], id="case-insensitive"),
        pytest.param("keep-alive", [], id="only-hop-by-hop"),
        pytest.param(",,", [], id="empty-tokens"),
    ],
)
def test_headers_named_in_connection_are_dropped(connection: str, dropped: list[str]) -> None:
    candidates = [("X-Custom", "1"), ("X-Other", "2"), ("parallel-beta", "beta-1")]
    kept = [(n, v) for n, v in candidates if n.lower() not in {d.lower() for d in dropped}]
    assert forwarded(("Connection", connection), *candidates) == [
        *SDK_HEADERS,
        *kept,
        ("x-api-key", TEAM_KEY),
    ]


def test_headers_named_in_a_second_connection_field_are_dropped() -> None:
    # RFC 9110 7.6.1 allows Connection to be repeated, and aiohttp keeps each line.
    assert forwarded(
        ("Connection", "keep-alive"), ("Connection", "X-Custom"), ("X-Custom", "1")
    ) == (EXPECTED)


@pytest.mark.parametrize(
    "connections",
    [
        pytest.param(["X-Custom", "x-other"], id="one-name-per-line"),
        pytest.param(["close", "X-Custom, X-OTHER", "keep-alive"], id="names-on-the-middle-line"),
        pytest.param(["x-other", "", "x-custom"], id="empty-line-between"),
    ],
)
def test_headers_named_on_any_connection_line_are_dropped(connections: list[str]) -> None:
    lines = [("Connection", value) for value in connections]
    candidates = [("X-Custom", "1"), ("X-Other", "2"), ("parallel-beta", "beta-1")]
    assert forwarded(*lines, *candidates) == [
        *SDK_HEADERS,
        ("parallel-beta", "beta-1"),
        ("x-api-key", TEAM_KEY),
    ]


def test_connection_lines_in_mixed_case_all_count() -> None:
    headers = CIMultiDict(
        [("connection", "X-Custom"), ("CONNECTION", "X-Other"), ("X-Custom", "1"), ("X-Other", "2")]
    )
    assert list(request_headers(headers, TEAM_KEY).items()) == [("x-api-key", TEAM_KEY)]


def test_connection_in_a_plain_dict() -> None:
    headers = {"Connection": "X-Custom", "X-Custom": "1", "Accept": "application/json"}
    assert list(request_headers(headers, TEAM_KEY).items()) == [
        ("Accept", "application/json"),
        ("x-api-key", TEAM_KEY),
    ]


def test_end_to_end_headers_are_kept_with_their_case_order_and_repeats() -> None:
    kept = [
        ("parallel-beta", "search-extract-2025-10-10"),
        ("Content-Type", "application/json"),
        ("X-Stainless-Read-Timeout", "600"),
        ("Accept", "text/event-stream"),
        ("X-Request-Id", "req-1"),
    ]
    assert forwarded(*kept) == [*SDK_HEADERS, *kept, ("x-api-key", TEAM_KEY)]


def test_team_key_is_set_exactly_once() -> None:
    out = request_headers(
        incoming(
            ("x-api-key", APP_KEY),
            ("X-Api-Key", "pgw_second-app-key-value"),
            ("Authorization", f"Bearer {APP_KEY}"),
        ),
        TEAM_KEY,
    )
    assert out.getall("x-api-key") == [TEAM_KEY]
    assert "authorization" not in out
    assert all("pgw_" not in value for value in out.values())


def test_team_key_is_set_when_the_app_sent_none() -> None:
    assert list(request_headers(CIMultiDict(), TEAM_KEY).items()) == [("x-api-key", TEAM_KEY)]


def test_request_headers_do_not_change_the_incoming_headers() -> None:
    original = CIMultiDict([("x-api-key", APP_KEY), ("Connection", "close")])
    request_headers(original, TEAM_KEY)
    assert list(original.items()) == [("x-api-key", APP_KEY), ("Connection", "close")]


def test_passed_back_names() -> None:
    assert PASSED_BACK == ("content-type", "retry-after", "retry-after-ms", "x-should-retry")


UPSTREAM = CIMultiDictProxy(
    CIMultiDict(
        [
            ("Content-Type", "application/json"),
            ("Content-Length", "123"),
            ("Date", "Wed, 21 Oct 2015 07:28:00 GMT"),
            ("Server", "envoy"),
            ("Set-Cookie", "upstream=1"),
            ("Retry-After", "3"),
            ("Retry-After-Ms", "2500"),
            ("X-Should-Retry", "false"),
            ("Transfer-Encoding", "chunked"),
            ("Connection", "keep-alive"),
            ("X-Request-Id", "abc"),
        ]
    )
)


@pytest.mark.parametrize(
    ("upstream", "expected"),
    [
        pytest.param(
            UPSTREAM,
            {
                "content-type": "application/json",
                "retry-after": "3",
                "retry-after-ms": "2500",
                "x-should-retry": "false",
            },
            id="all-passed-back-names",
        ),
        pytest.param(
            CIMultiDict([("Content-Type", "text/html"), ("Server", "nginx")]),
            {"content-type": "text/html"},
            id="content-type-only",
        ),
        pytest.param(
            {"content-type": "application/json"},
            {"content-type": "application/json"},
            id="plain-dict",
        ),
        pytest.param(CIMultiDict([("Set-Cookie", "a=b")]), {}, id="nothing-passed-back"),
        pytest.param(CIMultiDict(), {}, id="empty"),
    ],
)
def test_response_headers(upstream: Mapping[str, str], expected: dict[str, str]) -> None:
    assert response_headers(upstream, SCRUBBER.scrub_text) == expected


def test_response_headers_are_scrubbed() -> None:
    echoed = CIMultiDict([("Content-Type", f"text/{TEAM_KEY}"), ("retry-after", TEAM_KEY)])
    assert response_headers(echoed, SCRUBBER.scrub_text) == {
        "content-type": "text/[redacted]",
        "retry-after": "[redacted]",
    }


def test_forwarded_response_headers_are_scrubbed_and_hop_by_hop_dropped() -> None:
    echoed = CIMultiDict(
        [
            ("Location", f"/x?key={TEAM_KEY}"),
            ("X-Echo", TEAM_KEY),
            ("X-Echo", "plain"),
            ("Connection", "x-hop"),
            ("X-Hop", TEAM_KEY),
            ("Keep-Alive", "timeout=5"),
        ]
    )
    assert list(forwarded_response_headers(echoed, SCRUBBER.scrub_text).items()) == [
        ("Location", "/x?key=[redacted]"),
        ("X-Echo", "[redacted]"),
        ("X-Echo", "plain"),
    ]

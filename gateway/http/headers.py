"""Which headers cross the gateway, in each direction: pure functions, no I/O."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from multidict import CIMultiDict

# Hop-by-hop headers (RFC 9110 section 7.6.1) belong to one connection and are never forwarded.
HOP_BY_HOP = frozenset(
    {
        "connection",
        "proxy-connection",
        "keep-alive",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "proxy-authenticate",
        "proxy-authorization",
    }
)
# The app's own credentials stay here; the client sets host, length and encoding itself.
NOT_FORWARDED = HOP_BY_HOP | {
    "x-api-key",
    "authorization",
    "host",
    "content-length",
    "cookie",
    # Upstream answers uncompressed, so the gateway can read every error's ref_id to log it.
    "accept-encoding",
}
# Text in, the same text with any secret in it replaced.
Scrub = Callable[[str], str]
# What an app needs back from an upstream answer to act on it (and the SDK to retry right).
PASSED_BACK = ("content-type", "retry-after", "retry-after-ms", "x-should-retry")


def request_headers(incoming: Mapping[str, str], team_key: str) -> CIMultiDict[str]:
    """Headers to send upstream: the app's, less hop-by-hop and credentials, plus the team key."""
    out = _without(incoming, NOT_FORWARDED)
    out["x-api-key"] = team_key
    return out


def response_headers(upstream: Mapping[str, str], scrub: Scrub) -> dict[str, str]:
    """The upstream headers passed back with an answer the gateway rebuilds (the input route),
    each value passed through `scrub` (the secret scrubber)."""
    return {name: scrub(upstream[name]) for name in PASSED_BACK if name in upstream}


def forwarded_response_headers(upstream: Mapping[str, str], scrub: Scrub) -> CIMultiDict[str]:
    """All of a forwarded response's headers but hop-by-hop ones, each value passed through
    `scrub` (the secret scrubber)."""
    out: CIMultiDict[str] = CIMultiDict()
    for name, value in _without(upstream, HOP_BY_HOP).items():
        out.add(name, scrub(value))
    return out


def _without(headers: Mapping[str, str], dropped: frozenset[str]) -> CIMultiDict[str]:
    # Connection may repeat; every header it names, on any of its lines, is hop-by-hop too.
    named_by_connection = {
        token.strip().lower()
        for name, value in headers.items()
        if name.lower() == "connection"
        for token in value.split(",")
    }
    out: CIMultiDict[str] = CIMultiDict()
    for name, value in headers.items():
        lower = name.lower()
        if lower not in dropped and lower not in named_by_connection:
            out.add(name, value)
    return out

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
# Between header values scrubbed as one text: no secret holds a line break, so a secret is found
# in the joined text if and only if it is in one of the values.
SEPARATOR = "\n"
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
    `scrub` (the secret scrubber). They are scrubbed as one text first: nearly always nothing
    is found, and one pass costs less than one per value."""
    out = _without(upstream, HOP_BY_HOP)
    values = SEPARATOR.join(out.values())
    if scrub(values) == values:
        return out
    scrubbed: CIMultiDict[str] = CIMultiDict()
    for name, value in out.items():
        scrubbed.add(name, scrub(value))
    return scrubbed


def _without(headers: Mapping[str, str], dropped: frozenset[str]) -> CIMultiDict[str]:
    out: CIMultiDict[str] = CIMultiDict()
    named: list[str] = []  # what Connection names (it may repeat): hop-by-hop too
    for name, value in headers.items():
        lower = name.lower()
        if lower == "connection":
            named += value.split(",")
        if lower not in dropped:
            out.add(name, value)
    for token in named:
        out.popall(token.strip(), None)
    return out

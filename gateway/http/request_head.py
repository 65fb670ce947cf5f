"""Request heads refused before any handler runs: pure decisions on what aiohttp parsed.

Each rule keeps a request from reaching upstream changed, or with a secret in the wrong place:
aiohttp would otherwise answer HTTP/0.9 and HTTP/2.0 request lines, decode header bytes past
ASCII into text that its client then re-encodes differently (or fails on), and an app key in
the query string would be forwarded upstream and logged with the path. The limits on a head
(414, 431) are measured here too, as aiohttp's C parser measures them, where its pure-Python
parser runs (`parser_limits`): a request gets the same answer whichever parser reads it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from aiohttp.http import HttpVersion10, HttpVersion11
from aiohttp.http_exceptions import BadHttpMessage

from ..config import ServerSettings
from ..ops.log import APP_KEY_PATTERN
from .internals import is_refused_entry, refused_entry

SPOKEN = frozenset({HttpVersion10, HttpVersion11})
# Query parameters that can only be meant as a key, whatever their value.
KEY_PARAMETERS = frozenset({"api_key", "apikey", "api-key", "x-api-key", "x_api_key"})
Messages = list[tuple[Any, Any]]
# Room for a method, two spaces, a version and a field's ": " beside what the gateway measures.
SLACK = 64


class HeadRefusal(BadHttpMessage):
    """A request head the gateway refuses (400 unless said); `public` is safe to send and log."""

    def __init__(self, reason: str, public: str, status: int = 400) -> None:
        super().__init__(public)
        self.reason = reason
        self.public = public
        self.status = status


def url_too_long(limits: ServerSettings) -> HeadRefusal:
    # RFC 9110 section 15.5.15: the target is longer than the server will interpret.
    return HeadRefusal(
        "uri-too-long",
        f"Request line is longer than the gateway's limit of {limits.max_line_bytes} bytes.",
        414,
    )


def field_too_long(limits: ServerSettings) -> HeadRefusal:
    # RFC 6585 section 5: one field, or all of them, too large.
    return HeadRefusal(
        "header-too-large",
        "A request header field is longer than the gateway's limit of "
        f"{limits.max_header_bytes} bytes.",
        431,
    )


def too_many_fields(limits: ServerSettings) -> HeadRefusal:
    return HeadRefusal(
        "too-many-headers",
        f"Request has more header fields than the gateway's limit of {limits.max_headers}.",
        431,
    )


@dataclass(frozen=True, slots=True)
class ParserLimits:
    """The limits aiohttp's parser is given; if `checked`, the gateway measures each head."""

    line: int
    field: int
    headers: int
    checked: bool


def parser_limits(limits: ServerSettings, whole_lines: bool) -> ParserLimits:
    """The gateway's measure is llhttp's (aiohttp's C parser): a target of at most
    max_line_bytes, a header name and a header value of at most max_header_bytes each, at most
    max_headers fields. aiohttp's pure-Python parser measures whole lines, and counts the
    request line and the empty line after the fields as fields: it gets limits the gateway's
    own reach first, and each head it parses is measured by over_limits. Pure."""
    if not whole_lines:
        return ParserLimits(
            limits.max_line_bytes, limits.max_header_bytes, limits.max_headers, checked=False
        )
    # One length for both: that parser holds a header line still arriving to the line limit.
    longest = max(limits.max_line_bytes, 2 * limits.max_header_bytes) + SLACK
    return ParserLimits(longest, longest, limits.max_headers + 2, checked=True)


def over_limits(target: str, raw_headers: Any, limits: ServerSettings) -> HeadRefusal | None:
    """The limit a parsed head is over, measured as llhttp measures it, if any."""
    if len(target.encode("utf-8", "surrogateescape")) > limits.max_line_bytes:
        return url_too_long(limits)
    if len(raw_headers) > limits.max_headers:
        return too_many_fields(limits)
    longest = limits.max_header_bytes
    if any(len(name) > longest or len(value) > longest for name, value in raw_headers):
        return field_too_long(limits)
    return None


# aiohttp's parsers refuse some versions themselves (llhttp: HTTP/1.2, HTTP/3.0), and that
# refusal says the same.
NOT_HTTP_1 = HeadRefusal("bad-request", "Bad request: not a valid HTTP/1.0 or HTTP/1.1 request.")
KEY_IN_QUERY = HeadRefusal(
    "key-in-query",
    "Bad request: send the app key in the x-api-key header, never in the query string.",
)


def head_refusal(
    version: Any, raw_headers: Any, target: str, limits: ServerSettings | None = None
) -> HeadRefusal | None:
    """Why the request with this version, raw header fields and target is refused, if it is;
    with `limits`, a head over them is too (where aiohttp's parser does not measure as llhttp)."""
    if limits is not None:
        over = over_limits(target, raw_headers, limits)
        if over is not None:
            return over
    # llhttp refuses a target with a byte past ASCII itself; the pure-Python parser does not.
    if version not in SPOKEN or not target.isascii():
        return NOT_HTTP_1
    for name, value in raw_headers:
        if not value.isascii():
            # The name only: the value may be a secret.
            field = bytes(name).decode("ascii", "backslashreplace")
            return HeadRefusal(
                "non-ascii-header",
                f"Bad request: header {field} holds bytes that are not ASCII; the gateway "
                "forwards header bytes unchanged or not at all. Encode the value in ASCII.",
            )
    _, mark, query = target.partition("?")
    if mark and key_in_query(query):
        return KEY_IN_QUERY
    return None


def key_in_query(query: str) -> bool:
    """Whether a query string carries a key: a parameter named like one (api_key, x-api-key,
    ...), or anything the log scrubber takes for an app key, in any percent-encoding."""
    if APP_KEY_PATTERN.search(unquote(query).encode("utf-8", "surrogateescape")):
        return True
    return any(
        unquote(pair.partition("=")[0]).strip().lower() in KEY_PARAMETERS
        for pair in query.split("&")
    )


def refuse_bad_heads(messages: Messages, limits: ServerSettings | None = None) -> Messages:
    """`messages` (just parsed), each refused head replaced by the entry aiohttp itself queues
    for a request it could not parse: it is answered 400 through handle_error, in order."""
    checked = messages
    for i, (message, _) in enumerate(messages):
        if is_refused_entry(message):
            continue
        refusal = head_refusal(message.version, message.raw_headers, message.path, limits)
        if refusal is not None:
            if checked is messages:
                checked = list(messages)  # the parser's list is left as it was
            checked[i] = refused_entry(refusal, refusal.public)
    return checked


def refused(message: Any) -> bool:
    """Whether `message` is aiohttp's entry for a request it (or refuse_bad_heads) refused."""
    return is_refused_entry(message)

"""The one module that touches aiohttp's private names: each import guarded, each checked at start.

Checked against aiohttp 3.14.4 and 3.14.5, with the C parser and the pure-Python one
(AIOHTTP_NO_EXTENSIONS=1). What each is used for (all by the fast path only: the hit path and
GatewayConnection):

- `web_protocol.RequestHandler._parser`: a hit_path.ParserTap takes its place, to answer hits as
  they are parsed; checked: the slot exists and the parser has feed_data and message_consumed.
- `RequestHandler._waiter`: set while aiohttp waits for the next request with none queued; it
  tells an idle connection (where a hit may be answered and a head is timed).
- `RequestHandler._keepalive_timeout`, `_next_keepalive_close_time`, `_keepalive_handle`,
  `_process_keepalive`: after a hit, the keep-alive timer is set as aiohttp's own loop sets it.
- `web_protocol.MAX_MSG_QUEUE_SIZE`: how many parsed requests aiohttp's parser holds before it
  stops parsing (ParserTap parses on as hits are consumed); checked: an int above 0.
- `web_protocol._ErrInfo(status, exc, message)`: the queue entry aiohttp makes for a head it
  could not parse; request_head.refuse_bad_heads puts one in place of a head the gateway refuses.
- `streams.EMPTY_PAYLOAD` (in streams.__all__, but undocumented): a request parsed without a body
  carries this very object; a hit has none.
- `helpers.rfc822_formatted_time()`: the Date header of a hit, as the full stack writes it.
- `http_exceptions.LineTooLong`'s args `(line, limit, actual)`: the limit an over-long line broke
  tells an over-long URL (414) from a header field (431) where the connection could not.
- The parsers' text "Too many headers received" (a plain BadHttpMessage): 431, not 400.

`check()` probes each (present, the attribute or slot there, the signature, the args layout, a
real parser's message) and names what differs. Where anything does, server.GatewayRunner
serves every request through aiohttp's public stack (public_connection.PublicConnection) and
logs one `gateway.fast_path_off` warning naming what differed; GATEWAY_FAST_PATH=off does the
same, with an info line.

`parser_measures_whole_lines()` probes public API (aiohttp.http.HttpRequestParser): whether the
parser in use measures whole lines, as the pure-Python one does; request_head.parser_limits
then has the gateway measure each head itself.

What counts as public there: names in aiohttp's documentation or a module's `__all__`; public
classes subclassed and their methods without a leading underscore overridden
(RequestHandler.connection_made, connection_lost, data_received, handle_error,
finish_response; web.Server.__call__; AppRunner.setup, shutdown, cleanup and its `server`
property); attributes without a leading underscore (Server.request_handler, request_factory,
handler_cancellation, requests_count; BaseRequest.protocol, version, raw_headers, raw_path).
"""

from __future__ import annotations

import asyncio
import email.utils
import functools
import inspect
import os
from collections.abc import Callable, Mapping
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import BadHttpMessage, LineTooLong

# The internal switch: GATEWAY_FAST_PATH=off serves everything through the public stack (CI's
# `make test-fallback` runs the suite so). Not a setting: it changes no answer, only the speed.
SWITCH = "GATEWAY_FAST_PATH"
TOO_MANY_HEADERS = "Too many headers received"
_MISSING = "missing"

try:
    from aiohttp.web_protocol import MAX_MSG_QUEUE_SIZE as _QUEUE_SIZE
except ImportError:
    _QUEUE_SIZE = None  # type: ignore[assignment]
try:
    from aiohttp.web_protocol import _ErrInfo
except ImportError:
    _ErrInfo = None  # type: ignore[assignment,misc]
try:
    from aiohttp.streams import EMPTY_PAYLOAD as _EMPTY
except ImportError:
    _EMPTY = None  # type: ignore[assignment,misc]
try:
    from aiohttp.helpers import rfc822_formatted_time as _http_date
except ImportError:
    _http_date = None  # type: ignore[assignment]

# What the fast path uses; each stand-in is never used unless check() found the real one.
MAX_MSG_QUEUE_SIZE: int = _QUEUE_SIZE if isinstance(_QUEUE_SIZE, int) else 32
EMPTY_PAYLOAD: Any = _EMPTY if _EMPTY is not None else object()


def _formatted_now() -> str:
    return email.utils.formatdate(usegmt=True)


rfc822_formatted_time: Callable[[], str] = _http_date if _http_date is not None else _formatted_now

HANDLER_SLOTS = (
    "_parser",
    "_waiter",
    "_keepalive_timeout",
    "_next_keepalive_close_time",
    "_keepalive_handle",
)


def refused_entry(exc: BadHttpMessage, message: str) -> Any:
    """aiohttp's queue entry for a head it could not parse, answered 400 via handle_error."""
    return (_ErrInfo(400, exc, message), EMPTY_PAYLOAD)


def is_refused_entry(message: object) -> bool:
    return _ErrInfo is not None and isinstance(message, _ErrInfo)


def line_limit(exc: LineTooLong) -> object:
    """The limit an over-long line broke, as the parser named it."""
    return exc.args[1] if len(exc.args) > 1 else None


def is_too_many_headers(exc: BaseException) -> bool:
    return isinstance(exc, BadHttpMessage) and exc.message == TOO_MANY_HEADERS


def parser_of(handler: web.RequestHandler) -> Any:
    return handler._parser


def set_parser(handler: web.RequestHandler, parser: Any) -> None:
    handler._parser = parser


def awaiting_request(handler: web.RequestHandler) -> bool:
    """Whether aiohttp waits for a request on this connection and has none queued."""
    waiter = handler._waiter
    return waiter is not None and not waiter.done()


def restart_keepalive(handler: web.RequestHandler, loop: asyncio.AbstractEventLoop) -> None:
    """What aiohttp's loop does to the keep-alive timer after it answers a request."""
    if handler._keepalive_timeout > 0:
        close_time = loop.time() + handler._keepalive_timeout
        handler._next_keepalive_close_time = close_time
        if handler._keepalive_handle is None:
            handler._keepalive_handle = loop.call_at(close_time, handler._process_keepalive)


def fast_path_forced_off(env: Mapping[str, str] = os.environ) -> bool:
    return env.get(SWITCH, "").strip().lower() in {"off", "0", "false", "no"}


def check() -> list[str]:
    """What differs from the aiohttp this module was checked against; [] if nothing does."""
    return [f"{name}: {why}" for name, probe in _probes() if (why := _run(probe))]


def _run(probe: Callable[[], str | None]) -> str | None:
    try:
        return probe()
    except Exception as e:  # a probe that fails is a difference, never a failed start
        return f"the check raised {type(e).__name__}"


def _probes() -> list[tuple[str, Callable[[], str | None]]]:
    return [
        ("web_protocol.MAX_MSG_QUEUE_SIZE", _queue_size_problem),
        (
            "web_protocol._ErrInfo",
            functools.partial(_signature_problem, _ErrInfo, ["status", "exc", "message"]),
        ),
        ("streams.EMPTY_PAYLOAD", lambda: _MISSING if _EMPTY is None else None),
        ("helpers.rfc822_formatted_time", _date_problem),
        *(
            (f"RequestHandler.{slot}", functools.partial(_slot_problem, slot))
            for slot in HANDLER_SLOTS
        ),
        (
            "RequestHandler._process_keepalive",
            functools.partial(_method_problem, "_process_keepalive"),
        ),
        ("LineTooLong args", _line_too_long_problem),
        ("parser messages", _parser_problem),
    ]


def _queue_size_problem() -> str | None:
    if _QUEUE_SIZE is None:
        return _MISSING
    if not isinstance(_QUEUE_SIZE, int) or _QUEUE_SIZE < 1:
        return f"expected an int above 0, found {_QUEUE_SIZE!r}"
    return None


def _signature_problem(target: object, expected: list[str]) -> str | None:
    if target is None:
        return _MISSING
    try:
        found = list(inspect.signature(target).parameters)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return "no signature"
    return None if found == expected else f"expected fields {expected}, found {found}"


def _date_problem() -> str | None:
    if _http_date is None:
        return _MISSING
    date = _http_date()
    shaped = isinstance(date, str) and len(date) == len(_formatted_now()) and date.endswith(" GMT")
    return None if shaped else f"expected an RFC 9110 date, found {date!r}"


def _slots_of(cls: type) -> set[str]:
    return {slot for klass in cls.__mro__ for slot in getattr(klass, "__slots__", ())}


def _slot_problem(name: str) -> str | None:
    return None if name in _slots_of(web.RequestHandler) else _MISSING


def _method_problem(name: str) -> str | None:
    return None if callable(getattr(web.RequestHandler, name, None)) else _MISSING


def _line_too_long_problem() -> str | None:
    args = LineTooLong("line", 100, 101).args  # type: ignore[arg-type]
    return None if args[1:] == (100, 101) else f"expected (line, limit, actual), found {args!r}"


def _parser_problem() -> str | None:
    """Feed aiohttp's own request parser (the one RequestHandler makes) two heads it refuses."""
    from aiohttp.http import HttpRequestParser

    loop = asyncio.new_event_loop()
    try:
        too_many = _parse(HttpRequestParser, loop, b"GET / HTTP/1.1\r\nHost: a\r\nb: c\r\n\r\n")
        too_long = _parse(HttpRequestParser, loop, b"GET /" + b"a" * 200 + b" HTTP/1.1\r\n\r\n")
    finally:
        loop.close()
    problems = []
    if not is_too_many_headers(too_many):
        problems.append(f"too many headers raised {too_many!r}")
    if not isinstance(too_long, LineTooLong) or line_limit(too_long) != 100:
        problems.append(f"an over-long line raised {too_long!r}")
    if not (callable(getattr(HttpRequestParser, "feed_data", None))):
        problems.append("no feed_data")
    if not (callable(getattr(HttpRequestParser, "message_consumed", None))):
        problems.append("no message_consumed")
    return "; ".join(problems) or None


def parser_measures_whole_lines() -> bool:
    """Whether aiohttp's request parser measures a request line whole, as its pure-Python one
    does (llhttp, its C one, measures the target). A probe of public API, beside the others."""
    from aiohttp.http import HttpRequestParser

    loop = asyncio.new_event_loop()
    try:
        raised = _parse(HttpRequestParser, loop, b"GET /" + b"a" * 99 + b" HTTP/1.1\r\n\r\n")
    finally:
        loop.close()
    return isinstance(raised, LineTooLong)


def _parse(parser_class: Any, loop: asyncio.AbstractEventLoop, data: bytes) -> BaseException:
    try:
        parser = parser_class(
            None, loop, 2**16, max_line_size=100, max_field_size=100, max_headers=1
        )
        parser.feed_data(data)
    except Exception as e:  # what the parser raised is the answer
        return e
    return AssertionError("nothing raised")

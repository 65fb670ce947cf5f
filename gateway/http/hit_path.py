"""The hit path: a run input in memory, answered as its request is parsed.

A hit is most of the gateway's traffic. Answered the full way, aiohttp gives each request a task,
a request object, the middleware chain, the router and a response object, and together they cost
more than the gateway's own work. Here a hit is answered from the connection's data_received,
straight into the transport, with the same checks, headers, metrics and access line.

Whatever this path cannot answer as a plain 200 hit (a miss, any refusal, a body, HTTP/1.0, a
closing or draining connection, isolation mode "app") it leaves to the full stack, untouched:
the same request is then answered the full way, exactly as if this path did not exist.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from aiohttp import web
from aiohttp.http import SERVER_SOFTWARE, HttpVersion11, RawRequestMessage
from aiohttp.http_exceptions import HttpProcessingError

from ..billing.calls import RUN_INPUT
from ..cache.policy import CACHE_HIT, match_input_path
from ..config import ServerSettings
from ..errors import GatewayError
from ..state import CACHE, DRAINING, KEYRING, LIVE_SETTINGS, METRICS, SETTINGS, TALLY
from .catalog import INPUT_ROUTE
from .input_route import check_input
from .internals import EMPTY_PAYLOAD, MAX_MSG_QUEUE_SIZE, rfc822_formatted_time
from .middleware import access_line, next_request_id
from .request_head import Messages, refuse_bad_heads, refused

# The head of every hit, in the order the full stack writes it.
HEAD = (
    "HTTP/1.1 200 OK\r\n"
    f"Cache-Status: {CACHE_HIT}\r\n"
    "Content-Type: application/json\r\n"
    "x-gateway-request-id: "
).encode()
SERVER = f"\r\nServer: {SERVER_SOFTWARE}\r\n\r\n".encode()


class HitPath:
    """Answers memory hits for one running app; built once the app has started."""

    def __init__(self, app: web.Application) -> None:
        settings = app[SETTINGS]
        self._keyring = app[KEYRING]
        self._memory = app[CACHE].memory
        self._metrics = app[METRICS]
        self._saved = app[TALLY].saved  # Tally.count_saved, inlined
        self._draining = app[DRAINING]
        self._live = app[LIVE_SETTINGS]
        # Under isolation mode "app", a hit needs the database (who owns the run).
        self._enabled = settings.isolation.mode != "app"

    def answer(self, message: RawRequestMessage, payload: Any) -> bytes | None:
        """The whole response to `message` if it is a plain hit, else None (nothing done)."""
        started = time.perf_counter()
        if (
            message.method != "GET"
            or payload is not EMPTY_PAYLOAD
            or message.version != HttpVersion11
            or message.should_close
            or message.upgrade
            or not self._enabled
            or self._draining[0]
        ):
            return None
        raw_path = message.path.partition("?")[0]
        run_id = match_input_path(raw_path)
        if run_id is None:
            return None
        keyring = self._keyring
        try:
            app = keyring.authenticate(message.headers)
            check_input(keyring, app, raw_path, run_id)
            body = self._memory.get(run_id)
            if body is None:
                return None  # a miss: the full stack takes the app's turn for it
            keyring.take_turn(app, hold=False)
        except GatewayError:
            return None  # the full stack makes the same refusal, in the same order
        self._saved[(app, RUN_INPUT, None)] += 1
        request_id = next_request_id()
        response = hit_response(body, request_id, rfc822_formatted_time())
        duration = time.perf_counter() - started
        self._metrics.observe_request(INPUT_ROUTE, 200, app, "hit", duration)
        if self._live.current.log.access_log:
            access_line(
                message.method, message.path, INPUT_ROUTE, 200, app, "hit", duration, request_id
            )
        return response


def hit_response(body: bytes, request_id: str, date: str) -> bytes:
    """A hit's whole HTTP/1.1 answer, as the full stack writes it. Pure."""
    return b"".join(
        (
            HEAD,
            request_id.encode(),
            b"\r\nContent-Length: ",
            str(len(body)).encode(),
            b"\r\nDate: ",
            date.encode(),
            SERVER,
            body,
        )
    )


class ParserTap:
    """Stands in for aiohttp's request parser on one connection. It counts the request heads
    parsed (a refusal counts as one), and hands each batch of parsed requests to `take`, which
    answers some from the front and returns the rest for aiohttp to queue.

    aiohttp's parser stops after MAX_MSG_QUEUE_SIZE requests not yet consumed (it keeps the
    rest of the bytes) and aiohttp, seeing its queue full, stops reading until the queue drains.
    Requests answered here are consumed at once, so the tap parses on until the parser is
    full again or out of bytes: aiohttp then sees the queue it expects.
    """

    __slots__ = ("_in_flight", "_measured", "_parser", "_take", "heads")

    def __init__(
        self,
        parser: Any,
        take: Callable[[Messages], Messages],
        measured: ServerSettings | None = None,
    ) -> None:
        self.heads = 0
        self._measured = measured  # limits to measure each head by (request_head.over_limits)
        self._in_flight = 0  # as the parser counts them: parsed, not yet consumed
        self._parser = parser
        self._take = take

    def feed_data(self, data: bytes) -> tuple[Messages, bool, bytes]:
        rest: Messages = []
        while True:
            try:
                messages, upgraded, tail = self._parser.feed_data(data)
            except HttpProcessingError:
                self.heads += 1
                raise
            if not messages:
                return rest, upgraded, tail
            self.heads += len(messages)
            self._in_flight += len(messages)
            full = self._in_flight >= MAX_MSG_QUEUE_SIZE  # the parser stopped here
            messages = refuse_bad_heads(messages, self._measured)
            # Once one request is left to aiohttp, all behind it are too, in order.
            rest = rest + messages if rest else self._take_before_refusal(messages)
            if not full or upgraded or self._in_flight >= MAX_MSG_QUEUE_SIZE:
                return rest, upgraded, tail
            data = b""  # requests were answered here: the parser has room again

    def _take_before_refusal(self, messages: Messages) -> Messages:
        """`take` the requests before the first refused one; aiohttp answers the rest."""
        for i, (message, _) in enumerate(messages):
            if refused(message):
                return self._take(messages[:i]) + messages[i:]
        return self._take(messages)

    def message_consumed(self) -> None:
        if self._in_flight > 0:
            self._in_flight -= 1
        self._parser.message_consumed()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._parser, name)

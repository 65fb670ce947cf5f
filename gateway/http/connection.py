"""One client connection: aiohttp's, plus the header timeout and ErrorResponse refusals."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

import structlog
from aiohttp import web
from aiohttp.http_exceptions import BadHttpMessage, LineTooLong

from ..config import ServerSettings
from ..errors import error_body
from ..ops.metrics import Metrics
from .hit_path import HitPath, ParserTap
from .middleware import next_request_id
from .request_head import NOT_HTTP_1, HeadRefusal, Messages

log = structlog.get_logger("gateway.server")
# aiohttp's parsers (C and Python) raise a plain BadHttpMessage with this text.
TOO_MANY_HEADERS = "Too many headers received"


@dataclass(frozen=True, slots=True)
class Refusal:
    status: int
    reason: str
    message: str


def refusal_for(
    status: int, exc: BaseException | None, in_request_line: bool, limits: ServerSettings
) -> Refusal:
    """What to answer a request aiohttp could not parse (or whose handler failed). Pure."""
    if isinstance(exc, HeadRefusal):
        return Refusal(400, exc.reason, exc.public)
    if isinstance(exc, LineTooLong):
        # aiohttp raises LineTooLong for the request line and for header fields alike; where
        # GatewayConnection could not tell (pipelined requests), the limit it names may.
        named = exc.args[1] if len(exc.args) > 1 else None
        distinct = limits.max_line_bytes != limits.max_header_bytes
        if in_request_line or (distinct and named == limits.max_line_bytes):
            # RFC 9110 section 15.5.15: the target is longer than the server will interpret.
            return Refusal(
                414,
                "uri-too-long",
                f"Request line is longer than the gateway's limit of {limits.max_line_bytes} "
                "bytes.",
            )
        # RFC 6585 section 5: one field, or all of them, too large.
        return Refusal(
            431,
            "header-too-large",
            f"A request header field is longer than the gateway's limit of "
            f"{limits.max_header_bytes} bytes.",
        )
    if isinstance(exc, BadHttpMessage) and exc.message == TOO_MANY_HEADERS:
        return Refusal(
            431,
            "too-many-headers",
            f"Request has more header fields than the gateway's limit of {limits.max_headers}.",
        )
    if status == 400:
        # The parser's own message may quote the request, secrets included: never echo it.
        return Refusal(400, NOT_HTTP_1.reason, NOT_HTTP_1.public)
    if status == 500:
        return Refusal(500, "internal", "Internal gateway error")
    return Refusal(status, f"http-{status}", HTTPStatus(status).phrase)


def timeout_response(message: str, ref_id: str, request_id: str) -> bytes:
    """408 in the ErrorResponse shape, written to a connection that never sent a whole head."""
    body = error_body(message, ref_id)
    head = (
        "HTTP/1.1 408 Request Timeout\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Connection: close\r\n"
        f"x-gateway-request-id: {request_id}\r\n\r\n"
    )
    return head.encode() + body


class GatewayConnection(web.RequestHandler):
    """aiohttp's connection protocol, with four changes.

    - The hit path (gateway/http/hit_path.py): while the connection is idle, a request that is a
      plain memory hit is answered as soon as it is parsed, without aiohttp's task, request,
      middleware, router and response objects. Anything else, and everything behind it on the
      connection, goes to aiohttp in order.
    - A header timeout. aiohttp's only bound on a slow head is keepalive_timeout (75 s under
      web.run_app), counted from the connection's start or its last answer, and it closes idle
      connections too. Here, from the connection's start, or from the first byte of a request
      that arrives while it is idle, the request's whole head must arrive within
      `header_timeout` seconds. A body, a streamed answer and idle keep-alive are not timed.
    - Requests aiohttp refuses before any handler runs (too long, too many headers, malformed)
      get an ErrorResponse with the right status (414, 431 or 400) instead of a text page.
    - Request bodies are not decompressed: they are forwarded as they came.

    aiohttp offers no public hook for any of these: this overrides RequestHandler's public
    methods, puts a ParserTap in its private `_parser`, reads `_waiter` (set while it waits for
    the next request), and keeps its keep-alive timer (`_keepalive_timeout`, `_keepalive_handle`,
    `_next_keepalive_close_time`, `_process_keepalive`) as its own loop does after an answer.
    tests/http/test_limits.py and tests/http/test_hit_path.py pin the behaviour.
    """

    __slots__ = (
        "_head_deadline",
        "_head_received",
        "_head_timer",
        "_hits",
        "_in_request_line",
        "_limits",
        "_line_bytes",
        "_line_started",
        "_metrics",
        "_request_line_failed",
        "_tap",
        "_timer_loop",
    )

    def __init__(
        self,
        manager: web.Server,
        *,
        loop: asyncio.AbstractEventLoop,
        limits: ServerSettings,
        metrics: Metrics | None,
        hits: HitPath | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            manager,
            loop=loop,
            max_line_size=limits.max_line_bytes,
            max_field_size=limits.max_header_bytes,
            max_headers=limits.max_headers,
            # A request body goes upstream as it came, Content-Encoding and all: decompressed,
            # it would be forwarded still labelled compressed, and a bad one blamed on upstream.
            auto_decompress=False,
            **kwargs,
        )
        self._limits = limits
        self._metrics = metrics
        self._hits = hits
        self._tap = ParserTap(self._parser, self._answer_hits)
        self._parser = self._tap  # type: ignore[assignment]  # it passes on what it does not add
        self._timer_loop = loop
        self._head_deadline: float | None = None
        self._head_timer: asyncio.TimerHandle | None = None
        self._head_received = False
        self._in_request_line = False
        self._line_bytes = 0
        self._line_started = False
        self._request_line_failed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._start_head()

    def connection_lost(self, exc: BaseException | None) -> None:
        self._head_deadline = None
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if data and self._head_deadline is None and self._awaiting_request():
            self._start_head()
        if self._head_deadline is None:  # a body, or requests pipelined behind a running one
            super().data_received(data)
            return
        self._head_received = self._head_received or bool(data)
        parsed = self._tap.heads
        cut = self._request_line_length(data) if self._in_request_line else 0
        self._line_bytes += cut
        if cut and (self._in_request_line or self._line_bytes > self._limits.max_line_bytes):
            # A request line that may be over the limit is fed on its own: an error while
            # parsing it is the line's. That tells an over-long URL (414) from an over-long
            # header field (431), which aiohttp reports alike.
            super().data_received(data[:cut])
            if self._tap.heads != parsed:
                self._request_line_failed = True
            elif cut < len(data):
                super().data_received(data[cut:])
        else:
            super().data_received(data)
        if self._tap.heads != parsed:  # a whole head (or a refusal) is in
            self._head_deadline = None

    def _answer_hits(self, messages: Messages) -> Messages:
        """Answer the hits at the front of `messages` (just parsed) at once, if the connection
        is idle; return the rest, for aiohttp to queue and answer in order after them."""
        hits = self._hits
        if hits is None or not self._awaiting_request():
            return messages
        for i, (message, payload) in enumerate(messages):
            transport = self.transport
            # A client that is not reading its answers is left to aiohttp, which waits on it.
            if transport is None or self.writing_paused:
                return messages[i:]
            response = hits.answer(message, payload)
            if response is None:
                return messages[i:]
            transport.write(response)
            self._answered()
        return []

    def _answered(self) -> None:
        """What aiohttp does after answering a request, for one answered by the hit path."""
        self._tap.message_consumed()
        if self._manager is not None:
            self._manager.requests_count += 1
        if self._keepalive_timeout > 0:
            close_time = self._timer_loop.time() + self._keepalive_timeout
            self._next_keepalive_close_time = close_time
            if self._keepalive_handle is None:
                self._keepalive_handle = self._timer_loop.call_at(
                    close_time, self._process_keepalive
                )

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        """The ErrorResponse for a request aiohttp refused, or whose handler escaped."""
        if request.writer.output_size > 0:
            raise ConnectionError("Response is sent already, cannot send another response")
        refusal = refusal_for(status, exc, self._request_line_failed, self._limits)
        ref_id, request_id = str(uuid.uuid4()), next_request_id()
        self._log_refusal(refusal, ref_id, request_id, exc)
        response = web.Response(
            status=refusal.status,
            body=error_body(refusal.message, ref_id),
            content_type="application/json",
            # Said even to HTTP/1.0 (how aiohttp answers a request it could not parse).
            headers={"x-gateway-request-id": request_id, "Connection": "close"},
        )
        response.force_close()
        return response

    def _log_refusal(
        self, refusal: Refusal, ref_id: str, request_id: str, exc: BaseException | None
    ) -> None:
        if self._metrics is not None:
            self._metrics.errors.labels(refusal.reason).inc()
        fields: dict[str, Any] = {
            "status": refusal.status,
            "reason": refusal.reason,
            "ref_id": ref_id,
            "message": refusal.message,
            "request_id": request_id,
            "error": type(exc).__name__ if exc is not None else None,
        }
        if refusal.status >= 500:
            log.error("gateway.internal_error", exc_info=exc, **fields)
        else:
            log.warning("gateway.error", **fields)

    def _awaiting_request(self) -> bool:
        """Whether the connection is idle: aiohttp waits for a request and has none queued."""
        waiter = self._waiter
        return waiter is not None and not waiter.done()

    def _start_head(self) -> None:
        self._head_deadline = self._timer_loop.time() + self._limits.header_timeout
        self._head_received = False
        self._in_request_line = True
        self._line_bytes = 0
        self._line_started = False
        self._request_line_failed = False
        if self._head_timer is None:
            self._head_timer = self._timer_loop.call_at(self._head_deadline, self._head_expired)

    def _request_line_length(self, data: bytes) -> int:
        """How much of `data` is request line: up to its LF, or all of it if it goes on."""
        start = 0
        if not self._line_started:
            # RFC 9112 section 2.2: empty lines before a request line are ignored.
            start = len(data) - len(data.lstrip(b"\r\n"))
            if start == len(data):
                return start
            self._line_started = True
        end = data.find(b"\n", start)
        if end < 0:
            return len(data)
        self._in_request_line = False
        return end + 1

    def _head_expired(self) -> None:
        # One timer serves every request: it is left running when a head arrives in time, and
        # moved on to the next deadline when it fires early.
        self._head_timer = None
        deadline = self._head_deadline
        if deadline is None or self.transport is None:
            return
        if self._timer_loop.time() < deadline:
            self._head_timer = self._timer_loop.call_at(deadline, self._head_expired)
            return
        self._head_deadline = None
        if self._head_received:
            # RFC 9110 section 15.5.9: 408, and the connection is closed.
            ref_id, request_id = str(uuid.uuid4()), next_request_id()
            refusal = Refusal(408, "request-timeout", "The request's head did not arrive in time.")
            self._log_refusal(refusal, ref_id, request_id, None)
            self.transport.write(timeout_response(refusal.message, ref_id, request_id))
        # A connection that sent nothing is closed quietly, as an idle keep-alive one is.
        self.force_close()

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
from ..errors import closing_error_response, error_body
from ..ops.metrics import Metrics
from . import internals
from .middleware import next_request_id
from .request_head import (
    NOT_HTTP_1,
    HeadRefusal,
    ParserLimits,
    field_too_long,
    parser_limits,
    too_many_fields,
    url_too_long,
)

log = structlog.get_logger("gateway.server")
TIMED_OUT = "The request's head did not arrive in time."


@dataclass(frozen=True, slots=True)
class Refusal:
    status: int
    reason: str
    message: str


def refusal_for(
    status: int,
    exc: BaseException | None,
    in_request_line: bool,
    limits: ServerSettings,
    *,
    parser: ParserLimits | None = None,
    too_many_headers: bool = False,
    read_shapes: bool = True,
) -> Refusal:
    """What to answer a request aiohttp could not parse (or whose handler failed). Pure.

    `parser`: the limits aiohttp's parser was given (by default the gateway's own). With
    `read_shapes`, aiohttp's private shapes (LineTooLong's args, the parser's text) tell the
    limit broken; without (the public stack), the connection's own count says."""
    parser = parser or parser_limits(limits, whole_lines=False)
    refusal: HeadRefusal | None = exc if isinstance(exc, HeadRefusal) else None
    if isinstance(exc, LineTooLong):
        # aiohttp raises LineTooLong for the request line and for header fields alike; where
        # the connection could not tell (pipelined requests), the limit it names may.
        named = internals.line_limit(exc) if read_shapes else None
        distinct = parser.line != parser.field
        by_name = distinct and named == parser.line
        refusal = url_too_long(limits) if in_request_line or by_name else field_too_long(limits)
    elif isinstance(exc, BadHttpMessage) and (
        too_many_headers or (read_shapes and internals.is_too_many_headers(exc))
    ):
        refusal = too_many_fields(limits)
    if refusal is not None:
        return Refusal(refusal.status, refusal.reason, refusal.public)
    if status == 400:
        # The parser's own message may quote the request, secrets included: never echo it.
        return Refusal(400, NOT_HTTP_1.reason, NOT_HTTP_1.public)
    if status == 500:
        return Refusal(500, "internal", "Internal gateway error")
    return Refusal(status, f"http-{status}", HTTPStatus(status).phrase)


class TimedConnection(web.RequestHandler):
    """aiohttp's connection protocol, with a header timeout and ErrorResponse refusals; public
    API only. Its subclasses say when a connection is idle and which limit a refusal broke.

    - A header timeout. aiohttp's only bound on a slow head is keepalive_timeout (75 s under
      web.run_app), counted from the connection's start or its last answer, and it closes idle
      connections too. Here, from the connection's start, or from the first byte of a request
      that arrives while it is idle, the request's whole head must arrive within
      `header_timeout` seconds. A body, a streamed answer and idle keep-alive are not timed.
    - Requests aiohttp refuses before any handler runs (too long, too many headers, malformed)
      get an ErrorResponse with the right status (414, 431 or 400) instead of a text page.
    - Request bodies are not decompressed: they are forwarded as they came.
    """

    __slots__ = (
        "_head_deadline",
        "_head_received",
        "_head_timer",
        "_limits",
        "_metrics",
        "_parser_limits",
        "_timer_loop",
    )

    def __init__(
        self,
        manager: web.Server,
        *,
        loop: asyncio.AbstractEventLoop,
        limits: ServerSettings,
        parser: ParserLimits,
        metrics: Metrics | None,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            manager,
            loop=loop,
            max_line_size=parser.line,
            max_field_size=parser.field,
            max_headers=parser.headers,
            # A request body goes upstream as it came, Content-Encoding and all: decompressed,
            # it would be forwarded still labelled compressed, and a bad one blamed on upstream.
            auto_decompress=False,
            **kwargs,
        )
        self._limits = limits
        self._parser_limits = parser
        self._metrics = metrics
        self._timer_loop = loop
        self._head_deadline: float | None = None
        self._head_timer: asyncio.TimerHandle | None = None
        self._head_received = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._start_head()

    def connection_lost(self, exc: BaseException | None) -> None:
        self._head_deadline = None
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        super().connection_lost(exc)

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
        refusal = self._refusal(status, exc)
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

    def _refusal(self, status: int, exc: BaseException | None) -> Refusal:
        raise NotImplementedError

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

    def _start_head(self) -> None:
        self._head_deadline = self._timer_loop.time() + self._limits.header_timeout
        self._head_received = False
        if self._head_timer is None:
            self._head_timer = self._timer_loop.call_at(self._head_deadline, self._head_expired)

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
            refusal = Refusal(408, "request-timeout", TIMED_OUT)
            self._log_refusal(refusal, ref_id, request_id, None)
            self.transport.write(closing_error_response(408, TIMED_OUT, ref_id, request_id))
        # A connection that sent nothing is closed quietly, as an idle keep-alive one is.
        self.force_close()

"""The connection of the public stack: what serves every request where the fast path is off.

It uses aiohttp's public API only (see gateway/http/internals.py for what counts), and keeps
the fast path's answers: the header timeout (408, or a quiet close when nothing was sent) and
the ErrorResponse refusals (414, 431, 400, and request_head's rules, checked as each request
reaches its handler: `checking_heads`). Without a view of aiohttp's parser and queue, it
follows each head itself (head_meter.HeadMeter), and knows a request taken from aiohttp's queue
(`request_started`, called by the server's request factory: `telling_starts`) and one answered
(`finish_response`). Where that differs from the fast path:

- A request that comes after one whose body the gateway did not read (aiohttp reads the rest
  before the next request; 401 to a POST with a body, say) is not timed on that connection.
- Of requests pipelined behind one with a body (sent before its answer came), an over-long
  request line is 431, not 414, and too many header fields 400, not 431: heads are followed
  only up to a head with a body, until the connection is idle again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import LineTooLong

from ..config import ServerSettings
from ..ops.metrics import Metrics
from .connection import Refusal, TimedConnection, refusal_for
from .head_meter import HeadMeter
from .request_head import ParserLimits, head_refusal


class PublicConnection(TimedConnection):
    """TimedConnection over public API only: idle is told by requests taken and answered."""

    __slots__ = ("_heads_pending", "_in_flight", "_meter", "_metering", "_unread_body")

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
        self._meter = HeadMeter(limits.max_line_bytes)
        self._metering = True  # until a head with a body: what follows it is not a head
        self._heads_pending = 0  # whole heads the meter saw that aiohttp has not handed out
        self._in_flight = 0  # requests handed out, not yet answered
        self._unread_body = False
        super().__init__(
            manager, loop=loop, limits=limits, parser=parser, metrics=metrics, **kwargs
        )

    def data_received(self, data: bytes) -> None:
        if data and self._head_deadline is None and self._idle():
            self._start_head()
        if data and self._metering:
            self._head_received = self._head_received or self._head_deadline is not None
            self._follow_heads(data)
        super().data_received(data)

    def _follow_heads(self, data: bytes) -> None:
        """Meter the heads in `data`: each one without a body is followed by the next."""
        meter = self._meter
        while data:
            end = meter.feed(data)
            if end is None:
                return
            self._head_deadline = None
            self._heads_pending += 1
            if meter.body:
                self._metering = False
                return
            data = data[end:]

    def request_started(self) -> None:
        """aiohttp took a request (or a refusal) from its queue: its head is in."""
        self._head_deadline = None
        self._heads_pending = max(0, self._heads_pending - 1)
        self._unread_body = False
        self._in_flight += 1

    async def finish_response(
        self, request: web.BaseRequest, resp: web.StreamResponse, start_time: float | None
    ) -> tuple[web.StreamResponse, bool]:
        try:
            return await super().finish_response(request, resp, start_time)
        finally:
            self._in_flight -= 1
            # aiohttp reads what is left of an unread body before its next request: until
            # then, bytes that come are that body's, not a head's.
            self._unread_body = not request.content.is_eof()

    def _idle(self) -> bool:
        return self._in_flight == 0 and self._heads_pending == 0 and not self._unread_body

    def _start_head(self) -> None:
        super()._start_head()
        if not self._metering:  # else the meter has this head's bytes so far, if any
            self._meter.reset()
            self._metering = True

    def _refusal(self, status: int, exc: BaseException | None) -> Refusal:
        meter = self._meter
        in_line = isinstance(exc, LineTooLong) and (
            meter.in_request_line or meter.target_bytes() > self._limits.max_line_bytes
        )
        too_many = meter.fields > self._limits.max_headers
        return refusal_for(
            status,
            exc,
            in_line,
            self._limits,
            parser=self._parser_limits,
            too_many_headers=too_many,
            read_shapes=False,
        )


Handler = Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]


def checking_heads(handler: Handler, measured: Callable[[], ServerSettings] | None) -> Handler:
    """`handler`, after request_head's rules (the fast path applies them as heads are parsed);
    with `measured`, a head over the limits it gives (those in force: a reload changes them)
    is refused too (request_head.parser_limits)."""

    async def check_head(request: web.BaseRequest) -> web.StreamResponse:
        limits = None if measured is None else measured()
        refusal = head_refusal(request.version, request.raw_headers, request.raw_path, limits)
        if refusal is not None:
            return request.protocol.handle_error(request, 400, refusal)
        return await handler(request)

    return check_head


def telling_starts(factory: Any) -> Any:
    """aiohttp's request `factory`, telling each PublicConnection when a request is taken from
    its queue (aiohttp calls it then, for a refused head too)."""

    def make_request(
        message: Any, payload: Any, protocol: Any, writer: Any, task: Any
    ) -> web.BaseRequest:
        if isinstance(protocol, PublicConnection):
            protocol.request_started()
        request: web.BaseRequest = factory(message, payload, protocol, writer, task)
        return request

    return make_request

"""The fast path's connection: hits answered as they are parsed, over aiohttp's private parts.

Every private name it reaches goes through gateway/http/internals.py, and it is used only
where that module's start-up check found each as expected (server.GatewayRunner).
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from ..config import ServerSettings
from ..ops.metrics import Metrics
from . import internals
from .connection import Refusal, TimedConnection, refusal_for
from .hit_path import HitPath, ParserTap
from .request_head import Messages, ParserLimits


class GatewayConnection(TimedConnection):
    """TimedConnection, with the hit path, and heads told apart by aiohttp's own parser.

    - The hit path (gateway/http/hit_path.py): while the connection is idle, a request that is a
      plain memory hit is answered as soon as it is parsed, without aiohttp's task, request,
      middleware, router and response objects. Anything else, and everything behind it on the
      connection, goes to aiohttp in order.
    - A ParserTap in aiohttp's parser's place counts the heads parsed; an idle connection is
      one where aiohttp waits for a request with none queued. After a hit, the keep-alive
      timer is set as aiohttp's own loop sets it after an answer.

    tests/http/test_limits.py and tests/http/test_hit_path.py pin the behaviour.
    """

    __slots__ = (
        "_hits",
        "_in_request_line",
        "_line_bytes",
        "_line_started",
        "_request_line_failed",
        "_server",
        "_tap",
    )

    def __init__(
        self,
        manager: web.Server,
        *,
        loop: asyncio.AbstractEventLoop,
        limits: ServerSettings,
        parser: ParserLimits,
        metrics: Metrics | None,
        hits: HitPath | None = None,
        **kwargs: Any,
    ) -> None:
        self._in_request_line = False
        self._line_bytes = 0
        self._line_started = False
        self._request_line_failed = False
        super().__init__(
            manager, loop=loop, limits=limits, parser=parser, metrics=metrics, **kwargs
        )
        self._server = manager
        self._hits = hits
        measured = limits if parser.checked else None
        self._tap = ParserTap(internals.parser_of(self), self._answer_hits, measured)
        internals.set_parser(self, self._tap)

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
        self._server.requests_count += 1
        internals.restart_keepalive(self, self._timer_loop)

    def _refusal(self, status: int, exc: BaseException | None) -> Refusal:
        return refusal_for(
            status, exc, self._request_line_failed, self._limits, parser=self._parser_limits
        )

    # Bound as a method: no extra call on the hit path.
    _awaiting_request = internals.awaiting_request

    def _start_head(self) -> None:
        super()._start_head()
        self._in_request_line = True
        self._line_bytes = 0
        self._line_started = False
        self._request_line_failed = False

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

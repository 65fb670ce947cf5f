"""Pass-through: every other Parallel call goes upstream as sent, and streams back as it comes."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Container
from contextlib import AbstractContextManager
from dataclasses import dataclass

import aiohttp
import structlog
from aiohttp import web
from multidict import CIMultiDict

from ..billing.calls import BILLABLE, calls_made
from ..cache.policy import CACHE_BYPASS, cache_status
from ..errors import DO_NOT_RETRY, PayloadTooLargeError
from ..keys.ownership import created_ids
from ..ops.log import enter_call, leave_call
from ..state import (
    APP_NAME,
    BUDGETS,
    DRAINING,
    LIVE_SETTINGS,
    OWNERSHIP,
    REQUEST_ID,
    SETTINGS,
    STREAMS,
    TALLY,
    UPSTREAM,
    UPSTREAM_WAIT,
)
from ..upstream.answers import Answer
from ..upstream.errors import error_name
from .catalog import Creates, Route
from .headers import forwarded_response_headers

log = structlog.get_logger("gateway.forward")
CHUNK = 64 * 1024
NO_HOLD = contextlib.nullcontext()  # a call no budget caps


async def limited(
    content: aiohttp.StreamReader, limit: int, kept: list[bytes] | None = None
) -> AsyncIterator[bytes]:
    """The request body as it arrives, refused once it passes `limit` bytes (and appended to
    `kept`, when given: a billable call's body, which billing reads once it is answered).

    A body without Content-Length is streamed, never held whole, so upstream sees the start of
    a request that is then cut off; it never arrives complete, so nothing is created.
    """
    size = 0
    async for chunk in content.iter_chunked(CHUNK):
        size += len(chunk)
        if size > limit:
            raise PayloadTooLargeError(_too_large(limit))
        if kept is not None:
            kept.append(chunk)
        yield chunk


async def read_body(request: web.Request) -> bytes:
    """The whole request body, refused (413) past server.max_body_bytes as `forward` refuses
    it, for a caller that must see it before it is forwarded (a create matched for replay)."""
    limit = _body_limit(request)
    return b"".join([chunk async for chunk in limited(request.content, limit)])


def _body_limit(request: web.Request) -> int:
    """server.max_body_bytes as now in force; 413 at once for a body that says it is longer."""
    limit = request.app[LIVE_SETTINGS].current.server.max_body_bytes
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLargeError(_too_large(limit))
    return limit


@dataclass(frozen=True, slots=True)
class Keep:
    """A cacheable route's answer on its way back: one of `statuses` (a 200; a create's 202)
    of at most `limit` bytes (as its Content-Length says) is read whole and offered to `store`,
    which says whether it stored it.

    A 200 streamed without a Content-Length is copied as it is relayed, up to `stream_limit`
    bytes (0: never; the copy is dropped once past it), and offered once upstream has ended it.
    """

    limit: int
    store: Callable[[bytes], Awaitable[bool]]
    statuses: Container[int] = (200,)
    stream_limit: int = 0


def _too_large(limit: int) -> str:
    return f"Request body is larger than the gateway's limit of {limit} bytes."


@dataclass(slots=True)
class AnswerRelay:
    """What a forwarded call does with upstream's answer (UpstreamClient.exchange's `relay`).

    An object rather than a closure: a call open for minutes holds one small object, not a
    function and a cell per variable it reads (about 500 bytes less per open call)."""

    request: web.Request
    body: bytes | AsyncIterator[bytes] | None  # as sent upstream
    keep: Keep | None
    billed: str | None  # the billable kind, if the call is one
    streamed: list[bytes] | None  # a billable call's streamed body, as sent
    creates: Creates | None  # what it creates, where ownership is recorded

    async def __call__(self, resp: Answer, read: bytes | None, spent: bool) -> web.StreamResponse:
        request, keep = self.request, self.keep
        app = request.app
        headers = forwarded_response_headers(resp.headers, app[UPSTREAM].scrubber.scrub_text)
        if spent:  # the gateway retried already: the SDK must not multiply its attempts
            headers.update(DO_NOT_RETRY)
        headers["Cache-Status"] = CACHE_BYPASS
        tee: Keep | None = None
        if keep is not None:
            stored = False
            if resp.status in keep.statuses and _fits(resp, keep.limit):
                read = await resp.read()
                stored = await keep.store(read)
            elif resp.status == 200 and keep.stream_limit:
                tee = keep  # its head goes first: "stored" cannot be promised
            headers["Cache-Status"] = cache_status(stored=stored, fwd_status=resp.status)
        if self.billed is not None and 200 <= resp.status < 300:
            read = await resp.read() if read is None else read
            body = self.body
            asked = body if isinstance(body, bytes) else b"".join(self.streamed or ())
            made = calls_made(self.billed, asked, read)
            app[TALLY].count_calls(request[APP_NAME], self.billed, made)
        if self.creates is not None and 200 <= resp.status < 300:
            read = await resp.read()
            # Never fails the answer: upstream has created the run, and the app must learn it.
            # Shielded: an app that hangs up meanwhile must not cancel the record (or its log).
            record = app[OWNERSHIP].record(request[APP_NAME], created_ids(self.creates, read))
            await asyncio.shield(record)
        elif read is None and _small(resp):
            read = await resp.read()
        if read is not None:
            headers.popall("Content-Length", None)
            return web.Response(status=resp.status, body=read, headers=headers)
        return await _stream(request, resp, headers, tee)


async def forward(
    request: web.Request, route: Route, keep: Keep | None = None, sent: bytes | None = None
) -> web.StreamResponse:
    """Send the request upstream with the team key, and relay the answer unchanged (offering it
    to `keep`, on a cacheable route). `sent`: its body, where the caller has read it already."""
    app = request.app
    limit = _body_limit(request)
    body: bytes | AsyncIterator[bytes] | None = sent
    billed = BILLABLE.get(route.name)
    # A billable call's streamed body, as sent: billing reads it.
    streamed: list[bytes] | None = [] if billed is not None else None
    if sent is None and request.content_length is not None and 0 < request.content_length <= CHUNK:
        # Read first, it goes upstream in one write with its head (streamed, it would be sent
        # chunked: a write for the head, each chunk and the end).
        body = await request.read()
    elif sent is None and request.body_exists:
        body = limited(request.content, limit, streamed)
    # Only isolation mode "app" reads who created what (README: Run isolation).
    creates = route.creates if app[SETTINGS].isolation.mode == "app" else None
    relay = AnswerRelay(request, body, keep, billed, streamed, creates)

    budgets = app[BUDGETS]
    hold: AbstractContextManager[None] = NO_HOLD
    if billed is not None and budgets.capped(request[APP_NAME]):
        # A billable call under a budget: refused (402) before anything goes upstream if it
        # would pass the cap. A body of one chunk is read by now; a longer one's cost is not
        # known before it is sent. Here, not before: a create replayed instead costs nothing.
        asked = body if isinstance(body, bytes) else None
        hold = budgets.hold(request[APP_NAME], billed, asked)
    with hold:
        call = enter_call(request[REQUEST_ID], request[APP_NAME], route.name)
        started = time.perf_counter()
        try:
            return await app[UPSTREAM].exchange(
                request.method,
                request.raw_path,
                request.headers,
                body,
                relay,
                timing=route.timing,
                run_id=route.run_id,
                route=route.name,
            )
        finally:
            # A relayed answer's whole exchange counts as upstream time: a stream lasts as long
            # as upstream keeps it open.
            request[UPSTREAM_WAIT] = time.perf_counter() - started
            leave_call(call)


def _small(resp: Answer) -> bool:
    """Whether the answer is at most one chunk long, as it says: read, it goes back in one write
    with its head (streamed, the head and the body would take a write each)."""
    return _fits(resp, CHUNK)


def _fits(resp: Answer, limit: int) -> bool:
    """Whether the answer says it is at most `limit` bytes long."""
    length = resp.content_length
    return length is not None and length <= limit


async def _stream(
    request: web.Request,
    resp: Answer,
    headers: CIMultiDict[str],
    keep: Keep | None = None,
) -> web.StreamResponse:
    """Relay the body chunk by chunk as it arrives: Server-Sent Events reach the app at once.
    With `keep`, a copy of at most keep.stream_limit bytes is offered to it once upstream has
    ended the stream; one cut off (by upstream, the app or a shutdown), or past the limit, is
    dropped."""
    response = web.StreamResponse(status=resp.status, headers=headers)
    response.headers["x-gateway-request-id"] = request[REQUEST_ID]
    await response.prepare(request)
    streams = request.app[STREAMS]
    streams.add(resp)
    copy = bytearray() if keep is not None else None
    try:
        async for chunk in resp.content.iter_any():
            await response.write(chunk)
            if copy is not None and keep is not None:
                if len(copy) + len(chunk) > keep.stream_limit:
                    copy = None  # never more than the bound, whatever upstream sends
                else:
                    copy += chunk
            del chunk  # not held while the stream waits for its next event
        if copy is not None and keep is not None:
            # Before the stream's end reaches the app: its next call finds the copy stored.
            await keep.store(bytes(copy))
    except ConnectionResetError:
        # The app went away; leaving here releases (closes) the upstream stream too.
        log.info("client.disconnected")
        return response
    except (aiohttp.ClientError, TimeoutError) as e:
        if not request.app[DRAINING][0]:
            # The status line is gone already: all that is left is to cut the connection, so
            # the app sees a broken body rather than a short one.
            log.warning("upstream.stream_broken", error=error_name(e))
            if request.transport is not None:
                request.transport.close()
            return response
        # Shutting down: end the stream cleanly, at an event boundary.
        log.info("stream.closed_for_shutdown")
    finally:
        streams.discard(resp)
    await response.write_eof()
    return response

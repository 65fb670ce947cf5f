"""Calls to Parallel over a lean HTTP/1.1 client: one origin, pooled keep-alive connections,
and httptools' parser (llhttp, as aiohttp's server uses).

Why not aiohttp's client: it was most of what a forwarded call costs. Measured in one run on
this project's bench machine, an aiohttp server relaying with aiohttp's client spent 205-239 us
of CPU per call, and the same server relaying with this client 72-89 us; and an open long poll
held about 25 kB of Python objects with aiohttp's client, 19 kB with this one. A request body
that streams (over 64 KiB, or unsized) still goes over aiohttp's client (UpstreamClient picks),
and so does everything when httptools cannot be imported, or GATEWAY_FAST_PATH=off.

What it does not do, because the gateway never needs it: follow redirects, decompress, send a
streamed (chunked) request body, use a proxy, or speak HTTP/2. Its failures are
aiohttp.ClientError subclasses named as aiohttp names the same failure, so the gateway's error
handling (upstream/errors.py) and its logs treat both clients alike.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections import deque
from collections.abc import AsyncIterator, Mapping
from typing import Any, cast

import aiohttp
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

try:
    import httptools
except ImportError:  # no wheel for this platform: aiohttp's client serves every call
    httptools = None  # type: ignore[assignment]

# Past this many body bytes not yet taken by the gateway, the connection stops reading (TCP
# flow control then holds upstream), as aiohttp's StreamReader does at its high-water mark.
HIGH_WATER = 256 * 1024
# Idle connections older than this are closed rather than reused (aiohttp's keepalive_timeout).
KEEPALIVE = 30.0


class WireError(aiohttp.ClientError):
    """A short call that failed on the way. `name` is what aiohttp's client calls the same
    failure: logs and /readyz name a failure alike whichever client met it."""

    name = "ClientError"


class ConnectFailed(WireError):
    """No connection could be made: nothing was sent."""

    def __init__(self, os_error: OSError) -> None:
        super().__init__(str(os_error))
        self.os_error = os_error

    @property
    def name(self) -> str:  # type: ignore[override]
        if isinstance(self.os_error, socket.gaierror):
            return "ClientConnectorDNSError"
        if isinstance(self.os_error, ssl.SSLError):
            return "ClientSSLError"
        return "ClientConnectorError"


class ConnectTimedOut(WireError, TimeoutError):
    """The connection was not accepted in time: nothing was sent."""

    name = "ConnectionTimeoutError"


class ConnectCutShort(WireError, TimeoutError):
    """The call's own time ran out while connecting (a retry late in upstream.deadline): named
    as aiohttp's client names it, a plain timeout, though nothing was sent."""

    name = "TimeoutError"


class WentSilent(WireError, TimeoutError):
    """A long call's upstream sent nothing for longer than its silence allows."""

    name = "SocketTimeoutError"


class Disconnected(WireError):
    """Upstream closed the connection before its answer's head."""

    name = "ServerDisconnectedError"


class ConnectionBroke(WireError):
    """The connection failed (reset) before the answer's head: the request may have arrived."""

    name = "ClientOSError"

    def __init__(self, os_error: OSError) -> None:
        super().__init__(str(os_error))
        self.os_error = os_error


class BrokenAnswer(WireError):
    """Upstream's answer stopped partway through its body."""

    name = "ClientPayloadError"


class NotHttp(WireError):
    """Upstream answered bytes that are not an HTTP/1.1 response."""

    name = "ClientResponseError"


def available() -> bool:
    """Whether this client can run here (httptools imports)."""
    return httptools is not None


def request_head(
    method: str, target: str, host: str, headers: Mapping[str, str], body: bytes | None
) -> bytes:
    """The request's head, as aiohttp's client would write it for the gateway. Pure.

    Header values reach here ASCII and free of CR, LF and NUL (the gateway's parser refuses
    anything else before forwarding), so they are written as they came. Should one ever hold
    a line break, it would end the header early and start another, or another request, that
    goes upstream with the team key: ValueError instead, as aiohttp's client raises.
    """
    lines = [f"{method} {target} HTTP/1.1\r\nHost: {host}\r\n"]
    lines += [f"{name}: {value}\r\n" for name, value in headers.items()]
    if not any(name.lower() == "accept" for name in headers):
        lines.append("Accept: */*\r\n")
    if body is not None or method == "POST":
        lines.append(f"Content-Length: {len(body) if body is not None else 0}\r\n")
    lines.append("\r\n")
    text = "".join(lines)
    breaks = len(lines) + 1  # each line's CRLF, and the request line's
    if text.count("\n") != breaks or text.count("\r") != breaks or "\x00" in text:
        raise ValueError("A line break or NUL in a request's method, target or header")
    return text.encode("latin-1")


class WireResponse:
    """An answer as it arrives: its head at once, its body read whole or chunk by chunk."""

    __slots__ = (
        "_body",
        "_chunks",
        "_connection",
        "_done",
        "_error",
        "_released",
        "_size",
        "_waiter",
        "content_length",
        "headers",
        "status",
    )

    def __init__(self, connection: _Connection, status: int, headers: CIMultiDict[str]) -> None:
        self.status = status
        self.headers = CIMultiDictProxy(headers)
        length = headers.get("Content-Length")
        self.content_length = int(length) if length is not None and length.isdigit() else None
        self._connection = connection
        self._body: bytes | None = None
        self._released = False
        self._chunks: list[bytes] = []  # a list, not a deque: 56 bytes empty, not 600
        self._size = 0
        self._done = False
        self._error: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None

    @property
    def content(self) -> WireResponse:
        """As aiohttp's `resp.content`: what `iter_any` is called on."""
        return self

    async def read(self) -> bytes:
        """The whole body; again the same bytes on every later call, as aiohttp's."""
        if self._body is None:
            if self._done and self._error is None:  # it came with the head: a short answer
                self._body = b"".join(self._chunks)
                self._chunks.clear()
            else:
                self._body = b"".join([chunk async for chunk in self.iter_any()])
        return self._body

    async def iter_any(self) -> AsyncIterator[bytes]:
        """The body's bytes as they arrive, whatever has come at each step."""
        while True:
            if self._chunks:
                chunk = b"".join(self._chunks) if len(self._chunks) > 1 else self._chunks[0]
                self._chunks.clear()
                self._size = 0
                self._connection.resume_reading()
                yield chunk
                del chunk  # not held while the stream waits for its next bytes
            elif self._error is not None:
                raise self._error
            elif self._done:
                return
            else:
                self._waiter = asyncio.get_running_loop().create_future()
                try:
                    await self._waiter
                finally:
                    self._waiter = None

    def release(self) -> None:
        """Done with it: the connection goes back to the pool if the answer was read whole.
        Once only: by then the connection may be serving another call."""
        if not self._released:
            self._released = True
            self._connection.release(self._done and self._error is None)

    def close(self) -> None:
        """End it now (the gateway is shutting down): the connection is closed."""
        if not self._released:
            self._released = True
            self._connection.release(False)

    def _feed(self, chunk: bytes) -> None:
        self._chunks.append(chunk)
        self._size += len(chunk)
        if self._size > HIGH_WATER:
            self._connection.pause_reading()
        self._wake()

    def _finish(self, error: BaseException | None = None) -> None:
        if error is None:
            self._done = True
        elif not self._done and self._error is None:  # the first failure is the one to tell
            self._error = error
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)


class _Connection(asyncio.Protocol):
    """One keep-alive connection: one request at a time, its answer parsed as it comes."""

    __slots__ = (
        "_head",
        "_headers",
        "_heard",
        "_interim",
        "_keep_alive",
        "_loop",
        "_parser",
        "_paused",
        "_pool",
        "_response",
        "_silence",
        "_spoiled",
        "_timer",
        "_until_close",
        "idle_since",
        "transport",
    )

    def __init__(self, pool: WirePool) -> None:
        self._pool = pool
        self._loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self._parser: Any = httptools.HttpResponseParser(self)
        self._head: asyncio.Future[WireResponse] | None = None
        self._response: WireResponse | None = None
        self._headers: CIMultiDict[str] = CIMultiDict()
        self._until_close = False
        self._keep_alive = False
        self._interim = False  # parsing a 1xx answer, which is not the call's answer
        self._spoiled = False  # upstream sent more than the call's answer: never reused
        self._paused = False
        self.idle_since = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._silence = 0.0  # for a long call: the longest upstream may stay silent (else 0)
        self._heard = 0.0  # loop time upstream last sent bytes, while _silence is set

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A TCP transport (uvloop's are not asyncio.Transport subclasses, but behave as one).
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        if self._head is None and self._response is None:  # idle, yet upstream speaks
            self.release(False)
            return
        if self._silence:
            self._heard = self._loop.time()
        try:
            self._parser.feed_data(data)
        except Exception as e:  # httptools.HttpParserError, or an upgrade it will not follow
            self._fail(NotHttp(f"not an HTTP/1.1 answer: {e}"))
            self.release(False)

    def eof_received(self) -> bool:
        return False  # close the transport; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self._pool.forget(self)
        response = self._response
        if response is not None and self._until_close and exc is None:
            response._finish()  # a body that runs until the connection closes
        elif response is not None:
            response._finish(BrokenAnswer("the connection closed partway through the body"))
        elif self._head is not None and isinstance(exc, OSError):
            self._fail(ConnectionBroke(exc))
        elif self._head is not None:
            self._fail(Disconnected("the connection closed before an answer"))
        self._cancel_timer()

    # httptools' callbacks

    def on_message_begin(self) -> None:
        if self._response is not None:  # a second answer to one request: bytes to distrust
            self._spoiled = True
        self._interim = False
        self._headers = CIMultiDict()

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.add(name.decode("latin-1"), value.decode("latin-1"))

    def on_headers_complete(self) -> None:
        headers = self._headers
        status = self._parser.get_status_code()
        if 100 <= status < 200 and status != 101:
            # 100 Continue, 103 Early Hints: the answer follows (aiohttp's client skips them).
            self._interim = True
            return
        # Asked now: once the message is complete the parser has moved on, and says False.
        self._keep_alive = self._parser.should_keep_alive()
        self._until_close = (
            "Content-Length" not in headers
            and "Transfer-Encoding" not in headers
            and not self._keep_alive
        )
        response = WireResponse(self, status, headers)
        self._response = response
        if self._head is not None and not self._head.done():
            self._head.set_result(response)

    def on_body(self, body: bytes) -> None:
        if self._response is not None and not self._interim:
            self._response._feed(body)

    def on_message_complete(self) -> None:
        response = self._response
        if self._interim:
            self._interim = False
        elif response is not None:
            self._until_close = False
            self._cancel_timer()
            response._finish()

    # The pool's side

    @property
    def usable(self) -> bool:
        transport = self.transport
        return transport is not None and not transport.is_closing()

    def send(self, data: bytes, deadline: float, silence: float) -> asyncio.Future[WireResponse]:
        """Write a request; the future is its answer's head. Past `deadline` (loop time), or
        with `silence`, once upstream has sent nothing for that long, the call fails with
        TimeoutError, whether or not the head has come."""
        assert self.transport is not None
        self._head = self._loop.create_future()
        self._response = None
        self._spoiled = self._interim = False
        self._silence = silence
        self._heard = self._loop.time()
        self._timer = self._loop.call_at(deadline, self._timed_out)
        self.transport.write(data)
        return self._head

    def release(self, reusable: bool) -> None:
        """The answer is done with: keep the connection for the next call, or close it."""
        self._cancel_timer()
        head, response = self._head, self._response
        self._head = self._response = None
        if reusable and self.usable and self._keep_alive and not self._spoiled:
            self.resume_reading()
            self._pool.keep(self)
            return
        if head is not None and not head.done():  # a call still waiting for its answer's head
            head.set_exception(Disconnected("the gateway closed the connection"))
            head.exception()  # told to its waiter, if it has one; never logged as unretrieved
        if response is not None:  # a reader still waiting on its body learns it has ended
            response._finish(BrokenAnswer("the call was ended before its answer was read"))
        if self.transport is not None:
            self.transport.close()

    def pause_reading(self) -> None:
        if not self._paused and self.transport is not None:
            self._paused = True
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self._paused and self.transport is not None:
            self._paused = False
            self._heard = self._loop.time()  # silence is counted from here, not while paused
            self.transport.resume_reading()

    def _timed_out(self) -> None:
        # A long call re-arms its timer from the last bytes heard: one timer, not one per read.
        # While the app is slow to read, the gateway is not reading: that is not upstream's
        # silence (aiohttp's client stops its read timeout while paused too).
        quiet_until = max(self._heard, self._loop.time() if self._paused else 0) + self._silence
        if self._silence and quiet_until > self._loop.time():
            self._timer = self._loop.call_at(quiet_until, self._timed_out)
            return
        self._timer = None
        self._fail(WentSilent() if self._silence else TimeoutError())
        if self.transport is not None:
            self.transport.close()

    def _fail(self, error: BaseException) -> None:
        if self._response is not None:
            self._response._finish(error)
        elif self._head is not None and not self._head.done():
            self._head.set_exception(error)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


class WirePool:
    """Keep-alive connections to one origin (upstream.base_url), as many as calls need: short
    calls are bounded before they get here (upstream.max_short_calls)."""

    def __init__(self, base_url: str, connect_timeout: float) -> None:
        url = URL(base_url)
        assert url.host is not None
        assert url.port is not None
        self._host, self._port = url.host, url.port
        host = f"[{url.host}]" if ":" in url.host else url.host  # an IPv6 address
        self._host_header = host if url.is_default_port() else f"{host}:{url.port}"
        self._prefix = url.raw_path.rstrip("/")  # base_url's own path, if it has one
        self._ssl = ssl.create_default_context() if url.scheme == "https" else None
        self.connect_timeout = connect_timeout  # upstream.connect_timeout: reloads (SIGHUP)
        self._idle: deque[_Connection] = deque()  # oldest first
        self._open: set[_Connection] = set()

    async def request(
        self,
        method: str,
        target: str,
        headers: Mapping[str, str],
        body: bytes | None,
        seconds: float,
        *,
        silence: bool = False,
    ) -> WireResponse:
        """Send one request and return its answer once its head has come. Its body must then be
        read or the answer released. `seconds` bound the whole call, the body included; with
        `silence` (a long poll, a stream), each wait for upstream's next bytes instead.

        A kept connection that upstream closed meanwhile fails before any answer: a GET is then
        sent once more on a new connection (RFC 9112 section 9.3.1), as aiohttp's client does.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        quiet = seconds if silence else 0.0
        message = request_head(method, self._prefix + target, self._host_header, headers, body)
        if body:
            message += body
        connection = self._idle_connection(loop.time())
        while True:
            reused = connection is not None
            if connection is None:
                connection = await self._connect(None if silence else deadline - loop.time())
            try:
                return await connection.send(message, deadline, quiet)
            except (Disconnected, ConnectionBroke):
                connection.release(False)
                if not reused or method != "GET" or body:
                    raise
            except BaseException:
                connection.release(False)  # failed, or the app went away: not wanted now
                raise
            connection = None

    def keep(self, connection: _Connection) -> None:
        now = connection.idle_since = asyncio.get_running_loop().time()
        self._idle.append(connection)
        # Those idle past KEEPALIVE are closed as others come back (aiohttp closes them on a
        # timer; with no calls at all they stay until upstream closes them).
        while now - self._idle[0].idle_since >= KEEPALIVE:
            self._idle.popleft().release(False)

    def forget(self, connection: _Connection) -> None:
        self._open.discard(connection)

    def close(self) -> None:
        """Close every connection (the gateway is stopping)."""
        for connection in list(self._open):
            connection.release(False)
        self._idle.clear()

    def _idle_connection(self, now: float) -> _Connection | None:
        while self._idle:
            connection = self._idle.pop()
            if connection.usable and now - connection.idle_since < KEEPALIVE:
                return connection
            connection.release(False)
        return None

    async def _connect(self, left: float | None) -> _Connection:
        """A new connection within upstream.connect_timeout, or within the `left` seconds of a
        short call if sooner: then the call's own time ran out (ConnectCutShort), not the
        connect limit (ConnectTimedOut). A long call's connect has the connect limit alone."""
        loop = asyncio.get_running_loop()
        server_hostname = self._host if self._ssl is not None else None
        seconds = self.connect_timeout if left is None else min(self.connect_timeout, left)
        try:
            async with asyncio.timeout(seconds):
                _, connection = await loop.create_connection(
                    lambda: _Connection(self),
                    self._host,
                    self._port,
                    ssl=self._ssl,
                    server_hostname=server_hostname,
                )
        except TimeoutError:
            if seconds < self.connect_timeout:
                raise ConnectCutShort() from None
            message = f"no connection to {self._host_header} within {seconds:g} s"
            raise ConnectTimedOut(message) from None
        except OSError as e:
            raise ConnectFailed(e) from e
        self._open.add(connection)
        return connection

"""The only code that talks to Parallel: session, team key, timeouts, retries, error logging."""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import AsyncIterable, Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TypeVar

import aiohttp
import structlog
from yarl import URL

from ..config import UpstreamSettings
from ..errors import (
    DO_NOT_RETRY,
    GatewayError,
    NoTeamKeyError,
    OfflineError,
    UpstreamBusyError,
)
from ..http.catalog import EVENTS_ROUTE, INPUT_ROUTE, RESULT_ROUTE, RETRIEVE_ROUTE, Timing
from ..http.headers import request_headers, response_headers
from ..http.internals import fast_path_forced_off
from ..ops.activity import Activity
from ..ops.log import SecretScrubber
from ..ops.metrics import Metrics
from ..timestamps import rfc3339
from .answers import Answer
from .errors import (
    TEAM_KEY_STATUSES,
    before_sending,
    error_name,
    failure_error,
    host_of,
    log_error_response,
    redirect_error,
    team_key_rejected,
    unreadable_error,
)
from .retry import IDEMPOTENT_METHODS, SDK_RETRY_STATUSES, RetryPolicy
from .wire import WirePool, available

log = structlog.get_logger("gateway.upstream")
WIRE_METHODS = frozenset({"GET", "POST"})
T = TypeVar("T")
# What a miss on a cached route was looking for (a result is kept once its run has completed,
# a run object once its status is final).
CACHED_WHAT = {
    INPUT_ROUTE: "Run {run_id} is not in the gateway's cache",
    RESULT_ROUTE: "Run {run_id}'s result is not in the gateway's cache",
    RETRIEVE_ROUTE: "Run {run_id} is not in the gateway's cache in a final state",
    EVENTS_ROUTE: "Run {run_id}'s events are not in the gateway's cache",
}
# Given the live response; for an error, its body already read (to log its ref_id); and whether
# the gateway spent its retries on it (then the SDK must not retry it again).
Relay = Callable[[Answer, bytes | None, bool], Awaitable[T]]


@dataclass(frozen=True, slots=True)
class Contact:
    """How the last attempt to reach upstream went, for /readyz."""

    ok: bool
    at: float  # time.time(); formatted only when /readyz asks
    detail: str | int  # the error's name, or the status upstream answered

    def report(self) -> dict[str, str]:
        """What /readyz says about it."""
        when = datetime.fromtimestamp(self.at, UTC)
        detail = f"HTTP {self.detail}" if isinstance(self.detail, int) else self.detail
        return {
            "last_contact": "ok" if self.ok else "failed",
            "at": rfc3339(when),
            "detail": detail,
        }


@dataclass(frozen=True, slots=True)
class UpstreamResponse:
    status: int
    body: bytes
    headers: Mapping[str, str]  # the ones worth passing back to the app


def own_client_in_use() -> bool:
    """Whether calls go over upstream/wire.py (else aiohttp's client takes them all)."""
    return available() and not fast_path_forced_off()


class UpstreamClient:
    """Parallel, with the team key injected: every call over upstream/wire.py's pool, but a
    request body that streams (over 64 KiB or unsized), which goes over one long-lived aiohttp
    ClientSession, as every call does where httptools is missing or GATEWAY_FAST_PATH=off.
    Close it when done."""

    def __init__(
        self,
        settings: UpstreamSettings,
        team_key: str | None,
        session: aiohttp.ClientSession,
        metrics: Metrics | None = None,
        activity: Activity | None = None,
    ) -> None:
        self._metrics = metrics if metrics is not None else Metrics()
        self.activity = activity if activity is not None else Activity()  # for `status`
        self.last_contact: Contact | None = None
        self._team_key = team_key
        # Upstream text that reaches an app (headers, error bodies) passes through it first.
        self.scrubber = SecretScrubber([team_key] if team_key else [])
        self._session = session
        self._wire = (
            WirePool(settings.base_url, settings.connect_timeout) if own_client_in_use() else None
        )
        self._base = settings.base_url.rstrip("/")
        self._host = host_of(settings.base_url)  # as errors name it
        self._short_call = ShortCallSlot(settings)
        self.reconfigure(settings)

    def reconfigure(self, settings: UpstreamSettings) -> None:
        """Use `settings`' timeouts and retries from the next call on (SIGHUP). Where upstream
        is (base_url), its key and the number of short-call slots stay as they started."""
        self._settings = settings
        self._short_call.settings = settings
        if self._wire is not None:
            self._wire.connect_timeout = settings.connect_timeout
        self._policy = RetryPolicy(
            max_attempts=settings.max_attempts,
            backoff_initial=settings.backoff_initial,
            backoff_max=settings.backoff_max,
            retry_after_cap=settings.retry_after_cap,
        )

    def use_team_key(self, team_key: str) -> None:
        """Send `team_key` from the next request on (the key file was rotated)."""
        self.scrubber.add(team_key)
        self._team_key = team_key

    def close(self) -> None:
        """Close the short calls' connections (the session is closed by its owner)."""
        if self._wire is not None:
            self._wire.close()

    @property
    def configured(self) -> bool:
        return self._team_key is not None

    @property
    def offline(self) -> bool:
        return self._settings.offline

    async def get(
        self, raw_path: str, incoming: Mapping[str, str], run_id: str | None = None
    ) -> UpstreamResponse:
        """GET an idempotent resource, buffered, retrying transient failures."""

        async def keep(resp: Answer, body: bytes | None, spent: bool) -> UpstreamResponse:
            assert body is not None  # buffered
            if 300 <= resp.status < 400:
                raise redirect_error(resp, run_id, self.scrubber.scrub_text)
            headers = response_headers(resp.headers, self.scrubber.scrub_text)
            if spent:
                headers.update(DO_NOT_RETRY)
            return UpstreamResponse(resp.status, body, headers)

        return await self.exchange(
            "GET", raw_path, incoming, None, keep, buffered=True, run_id=run_id, route=INPUT_ROUTE
        )

    async def exchange(
        self,
        method: str,
        raw_path: str,
        incoming: Mapping[str, str],
        body: bytes | AsyncIterable[bytes] | None,
        relay: Relay[T],
        *,
        buffered: bool = False,
        timing: Timing = Timing.ORDINARY,
        run_id: str | None = None,
        route: str = "other",
    ) -> T:
        """Send one request upstream and hand its response to `relay`.

        `relay` gets the body too when `buffered`, and always for an error (whose ref_id is
        logged). A GET without a body is retried on failures and retryable statuses; any
        request whose body can be sent again is retried on a failed connect, since nothing was
        sent; nothing else is (a POST may create a run twice). Only before `relay` is called, so
        no byte has reached the app yet. Once the gateway gives up, the SDK is told not to retry
        on top: one app call makes at most upstream.max_attempts attempts.
        """
        team_key = self._ready(run_id, route)
        retryable = method == "GET" and body is None
        resendable = method in IDEMPOTENT_METHODS
        resend_safe = body is None or isinstance(body, bytes)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._settings.deadline
        headers = request_headers(incoming, team_key)
        short = timing is Timing.ORDINARY
        # GET and POST, the API's methods: a HEAD's answer has no body whatever its length says,
        # which the wire client's parser cannot be told; anything else goes over aiohttp's.
        sendable = method in WIRE_METHODS and (body is None or isinstance(body, bytes))
        wire = self._wire if sendable else None
        async with self._short_call if short else NO_SLOT:
            attempt = 0
            while True:
                attempt += 1
                sent = loop.time()
                try:
                    resp: Answer
                    if wire is not None:
                        assert body is None or isinstance(body, bytes)
                        seconds, silence = self._bound(timing, deadline - loop.time())
                        resp = await wire.request(
                            method, raw_path, headers, body, seconds, silence=silence
                        )
                    else:
                        resp = await self._via_session(
                            method, raw_path, headers, body, timing, deadline
                        )
                    try:
                        read = await self._read(resp, buffered)
                    except BaseException:
                        resp.release()
                        raise
                except (TimeoutError, aiohttp.ClientError) as e:
                    self._metrics.observe_upstream(route, 0, loop.time() - sent)
                    self.last_contact = Contact(False, time.time(), error_name(e))
                    if isinstance(e.__cause__, GatewayError):
                        # The request body's own refusal (too large), raised while sending it.
                        raise e.__cause__ from None
                    remaining = deadline - loop.time()
                    may_retry = retryable or (resend_safe and before_sending(e))
                    delay = self._policy.next_delay(attempt, remaining) if may_retry else None
                    log.warning(
                        "upstream.attempt_failed",
                        attempt=attempt,
                        error=error_name(e),
                        run_id=run_id,
                        retry_in=delay,
                    )
                    if delay is None:
                        raise self._failure(
                            e, resendable or before_sending(e), route, run_id
                        ) from e
                    self._metrics.retries.labels(route).inc()
                    await asyncio.sleep(delay)
                    continue
                self._metrics.observe_upstream(route, resp.status, loop.time() - sent)
                self.last_contact = Contact(True, time.time(), resp.status)
                try:
                    minted = None
                    if resp.status >= 400:
                        assert read is not None
                        ref_id, minted, said = log_error_response(
                            resp.status, read, attempt, run_id, route
                        )
                        self.activity.upstream_error(resp.status, ref_id, route, run_id, said)
                        if resp.status in TEAM_KEY_STATUSES:
                            detail = f"HTTP {resp.status}: team key rejected (ref_id {ref_id})"
                            self.last_contact = Contact(False, time.time(), detail)
                            raise team_key_rejected(resp.status, ref_id, read, self._host)
                    delay = None
                    if retryable:
                        remaining = deadline - loop.time()
                        delay = self._policy.next_delay(
                            attempt, remaining, resp.status, resp.headers
                        )
                    if delay is None:
                        if minted is not None:
                            assert read is not None
                            scrub = self.scrubber.scrub_text
                            raise unreadable_error(resp, read, minted, scrub)
                        # Retried here already, an answer the SDK would retry again (a 500
                        # after a 503, too) says not to: no more than max_attempts per call.
                        spent = attempt > 1 and resp.status in SDK_RETRY_STATUSES
                        try:
                            return await relay(resp, read, spent)
                        except (TimeoutError, aiohttp.ClientError) as e:
                            # The answer's head came, its body broke: upstream had the request.
                            raise self._failure(e, resendable, route, run_id) from e
                finally:
                    resp.release()
                self._metrics.retries.labels(route).inc()
                await asyncio.sleep(delay)

    async def _via_session(
        self,
        method: str,
        raw_path: str,
        headers: Mapping[str, str],
        body: bytes | AsyncIterable[bytes] | None,
        timing: Timing,
        deadline: float,
    ) -> aiohttp.ClientResponse:
        remaining = deadline - asyncio.get_running_loop().time()
        return await self._session.request(
            method,
            URL(self._base + raw_path, encoded=True),
            headers=headers,
            data=body,
            timeout=self._timeout(timing, remaining),
            # A redirect would carry the team key to wherever Location points: it goes back to
            # the app instead (or, on the input route, is a 502).
            allow_redirects=False,
            # No Accept-Encoding at all: upstream answers uncompressed, and the bytes pass
            # through exactly as they came.
            auto_decompress=False,
            skip_auto_headers=("Accept-Encoding",),
        )

    def _failure(
        self, e: BaseException, resendable: bool, route: str, run_id: str | None
    ) -> GatewayError:
        retry_after = max(1, math.ceil(self._settings.backoff_max))
        error = failure_error(e, self._host, resendable=resendable, retry_after=retry_after)
        self.activity.upstream_error(error.status, error.ref_id, route, run_id, error.message)
        return error

    async def _read(self, resp: Answer, buffered: bool) -> bytes | None:
        """The body, read whole if `buffered` or not a success; scrubbed if not a success.

        A 2xx body is Parallel's answer, kept byte for byte (stored, streamed); a 3xx, 4xx or
        5xx body is read whole anyway (its ref_id is logged) and an echoed secret is cut out.
        """
        if 200 <= resp.status < 300:
            return await resp.read() if buffered else None
        return self.scrubber.scrub(await resp.read())

    def _ready(self, run_id: str | None, route: str) -> str:
        """The team key, or the reason the gateway will not call upstream at all: for a miss
        on a cached route, that the run's answer is not cached; for any other call, that it is
        never served offline."""
        if route in CACHED_WHAT:
            missing = CACHED_WHAT[route].format(run_id=run_id) + ", and the gateway"
        else:
            missing = (
                "Only cached run inputs, results, finished runs and their events are served "
                f"without Parallel ({route} is not), and the gateway"
            )
        if self._settings.offline:
            raise OfflineError(f"{missing} is offline.")
        if self._team_key is None:
            raise NoTeamKeyError(
                f"{missing} has no Parallel API key (set {self._settings.api_key_env}), so it "
                "cannot ask Parallel."
            )
        return self._team_key

    def _timeout(self, timing: Timing, remaining: float) -> aiohttp.ClientTimeout:
        connect = self._settings.connect_timeout
        if timing is Timing.STREAM:
            # A stream may last minutes; only silence for stream_idle_timeout ends it.
            return aiohttp.ClientTimeout(
                sock_connect=connect, sock_read=self._settings.stream_idle_timeout
            )
        if timing is Timing.LONG_POLL:
            # GET .../result?timeout=600 answers only when the run completes.
            return aiohttp.ClientTimeout(
                sock_connect=connect, sock_read=self._settings.long_poll_timeout
            )
        return aiohttp.ClientTimeout(total=self._total(remaining), connect=connect)

    def _bound(self, timing: Timing, remaining: float) -> tuple[float, bool]:
        """A call's time over the wire client: the whole call's, or (True) each silence's."""
        if timing is Timing.STREAM:
            return self._settings.stream_idle_timeout, True
        if timing is Timing.LONG_POLL:
            return self._settings.long_poll_timeout, True
        return self._total(remaining), False

    def _total(self, remaining: float) -> float:
        """A short call's time: upstream.timeout, within what is left of upstream.deadline."""
        return min(self._settings.timeout, max(remaining, 0.001))


class ShortCallSlot:
    """A short call takes one of upstream.max_short_calls, waiting at most
    upstream.queue_timeout for it. A long poll or a stream takes none (NO_SLOT): it waits on
    Parallel for minutes, and must never hold up, or be held up by, the calls that do not.

    A plain class rather than an asynccontextmanager, and a timer only when it must wait: it
    runs on every short call."""

    __slots__ = ("_slots", "settings")

    def __init__(self, settings: UpstreamSettings) -> None:
        self.settings = settings  # its queue_timeout may change while serving; not the slots
        self._slots = asyncio.Semaphore(settings.max_short_calls)

    async def __aenter__(self) -> None:
        if not self._slots.locked():
            await self._slots.acquire()  # free: returns at once
            return
        settings = self.settings
        try:
            async with asyncio.timeout(settings.queue_timeout):
                await self._slots.acquire()
        except TimeoutError:
            raise UpstreamBusyError(
                f"The gateway already has {settings.max_short_calls} short calls open to "
                f"Parallel (upstream.max_short_calls), and none ended within "
                f"{settings.queue_timeout:g} s (upstream.queue_timeout); try again shortly.",
                # The gateway's own failure: one retry layer, the SDK does not add its own.
                headers={**DO_NOT_RETRY, "retry-after": "1"},
            ) from None

    async def __aexit__(self, *exc_info: object) -> None:
        self._slots.release()


NO_SLOT = contextlib.nullcontext()


def create_session(settings: UpstreamSettings) -> aiohttp.ClientSession:
    """The one session: pooled keep-alive connections, no cookies kept between apps.

    The connector sets no limit of its own: short calls are bounded by upstream.max_short_calls,
    and long polls and streams only by file descriptors.
    """
    connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=30)
    return aiohttp.ClientSession(
        connector=connector,
        cookie_jar=aiohttp.DummyCookieJar(),
        raise_for_status=False,
    )

"""The only code that talks to Parallel: session, team key, timeouts, retries, error logging."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass

import aiohttp
import structlog
from multidict import CIMultiDict
from yarl import URL

from .config import UpstreamSettings
from .errors import (
    NoTeamKeyError,
    OfflineError,
    UpstreamTimeoutError,
    UpstreamUnavailableError,
    parse_error_body,
)
from .headers import request_headers, response_headers
from .retry import RetryPolicy

log = structlog.get_logger("gateway.upstream")


@dataclass(frozen=True, slots=True)
class UpstreamResponse:
    status: int
    body: bytes
    headers: Mapping[str, str]  # the ones worth passing back to the app


class UpstreamClient:
    """One long-lived ClientSession to Parallel, with the team key injected."""

    def __init__(
        self, settings: UpstreamSettings, team_key: str | None, session: aiohttp.ClientSession
    ) -> None:
        self._settings = settings
        self._team_key = team_key
        self._session = session
        self._base = settings.base_url.rstrip("/")
        self._policy = RetryPolicy(
            max_attempts=settings.max_attempts,
            backoff_initial=settings.backoff_initial,
            backoff_max=settings.backoff_max,
            retry_after_cap=settings.retry_after_cap,
        )

    @property
    def configured(self) -> bool:
        return self._team_key is not None

    @property
    def offline(self) -> bool:
        return self._settings.offline

    async def get(
        self, raw_path: str, incoming: Mapping[str, str], run_id: str | None = None
    ) -> UpstreamResponse:
        """GET an idempotent resource, retrying transient failures within the deadline."""
        what = f"Run {run_id}" if run_id else "This resource"
        if self._settings.offline:
            raise OfflineError(f"{what} is not in the gateway's cache, and the gateway is offline.")
        if self._team_key is None:
            raise NoTeamKeyError(
                f"{what} is not in the gateway's cache, and the gateway has no Parallel API key "
                f"(set {self._settings.api_key_env}), so it cannot fetch it."
            )
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._settings.deadline
        url = URL(self._base + raw_path, encoded=True)
        headers = request_headers(incoming, self._team_key)
        attempt = 0
        while True:
            attempt += 1
            remaining = deadline - loop.time()
            try:
                response = await self._attempt(url, headers, remaining)
            except (TimeoutError, aiohttp.ClientError) as e:
                delay = self._policy.next_delay(attempt, deadline - loop.time())
                log.warning(
                    "upstream.attempt_failed",
                    attempt=attempt,
                    error=type(e).__name__,
                    run_id=run_id,
                    retry_in=delay,
                )
                if delay is None:
                    raise _gateway_error(e) from e
            else:
                if response.status >= 400:
                    _log_error_response(response, attempt, run_id)
                delay = self._policy.next_delay(
                    attempt, deadline - loop.time(), response.status, response.headers
                )
                if delay is None:
                    return response
            await asyncio.sleep(delay)

    async def _attempt(
        self, url: URL, headers: CIMultiDict[str], remaining: float
    ) -> UpstreamResponse:
        timeout = aiohttp.ClientTimeout(
            total=min(self._settings.timeout, max(remaining, 0.001)),
            connect=self._settings.connect_timeout,
        )
        async with self._session.get(url, headers=headers, timeout=timeout) as resp:
            body = await resp.read()
            return UpstreamResponse(resp.status, body, response_headers(resp.headers))


def _gateway_error(e: BaseException) -> UpstreamTimeoutError | UpstreamUnavailableError:
    # aiohttp's ServerTimeoutError is both a ClientError and a TimeoutError: a timeout wins.
    if isinstance(e, TimeoutError):
        return UpstreamTimeoutError("Parallel API did not answer in time.")
    return UpstreamUnavailableError(f"Parallel API could not be reached ({type(e).__name__}).")


def _log_error_response(response: UpstreamResponse, attempt: int, run_id: str | None) -> None:
    ref_id, message = parse_error_body(response.body)
    log.warning(
        "upstream.error",
        status=response.status,
        ref_id=ref_id,
        message=message,
        run_id=run_id,
        attempt=attempt,
    )


def create_session(settings: UpstreamSettings) -> aiohttp.ClientSession:
    """The one session: pooled keep-alive connections, no cookies kept between apps."""
    connector = aiohttp.TCPConnector(limit=settings.max_connections, keepalive_timeout=30)
    return aiohttp.ClientSession(
        connector=connector,
        cookie_jar=aiohttp.DummyCookieJar(),
        auto_decompress=True,
        raise_for_status=False,
    )

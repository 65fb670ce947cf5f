"""What the gateway answers and logs when Parallel fails it: errors named by host and cause."""

from __future__ import annotations

import socket
import ssl
import uuid

import aiohttp
import structlog
from yarl import URL

from ..errors import (
    DO_NOT_RETRY,
    TeamKeyRejectedError,
    UnreadableUpstreamError,
    UpstreamRedirectError,
    UpstreamTimeoutError,
    UpstreamUnavailableError,
    parse_error_body,
)
from ..http.headers import Scrub, response_headers
from . import wire
from .answers import Answer

log = structlog.get_logger("gateway.upstream")
# How much of an unreadable upstream error body is passed on in the ErrorResponse's detail.
UNREADABLE_BODY_CHARS = 500
# Upstream's answer to the team key itself: no app can do anything about it.
TEAM_KEY_STATUSES = frozenset({401, 403})


def host_of(base_url: str) -> str:
    """`api.parallel.ai`, or `host:port` where the port is not the scheme's own. Pure."""
    url = URL(base_url)
    host = url.host or base_url
    return host if url.explicit_port is None else f"{host}:{url.explicit_port}"


def before_sending(e: BaseException) -> bool:
    """Whether a failure came before any byte of the request could reach upstream."""
    return isinstance(
        e,
        aiohttp.ClientConnectorError
        | aiohttp.ConnectionTimeoutError
        | wire.ConnectFailed
        | wire.ConnectTimedOut
        | wire.ConnectCutShort,
    )


def error_name(e: BaseException) -> str:
    """A failure's name in logs and /readyz, the same whichever client met it (aiohttp's)."""
    return e.name if isinstance(e, wire.WireError) else type(e).__name__


def cause_of(e: BaseException) -> str:
    """What went wrong, as an operator would say it. Pure."""
    # aiohttp's ServerTimeoutError is both a ClientError and a TimeoutError: a timeout wins.
    if isinstance(e, aiohttp.ConnectionTimeoutError | wire.ConnectTimedOut):
        return "did not accept a connection in time"
    if isinstance(e, TimeoutError):
        return "did not answer in time"
    os_error = (
        e.os_error if isinstance(e, aiohttp.ClientConnectorError | wire.ConnectFailed) else None
    )
    if isinstance(e, aiohttp.ClientConnectorDNSError) or isinstance(os_error, socket.gaierror):
        return "could not be reached: its host name could not be resolved"
    if isinstance(e, aiohttp.ClientSSLError) or isinstance(e.__cause__ or os_error, ssl.SSLError):
        return "could not be reached: the TLS handshake failed"
    if os_error is not None:
        if isinstance(os_error, ConnectionRefusedError):
            return "could not be reached: the connection was refused"
        return f"could not be reached: {os_error.strerror or type(os_error).__name__}"
    if isinstance(e, aiohttp.ServerDisconnectedError | wire.Disconnected):
        return "closed the connection before answering"
    if isinstance(e, aiohttp.ClientPayloadError | wire.BrokenAnswer):
        return "broke off its answer midway"
    if isinstance(e, aiohttp.ClientResponseError | wire.NotHttp):
        return "answered something that is not HTTP"
    if isinstance(e, aiohttp.ClientOSError) and e.strerror:
        return f"could not be reached: {e.strerror}"
    if isinstance(e, wire.ConnectionBroke) and e.os_error.strerror:
        return f"could not be reached: {e.os_error.strerror}"
    return f"failed ({error_name(e)})"


def failure_error(
    e: BaseException, host: str, *, resendable: bool, retry_after: int
) -> UpstreamTimeoutError | UpstreamUnavailableError:
    """The gateway's 504 or 502 once it has given up on upstream (its own retries spent).

    The SDK is told not to retry it (x-should-retry: false), so one app call never makes more
    than upstream.max_attempts attempts; `retry-after` says when trying again makes sense. Where
    the request may have reached upstream (a create), no retry is suggested at all.
    """
    message = f"Parallel API at {host} {cause_of(e)}."
    headers = dict(DO_NOT_RETRY)
    if resendable:
        headers["retry-after"] = str(retry_after)
    elif not before_sending(e):
        message += (
            " Parallel API may have received the request, so the gateway did not send it again;"
            " check before repeating it (a repeated create makes another run)."
        )
    error = UpstreamTimeoutError if isinstance(e, TimeoutError) else UpstreamUnavailableError
    return error(message, headers=headers)


def log_error_response(
    status: int, body: bytes, attempt: int, run_id: str | None, route: str
) -> tuple[str, str | None, str | None]:
    """Log an upstream error with its ref_id; return it, the one the gateway minted (if it
    did), and upstream's message.

    A body with no ref_id (not Parallel's ErrorResponse, but a proxy's page or nothing) is
    logged under a ref_id of the gateway's own.
    """
    ref_id, message = parse_error_body(body)
    minted = None
    if ref_id is None:
        ref_id = minted = str(uuid.uuid4())
    log.warning(
        "upstream.error",
        status=status,
        ref_id=ref_id,
        ref_id_by="upstream" if minted is None else "gateway",
        message=message,
        route=route,
        run_id=run_id,
        attempt=attempt,
    )
    return ref_id, minted, message


def team_key_rejected(status: int, ref_id: str, body: bytes, host: str) -> TeamKeyRejectedError:
    """Upstream refused the team key: the operator's to fix, never the app's (a 401 would make
    it doubt its own key). Logged as an error with upstream's ref_id, for a support case."""
    _, message = parse_error_body(body)  # the body was scrubbed as it was read
    log.error("upstream.team_key_rejected", status=status, ref_id=ref_id, message=message)
    if status == 401:  # the key itself is not valid
        what = "the gateway's operator must replace it"
    else:  # 403: valid, but not allowed this (the account's plan, a feature, credit)
        what = f"Parallel said: {message or 'forbidden'}; the gateway's operator must see to it"
    return TeamKeyRejectedError(
        f"The gateway's team key was rejected by Parallel API at {host} (HTTP {status}, "
        f"ref_id {ref_id}); {what}.",
        headers=DO_NOT_RETRY,
    )


def redirect_error(resp: Answer, run_id: str | None, scrub: Scrub) -> UpstreamRedirectError:
    """A redirect where an answer was needed, logged under a ref_id of the gateway's own."""
    error = UpstreamRedirectError(
        f"Parallel API answered {resp.status} (a redirect, not followed) for run {run_id}; "
        "nothing was stored."
    )
    log.warning(
        "upstream.error",
        status=resp.status,
        ref_id=error.ref_id,
        ref_id_by="gateway",
        location=scrub(resp.headers.get("Location", "")),
        run_id=run_id,
    )
    return error


def unreadable_error(
    resp: Answer, body: bytes, ref_id: str, scrub: Scrub
) -> UnreadableUpstreamError:
    detail = {
        "upstream_status": resp.status,
        "upstream_content_type": scrub(resp.headers.get("Content-Type", "")) or None,
        "upstream_body": body.decode("utf-8", "replace")[:UNREADABLE_BODY_CHARS],
    }
    # Its retry advice (retry-after, x-should-retry) goes back; its content type does not.
    headers = {
        k: v for k, v in response_headers(resp.headers, scrub).items() if k != "content-type"
    }
    return UnreadableUpstreamError(resp.status, ref_id, detail, headers)

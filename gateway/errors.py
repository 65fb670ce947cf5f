"""Errors the gateway makes, in the ErrorResponse shape Parallel's clients parse."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from http import HTTPStatus
from types import MappingProxyType
from typing import Any, Self

import orjson

# The SDK's override of its own retry decision (PARALLEL_API.md: Retries).
DO_NOT_RETRY: Mapping[str, str] = MappingProxyType({"x-should-retry": "false"})


class GatewayError(Exception):
    """An error answered by the gateway itself, with its own ref_id."""

    status = 500
    reason = "internal"
    detail: Mapping[str, Any] | None = None

    def __init__(self, message: str, *, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.ref_id = str(uuid.uuid4())
        self.headers = dict(headers or {})

    def body(self) -> bytes:
        return error_body(self.message, self.ref_id, self.detail)

    def with_headers(self, headers: Mapping[str, str]) -> Self:
        """The same error (same ref_id) with more response headers, for one of its requests."""
        # Not copy.copy: it rebuilds an exception from its args, which not every __init__ takes.
        clone = type(self).__new__(type(self))
        clone.__dict__.update(self.__dict__)
        clone.args = self.args
        clone.headers = {**self.headers, **headers}
        return clone


class AuthenticationError(GatewayError):
    status = 401
    reason = "unauthenticated"

    def __init__(
        self, message: str, *, app: str | None = None, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(message, headers=headers)
        # A known key that no longer works (revoked, expired, replaced) names its app, so its
        # log lines say which app still uses it; None for a missing or unknown key.
        self.app = app


class NotFoundError(GatewayError):
    status = 404
    reason = "not-found"


class RunNotFoundError(GatewayError):
    """Another app's run under isolation mode "app": the same answer as an unknown run."""

    status = 404
    reason = "run-not-found"


class InvalidPathError(GatewayError):
    status = 400
    reason = "invalid-path"


class MethodNotAllowedError(GatewayError):
    status = 405
    reason = "method-not-allowed"


class InvalidRunIdError(GatewayError):
    status = 422
    reason = "invalid-run-id"


class UpstreamUnavailableError(GatewayError):
    """Upstream could not be reached, or sent something that is not HTTP."""

    status = 502
    reason = "upstream-unavailable"


class UpstreamInvalidError(GatewayError):
    """A 200 on the input route whose body is not JSON: nothing the SDK could read, not stored."""

    status = 502
    reason = "upstream-invalid"


class TeamKeyRejectedError(GatewayError):
    """Parallel refused the gateway's team key (401 or 403): a 502, the operator's to fix."""

    status = 502
    reason = "team-key-rejected"


class UpstreamRedirectError(GatewayError):
    """A 3xx on the input route: never followed (the team key stays with upstream's origin),
    and not an answer the SDK could read; not stored."""

    status = 502
    reason = "upstream-redirect"


class UnreadableUpstreamError(GatewayError):
    """An upstream error answer without an ErrorResponse in it (a proxy's HTML page, an empty
    body): its status, in the ErrorResponse shape, under a ref_id the gateway logged for it."""

    reason = "upstream-error-unreadable"

    def __init__(
        self,
        status: int,
        ref_id: str,
        detail: Mapping[str, Any],
        headers: Mapping[str, str],
    ) -> None:
        super().__init__(
            f"Parallel API answered {status} without an error body the gateway could read.",
            headers=headers,
        )
        self.status = status
        self.ref_id = ref_id
        self.detail = detail


class UpstreamBusyError(GatewayError):
    """Every short-call slot (upstream.max_short_calls) stayed taken for upstream.queue_timeout."""

    status = 503
    reason = "upstream-busy"


class StorageUnavailableError(GatewayError):
    """The store could not be read where an answer needs it (who owns a run)."""

    status = 503
    reason = "storage-unavailable"


class DrainingError(GatewayError):
    """A request that arrived after shutdown began."""

    status = 503
    reason = "draining"

    def __init__(self, message: str) -> None:
        super().__init__(message, headers={"Connection": "close"})


class PayloadTooLargeError(GatewayError):
    status = 413
    reason = "payload-too-large"


class ForbiddenError(GatewayError):
    status = 403
    reason = "forbidden"


class RateLimitedError(GatewayError):
    """An app over its key's rate limit; `retry-after` says when a token will be there."""

    status = 429
    reason = "rate-limited"


class TooManyOpenError(RateLimitedError):
    """The app's key caps its open calls (keys --max-open), and that many are open."""

    reason = "too-many-open"


class BudgetExceededError(GatewayError):
    """A billable call that would take an app past its budget (keys --budget): 402, the status
    Parallel uses for credit, and not to be retried before the budget resets."""

    status = 402
    reason = "budget-exceeded"

    def __init__(self, message: str) -> None:
        super().__init__(message, headers=DO_NOT_RETRY)


class UpstreamTimeoutError(GatewayError):
    status = 504
    reason = "upstream-timeout"


class CannotFetchError(GatewayError):
    """A miss the gateway will not fetch: retrying cannot help until it is restarted."""

    status = 503

    def __init__(self, message: str) -> None:
        # x-should-retry is the SDK's override of its own retry decision.
        super().__init__(message, headers=DO_NOT_RETRY)


class NoTeamKeyError(CannotFetchError):
    reason = "no-team-key"


class OfflineError(CannotFetchError):
    reason = "offline"


class ReplayMissError(CannotFetchError):
    """A create with no finished recording to replay where a miss may not go upstream
    (replay-only, offline); `detail` names fields and run ids, never a field's value."""

    reason = "replay-miss"

    def __init__(self, message: str, detail: Mapping[str, Any]) -> None:
        super().__init__(message)
        self.detail = detail


def error_body(message: str, ref_id: str, detail: Mapping[str, Any] | None = None) -> bytes:
    """Serialise Parallel's ErrorResponse: {"type": "error", "error": {ref_id, message, detail}}."""
    return orjson.dumps(
        {"type": "error", "error": {"ref_id": ref_id, "message": message, "detail": detail}}
    )


def closing_error_response(status: int, message: str, ref_id: str, request_id: str) -> bytes:
    """A whole HTTP/1.1 ErrorResponse that closes its connection, for one written straight to a
    client that never sent a whole request head (the header timeout's 408)."""
    body = error_body(message, ref_id)
    head = (
        f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Connection: close\r\n"
        f"x-gateway-request-id: {request_id}\r\n\r\n"
    )
    return head.encode() + body


def parse_error_body(body: bytes) -> tuple[str | None, str | None]:
    """Return (ref_id, message) from an upstream error body, tolerating any shape."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None, None
    error = data.get("error") if isinstance(data, dict) else None
    if not isinstance(error, dict):
        return None, None
    ref_id, message = error.get("ref_id"), error.get("message")
    return (
        ref_id if isinstance(ref_id, str) else None,
        message if isinstance(message, str) else None,
    )

"""What the event loop reports, accept errors above all: counted, and logged as JSON lines at a
bounded rate, in place of asyncio's plain-text traceback for each."""

from __future__ import annotations

import asyncio
import errno
from collections.abc import Callable
from typing import Any

import structlog

from .metrics import Metrics
from .throttle import LOG_INTERVAL, Throttle

log = structlog.get_logger("gateway.server")

LoopHandler = Callable[[asyncio.AbstractEventLoop, dict[str, Any]], None]


def accept_errno(context: dict[str, Any]) -> str | None:
    """The errno name (EMFILE, ...) if `context` is a listening socket's failed accept()."""
    error = context.get("exception")
    if "socket" not in context or not isinstance(error, OSError) or error.errno is None:
        return None
    return errno.errorcode.get(error.errno, str(error.errno))


def loop_exception_handler(metrics: Metrics, interval: float = LOG_INTERVAL) -> LoopHandler:
    """An event loop exception handler: accept errors counted in gateway_accept_errors_total,
    and every report logged once per kind per `interval`, with a count.

    Out of file descriptors, asyncio fails each accept() (up to the listen backlog per loop
    tick) and its default handler prints a traceback for each: 27 MB in 15 s.
    """
    throttle = Throttle(interval)

    def handle(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        name = accept_errno(context)
        if name is not None:
            metrics.accept_errors.labels(name).inc()
            count = throttle.count(f"accept {name}")
            if count is not None:
                error = context["exception"]
                log.error(
                    "server.accept_failed",
                    errno=name,
                    error=error.strerror,
                    count=count,
                    per_seconds=interval,
                )
            return
        message = str(context.get("message", "unhandled exception in the event loop"))
        count = throttle.count(message)
        if count is not None:
            log.error(
                "event_loop.error",
                message=message,
                count=count,
                per_seconds=interval,
                exc_info=context.get("exception"),
            )

    return handle

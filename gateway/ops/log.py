"""structlog configuration: JSON lines on stderr, with secrets scrubbed as a last defence."""

from __future__ import annotations

import asyncio
import atexit
import logging
import re
import sys
import time
from collections.abc import Callable, Iterable
from contextvars import ContextVar, Token
from typing import Any, BinaryIO

import orjson
import structlog
from structlog.typing import EventDict, FilteringBoundLogger, WrappedLogger

# App keys have a recognisable shape; anything that looks like one is scrubbed, percent-encoded
# (`pgw%5F...`, as a URL in an access line may hold it) or not.
APP_KEY_PATTERN = re.compile(rb"pgw(?:_|%5[Ff])(?:[A-Za-z0-9_-]|%[0-9A-Fa-f]{2}){8,}")
REDACTED = b"[redacted]"
FLUSH_SECONDS = 0.2
BUFFER_BYTES = 64 * 1024
DEFERRED_LINES = 256

# The call a line is written during: its request id, app and route, added to every line as
# structlog's contextvars are. One variable set once per call, where binding the three with
# bind_contextvars made three variables, three tokens and a dict, held as long as the call is.
_CALL: ContextVar[tuple[str, str, str] | None] = ContextVar("gateway_call", default=None)
CALL_FIELDS = ("request_id", "app", "route")


def enter_call(request_id: str, app: str, route: str) -> Token[tuple[str, str, str] | None]:
    """Name the call on every line written until `leave_call(token)`."""
    return _CALL.set((request_id, app, route))


def leave_call(token: Token[tuple[str, str, str] | None]) -> None:
    _CALL.reset(token)


def merge_call(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    """The structlog processor adding the call's fields (a line's own fields win)."""
    call = _CALL.get()
    if call is not None:
        for name, value in zip(CALL_FIELDS, call, strict=True):
            event_dict.setdefault(name, value)
    return event_dict


class SecretScrubber:
    """The last structlog processor: scrubs known secrets and app-key lookalikes from the
    rendered line.

    Nothing logs a secret on purpose; this catches one that slips in anyway, however deeply it
    sits in the event (an exception message, a nested dict), because it sees the final bytes.
    """

    def __init__(self, secrets: Iterable[str]) -> None:
        self._secrets: list[bytes] = []
        for secret in secrets:
            self.add(secret)

    def add(self, secret: str) -> None:
        """Scrub `secret` too from now on (a rotated team key)."""
        if not secret:
            return
        forms = set(self._secrets)
        # As it is, inside a JSON string, and inside a repr() inside a JSON string (the
        # renderer's fallback for objects such as exceptions).
        for text in (secret, repr(secret)[1:-1]):
            forms.add(text.encode())
            forms.add(orjson.dumps(text)[1:-1])
        self._secrets = sorted(forms, key=len, reverse=True)

    def __call__(self, _: WrappedLogger, __: str, line: bytes) -> bytes:
        return self.scrub(line)

    def scrub_text(self, text: str) -> str:
        """`scrub` for text, such as a header value (whatever bytes it was decoded from)."""
        raw = text.encode("utf-8", "surrogateescape")
        scrubbed = self.scrub(raw)
        return text if scrubbed is raw else scrubbed.decode("utf-8", "surrogateescape")

    def scrub(self, line: bytes) -> bytes:
        for secret in self._secrets:
            if secret in line:
                line = line.replace(secret, REDACTED)
        if b"pgw" in line:
            line = APP_KEY_PATTERN.sub(REDACTED, line)
        return line


Render = Callable[[dict[str, Any]], bytes]


class BufferedLineLogger:
    """A structlog logger for JSON lines: info and debug lines are buffered and written at most
    FLUSH_SECONDS later (or once BUFFER_BYTES or DEFERRED_LINES gather), so a request's access
    line costs no system call of its own; warnings and errors are written at once, with what is
    buffered before them.

    A line may also be deferred: its fields are kept, and rendered only when the buffer is
    written. Rendering a few hundred lines in a row costs a fraction of rendering each one
    between requests, where its code and data have left the CPU's caches.
    """

    def __init__(self, out: BinaryIO) -> None:
        self._out = out
        self._buffer = bytearray()
        self._deferred: list[tuple[Render, dict[str, Any]]] = []
        self._scheduled = False
        atexit.register(self.flush)

    def defer(self, render: Render, fields: dict[str, Any]) -> None:
        """Write `render(fields)` as a buffered line; `fields` must not change after this."""
        self._deferred.append((render, fields))
        if len(self._deferred) >= DEFERRED_LINES:
            self.flush()
        else:
            self._flush_soon()

    def buffered(self, message: bytes) -> None:
        self._append(message)
        if len(self._buffer) >= BUFFER_BYTES:
            self.flush()
        else:
            self._flush_soon()

    def at_once(self, message: bytes) -> None:
        self._append(message)
        self.flush()

    def _append(self, message: bytes) -> None:
        self._render_deferred()  # what was deferred before it goes first
        self._buffer += message
        self._buffer += b"\n"

    def _flush_soon(self) -> None:
        if self._scheduled:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no event loop (the CLI): nothing would flush it later
            self.flush()
            return
        self._scheduled = True
        loop.call_later(FLUSH_SECONDS, self._flush_later)

    def _flush_later(self) -> None:
        self._scheduled = False
        self.flush()

    def _render_deferred(self) -> None:
        if self._deferred:
            deferred, self._deferred = self._deferred, []
            buffer = self._buffer
            for render, fields in deferred:
                buffer += render(fields)
                buffer += b"\n"

    def flush(self) -> None:
        self._render_deferred()
        if self._buffer:
            self._out.write(self._buffer)
            self._out.flush()
            self._buffer.clear()

    debug = info = msg = buffered
    warning = error = critical = exception = fatal = at_once


class UTCTimestamper:
    """Adds `timestamp` (RFC 3339, UTC, microseconds), formatting the date and time once a
    second rather than on every line."""

    def __init__(self) -> None:
        self._second = -1
        self._prefix = ""

    def __call__(self, _: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
        event_dict["timestamp"] = self.format(time.time())
        return event_dict

    def format(self, now: float) -> str:
        """`now` (seconds since the epoch) in RFC 3339, UTC, with microseconds."""
        second = int(now)
        if second != self._second:
            self._second = second
            self._prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        return f"{self._prefix}.{int((now - second) * 1e6):06d}Z"


LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
}


class LevelFilter:
    """The first processor: drops an event below `threshold`, which set_log_level changes while
    serving (SIGHUP). structlog's filtering loggers would fix the level for good: each module's
    logger is built on first use and cached (cache_logger_on_first_use), so they let every level
    through and this decides, at the cost of one comparison per line."""

    def __init__(self, level: str) -> None:
        self.threshold = LEVELS[level]

    def __call__(self, _: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
        if LEVELS.get(method_name, logging.INFO) < self.threshold:
            raise structlog.DropEvent
        return event_dict


_level = LevelFilter("info")


def configure_logging(level: str = "info", secrets: Iterable[str] = ()) -> None:
    """Configure structlog as its performance guide suggests (orjson, bytes), with a level that
    set_log_level can change."""
    global _scrubber
    _scrubber = SecretScrubber(secrets)
    set_log_level(level)
    timestamper = UTCTimestamper()
    processors: list[Any] = [
        _level,
        structlog.contextvars.merge_contextvars,
        merge_call,
        structlog.processors.add_log_level,
        timestamper,
        structlog.processors.format_exc_info,
        structlog.processors.JSONRenderer(serializer=orjson.dumps),
        _scrubber,
    ]
    sink = BufferedLineLogger(sys.stderr.buffer)
    structlog.configure(
        cache_logger_on_first_use=True,
        wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG),
        processors=processors,
        logger_factory=_one_logger(sink),
    )
    global _chain
    _chain = InfoChain(processors, _level, timestamper, _scrubber, sink)


def set_log_level(level: str) -> None:
    """Write lines of `level` ("debug", "info", "warning", "error") and above from now on."""
    _level.threshold = LEVELS[level]


def scrub_also(secret: str) -> None:
    """Add a secret learnt after start-up (a rotated team key) to the configured scrubber."""
    _scrubber.add(secret)


_scrubber = SecretScrubber(())


class InfoChain:
    """What configure_logging's processors make of an info line without exception info, made
    directly: the fields, contextvars, level and timestamp, rendered by orjson, scrubbed, into
    the same sink. The access line goes out on every request, and structlog's generic chain
    costs several times more than this. The line is deferred: its time is taken now, and it is
    rendered when the sink writes its buffer."""

    def __init__(
        self,
        processors: list[Any],
        level: LevelFilter,
        timestamper: UTCTimestamper,
        scrubber: SecretScrubber,
        sink: BufferedLineLogger,
    ) -> None:
        self._processors = processors
        self._level = level
        self._timestamper = timestamper
        self._scrubber = scrubber
        self._sink = sink
        self._render = self.render

    def write(self, event: str, fields: dict[str, Any]) -> bool:
        """Write `event` with `fields` (consumed, and holding values that do not change); False
        if the processors are no longer the ones configure_logging set (reset, or swapped by
        structlog's capture_logs)."""
        processors = self._processors
        if structlog.get_config()["processors"] is not processors:
            return False
        if processors[-1] is not self._scrubber:
            return False
        if self._level.threshold > logging.INFO:
            return True  # dropped, as the level filter would
        fields["event"] = event
        structlog.contextvars.merge_contextvars(self._sink, "info", fields)
        merge_call(self._sink, "info", fields)
        fields["level"] = "info"
        fields["timestamp"] = time.time()  # formatted by render
        self._sink.defer(self._render, fields)
        return True

    def render(self, fields: dict[str, Any]) -> bytes:
        fields["timestamp"] = self._timestamper.format(fields["timestamp"])
        # repr() for what JSON cannot encode, as structlog's JSONRenderer does.
        return self._scrubber.scrub(orjson.dumps(fields, default=repr))


_chain: InfoChain | None = None


def log_info(logger: FilteringBoundLogger, event: str, fields: dict[str, Any]) -> None:
    """`logger.info(event, **fields)`, through InfoChain when configure_logging's chain is the
    one in place; `fields` is consumed."""
    chain = _chain
    if chain is None or not chain.write(event, fields):
        logger.info(event, **fields)


def _one_logger(logger: BufferedLineLogger) -> Callable[..., BufferedLineLogger]:
    def factory(*_: Any) -> BufferedLineLogger:
        return logger

    return factory

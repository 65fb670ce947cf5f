"""log_info: the access line's shortcut writes exactly what structlog's bound logger would,
deferred until the buffer is written, in its place and with its own time."""

from __future__ import annotations

import asyncio
import io
import re
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import orjson
import pytest
import structlog

from gateway.ops.log import DEFERRED_LINES, FLUSH_SECONDS, configure_logging, log_info

TEAM_KEY = "team-secret-0123456789"
APP_KEY = "pgw_AbCdEf0123456789_-xyz"
TIMESTAMP = re.compile(rb'"timestamp":"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z"')

StartLogging = Callable[[str], io.BytesIO]


@pytest.fixture
def start_logging(monkeypatch: pytest.MonkeyPatch) -> Iterator[StartLogging]:
    """configure_logging at `level`, writing to a BytesIO in place of stderr."""

    def start(level: str) -> io.BytesIO:
        buffer = io.BytesIO()
        monkeypatch.setattr(sys, "stderr", io.TextIOWrapper(buffer, encoding="utf-8"))
        configure_logging(level, [TEAM_KEY])
        return buffer

    yield start
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()


def fields() -> dict[str, Any]:
    return {
        "status": 200,
        "path": f"/v1/{TEAM_KEY}",
        "key": APP_KEY,
        "cache": None,
        "error": ValueError("no"),
    }


def written(buffer: io.BytesIO) -> list[bytes]:
    structlog.get_logger("gateway.test").warning("flush")  # writes what is buffered
    return [TIMESTAMP.sub(b"T", line) for line in buffer.getvalue().splitlines()[:-1]]


def test_the_same_line_as_the_bound_logger(start_logging: StartLogging) -> None:
    stderr = start_logging("info")
    log = structlog.get_logger("gateway.access")
    with structlog.contextvars.bound_contextvars(request_id="req-1"):
        log.info("access", **fields())
        log_info(log, "access", fields())
    expected = (
        b'{"status":200,"path":"/v1/[redacted]","key":"[redacted]","cache":null,'
        b'"error":"ValueError(\'no\')","event":"access","request_id":"req-1","level":"info",T}'
    )
    assert written(stderr) == [expected, expected]


def test_nothing_below_the_level(start_logging: StartLogging) -> None:
    stderr = start_logging("warning")
    log_info(structlog.get_logger("gateway.access"), "access", fields())
    assert written(stderr) == []


def test_captured_by_capture_logs(start_logging: StartLogging) -> None:
    stderr = start_logging("info")
    with structlog.testing.capture_logs() as logs:
        log_info(structlog.get_logger("gateway.access"), "access", {"status": 200})
    assert logs == [{"status": 200, "event": "access", "log_level": "info"}]
    assert written(stderr) == []


def test_through_structlog_once_it_is_configured_otherwise(start_logging: StartLogging) -> None:
    stderr = start_logging("info")
    structlog.reset_defaults()
    with structlog.testing.capture_logs() as logs:
        log_info(structlog.get_logger("gateway.access"), "access", {"status": 200})
    assert logs == [{"status": 200, "event": "access", "log_level": "info"}]
    assert stderr.getvalue() == b""


def test_a_deferred_line_keeps_its_time_and_its_place(
    start_logging: StartLogging, monkeypatch: pytest.MonkeyPatch
) -> None:
    stderr = start_logging("info")
    log = structlog.get_logger("gateway.access")
    monkeypatch.setattr(time, "time", lambda: 1_700_000_000.123456)
    log_info(log, "access", {"n": 1})  # deferred: rendered when the buffer is written
    log.info("other", n=2)  # through structlog's chain, rendered at once
    log_info(log, "access", {"n": 3})
    monkeypatch.setattr(time, "time", lambda: 1_700_000_009.5)
    log.warning("flush")
    assert [orjson.loads(line) for line in stderr.getvalue().splitlines()] == [
        {"n": 1, "event": "access", "level": "info", "timestamp": "2023-11-14T22:13:20.123456Z"},
        {"n": 2, "event": "other", "level": "info", "timestamp": "2023-11-14T22:13:20.123456Z"},
        {"n": 3, "event": "access", "level": "info", "timestamp": "2023-11-14T22:13:20.123456Z"},
        {"event": "flush", "level": "warning", "timestamp": "2023-11-14T22:13:29.500000Z"},
    ]


async def test_deferred_lines_are_written_in_batches_or_soon(start_logging: StartLogging) -> None:
    stderr = start_logging("info")
    log = structlog.get_logger("gateway.access")
    for n in range(DEFERRED_LINES - 1):
        log_info(log, "access", {"n": n})
    assert stderr.getvalue() == b""  # a loop runs: they wait for the batch, or the timer
    log_info(log, "access", {"n": DEFERRED_LINES - 1})
    lines = stderr.getvalue().splitlines()
    assert [orjson.loads(line)["n"] for line in lines] == list(range(DEFERRED_LINES))
    log_info(log, "access", {"n": "late"})
    await asyncio.sleep(FLUSH_SECONDS * 2)
    assert orjson.loads(stderr.getvalue().splitlines()[-1])["n"] == "late"

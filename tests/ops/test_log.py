"""Logging: secrets scrubbed from values, and one JSON line per event on stderr."""

from __future__ import annotations

import io
import re
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import orjson
import pytest
import structlog

from gateway.keys.app_keys import generate_key
from gateway.ops.log import (
    APP_KEY_PATTERN,
    REDACTED,
    SecretScrubber,
    configure_logging,
    enter_call,
    leave_call,
    log_info,
    scrub_also,
    set_log_level,
)

TEAM_KEY = "team-secret-0123456789"
APP_KEY = "pgw_AbCdEf0123456789_-xyz"
TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z")


def test_redacted_marker() -> None:
    assert REDACTED == b"[redacted]"


def test_app_key_pattern_is_bytes() -> None:
    assert APP_KEY_PATTERN.fullmatch(APP_KEY.encode())
    assert APP_KEY_PATTERN.fullmatch(b"pgw_12345678")
    assert not APP_KEY_PATTERN.fullmatch(b"pgw_1234567")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(TEAM_KEY, "[redacted]", id="secret-alone"),
        pytest.param(
            f"key={TEAM_KEY}; again:{TEAM_KEY}!",
            "key=[redacted]; again:[redacted]!",
            id="secret-twice-inside",
        ),
        pytest.param(f"x{TEAM_KEY}y", "x[redacted]y", id="secret-glued"),
        pytest.param(APP_KEY, "[redacted]", id="app-key"),
        pytest.param(f"Bearer {APP_KEY} rest", "Bearer [redacted] rest", id="app-key-inside"),
        pytest.param("pgw_12345678", "[redacted]", id="app-key-8-chars"),
        pytest.param("pgw_1234567", "pgw_1234567", id="too-short-for-an-app-key"),
        pytest.param("pgw_ alone", "pgw_ alone", id="bare-prefix"),
        pytest.param("PGW_12345678", "PGW_12345678", id="prefix-is-case-sensitive"),
        pytest.param("/x?key=pgw%5F12345678", "/x?key=[redacted]", id="app-key-%5F"),
        pytest.param("/x?key=pgw%5f12345678&a=b", "/x?key=[redacted]&a=b", id="app-key-%5f"),
        pytest.param("pgw_1234%2D5678%2d", "[redacted]", id="app-key-encoded-inside"),
        pytest.param("pgw%5F1234567", "pgw%5F1234567", id="encoded-too-short"),
        pytest.param("pgw%5G12345678", "pgw%5G12345678", id="not-an-escape"),
        pytest.param(f"{APP_KEY}.{TEAM_KEY}", "[redacted].[redacted]", id="both"),
        pytest.param("nothing to see", "nothing to see", id="clean"),
        pytest.param("team-secret", "team-secret", id="part-of-the-secret"),
        pytest.param("", "", id="empty"),
        pytest.param(
            f'{{"error":"bad key {TEAM_KEY}","app":"{APP_KEY}"}}',
            '{"error":"bad key [redacted]","app":"[redacted]"}',
            id="rendered-json-line",
        ),
        pytest.param(
            f"caf\u00e9 {TEAM_KEY} \u2713", "caf\u00e9 [redacted] \u2713", id="utf-8-around"
        ),
    ],
)
def test_scrub(text: str, expected: str) -> None:
    assert SecretScrubber([TEAM_KEY]).scrub(text.encode()) == expected.encode()


def test_scrub_generated_keys() -> None:
    scrubber = SecretScrubber([])
    for _ in range(100):
        key = generate_key()
        assert scrubber.scrub(f"key {key} used".encode()) == b"key [redacted] used"


def test_empty_secrets_are_ignored() -> None:
    assert SecretScrubber(["", TEAM_KEY]).scrub(b"plain text") == b"plain text"
    assert SecretScrubber([""]).scrub(b"abc") == b"abc"


def test_secrets_overlapping_each_other() -> None:
    # The longer secret goes first, so its tail is not left behind after the shorter one.
    scrubber = SecretScrubber(["abc-secret", "abc-secret-longer"])
    assert scrubber.scrub(b"[abc-secret-longer] [abc-secret]") == b"[[redacted]] [[redacted]]"


# Secrets with characters JSON escapes: in the rendered line they appear escaped.
ESCAPED_SECRETS = [
    pytest.param('team"secret-0123', id="quote"),
    pytest.param("team\\secret-0123", id="backslash"),
    pytest.param("team\tsecret-0123", id="tab"),
    pytest.param("team\nsecret-0123", id="newline"),
    pytest.param("team\x01secret-0123", id="control"),
    pytest.param('t"e\\a\tm-0123', id="several"),
]


@pytest.mark.parametrize("secret", ESCAPED_SECRETS)
def test_scrub_json_escaped_secret(secret: str) -> None:
    escaped = orjson.dumps(secret)[1:-1]
    assert escaped != secret.encode()
    scrubber = SecretScrubber([secret])
    assert scrubber.scrub(b'{"m":"x ' + escaped + b' y"}') == b'{"m":"x [redacted] y"}'
    assert scrubber.scrub(b"raw " + secret.encode()) == b"raw [redacted]"


def test_processor_scrubs_the_rendered_line() -> None:
    event_dict: dict[str, Any] = {
        "event": f"failed with {APP_KEY}",
        "error": f"upstream said: bad key {TEAM_KEY}",
        "status": 401,
        "ratio": 0.5,
        "ok": False,
        "missing": None,
        "data": {"k": "v"},
        "app": "billing",
    }
    line = structlog.processors.JSONRenderer(serializer=orjson.dumps)(None, "info", event_dict)
    assert isinstance(line, bytes)
    result = SecretScrubber([TEAM_KEY])(None, "info", line)
    assert isinstance(result, bytes)
    assert orjson.loads(result) == {
        "event": "failed with [redacted]",
        "error": "upstream said: bad key [redacted]",
        "status": 401,
        "ratio": 0.5,
        "ok": False,
        "missing": None,
        "data": {"k": "v"},
        "app": "billing",
    }


def test_processor_leaves_a_clean_line_as_it_is() -> None:
    line = b'{"event":"cache.hit","status":200}'
    assert SecretScrubber([TEAM_KEY])(None, "info", line) == line


StartLogging = Callable[[str, Sequence[str]], io.BytesIO]


@pytest.fixture
def start_logging(monkeypatch: pytest.MonkeyPatch) -> Iterator[StartLogging]:
    """configure_logging, with sys.stderr.buffer (where it writes) swapped for a BytesIO."""

    def start(level: str, secrets: Sequence[str]) -> io.BytesIO:
        # Swapped inside the test: pytest's own capture resets sys.stderr after fixture setup.
        buffer = io.BytesIO()
        monkeypatch.setattr(sys, "stderr", io.TextIOWrapper(buffer, encoding="utf-8"))
        configure_logging(level, secrets)
        return buffer

    yield start
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()


def lines(buffer: io.BytesIO) -> list[dict[str, Any]]:
    raw = buffer.getvalue()
    assert raw == b"" or raw.endswith(b"\n")
    events: list[dict[str, Any]] = []
    for line in raw.splitlines():
        event = orjson.loads(line)
        assert isinstance(event, dict)
        assert TIMESTAMP.fullmatch(event.pop("timestamp"))
        events.append(event)
    return events


def test_one_json_line_per_event(start_logging: StartLogging) -> None:
    stderr = start_logging("info", [TEAM_KEY])
    log = structlog.get_logger("gateway.test")
    structlog.contextvars.bind_contextvars(request_id="req-1", app="billing")
    log.info("upstream.error", status=404, ref_id="r-1", message=f"bad key {TEAM_KEY}")
    log.debug("not.shown")
    structlog.contextvars.unbind_contextvars("app")
    log.warning("cache.not_stored", reason="too-large", key=APP_KEY)
    assert lines(stderr) == [
        {
            "event": "upstream.error",
            "level": "info",
            "request_id": "req-1",
            "app": "billing",
            "status": 404,
            "ref_id": "r-1",
            "message": "bad key [redacted]",
        },
        {
            "event": "cache.not_stored",
            "level": "warning",
            "request_id": "req-1",
            "reason": "too-large",
            "key": "[redacted]",
        },
    ]
    assert TEAM_KEY.encode() not in stderr.getvalue()
    assert APP_KEY.encode() not in stderr.getvalue()


def test_a_line_names_the_call_it_is_written_in(start_logging: StartLogging) -> None:
    stderr = start_logging("info", [])
    log = structlog.get_logger("gateway.test")
    call = enter_call("req-7", "billing", "tasks.runs.retrieve")
    try:
        log.warning("upstream.attempt_failed", attempt=1)
        log_info(log, "inside", {"route": "its-own"})  # the access line's way: its own wins
    finally:
        leave_call(call)
    log.warning("after")
    assert lines(stderr) == [
        {
            "event": "upstream.attempt_failed",
            "level": "warning",
            "request_id": "req-7",
            "app": "billing",
            "route": "tasks.runs.retrieve",
            "attempt": 1,
        },
        {
            "event": "inside",
            "level": "info",
            "request_id": "req-7",
            "app": "billing",
            "route": "its-own",
        },
        {"event": "after", "level": "warning"},
    ]


@pytest.mark.parametrize(
    ("level", "shown"),
    [
        pytest.param("debug", ["debug", "info", "warning", "error"], id="debug"),
        pytest.param("info", ["info", "warning", "error"], id="info"),
        pytest.param("warning", ["warning", "error"], id="warning"),
        pytest.param("error", ["error"], id="error"),
    ],
)
def test_level_filters(start_logging: StartLogging, level: str, shown: list[str]) -> None:
    stderr = start_logging(level, [])
    log = structlog.get_logger()
    log.debug("e.debug")
    log.info("e.info")
    log.warning("e.warning")
    log.error("e.error")
    assert lines(stderr) == [{"event": f"e.{name}", "level": name} for name in shown]


def test_set_log_level_reaches_loggers_already_in_use(start_logging: StartLogging) -> None:
    stderr = start_logging("info", [])
    log = structlog.get_logger("gateway.test")
    log.info("e.first")  # the logger is built now, and cached for good
    set_log_level("warning")
    log.info("e.hidden")
    log_info(log, "access", {"status": 200})
    log.warning("e.warning")
    set_log_level("debug")
    log.debug("e.debug")
    log_info(log, "access", {"status": 201})
    log.warning("e.flush")
    assert lines(stderr) == [
        {"event": "e.first", "level": "info"},
        {"event": "e.warning", "level": "warning"},
        {"event": "e.debug", "level": "debug"},
        {"event": "access", "level": "info", "status": 201},
        {"event": "e.flush", "level": "warning"},
    ]


def test_exception_is_formatted_and_scrubbed(start_logging: StartLogging) -> None:
    stderr = start_logging("info", [TEAM_KEY])
    log = structlog.get_logger()
    try:
        raise ValueError(f"boom {TEAM_KEY}")
    except ValueError:
        log.exception("gateway.internal_error", ref_id="r-2")
    [event] = lines(stderr)
    exception = event.pop("exception")
    assert event == {"event": "gateway.internal_error", "level": "error", "ref_id": "r-2"}
    assert exception.startswith("Traceback (most recent call last):\n")
    assert exception.endswith("ValueError: boom [redacted]")
    assert TEAM_KEY.encode() not in stderr.getvalue()


def test_values_json_cannot_encode_are_rendered_not_raised(start_logging: StartLogging) -> None:
    stderr = start_logging("info", [])
    path = Path("/var/lib/gateway.db")
    structlog.get_logger().info("store.opened", path=path)
    assert lines(stderr) == [{"event": "store.opened", "level": "info", "path": repr(path)}]


def test_scrubber_is_the_last_processor(start_logging: StartLogging) -> None:
    start_logging("info", [TEAM_KEY])
    processors = structlog.get_config()["processors"]
    assert isinstance(processors[-1], SecretScrubber)
    assert isinstance(processors[-2], structlog.processors.JSONRenderer)


class Opaque:
    """Not JSON: the renderer falls back to repr()."""

    def __repr__(self) -> str:
        return f"Opaque(token={TEAM_KEY})"


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        pytest.param({"x-api-key": TEAM_KEY}, {"x-api-key": "[redacted]"}, id="dict"),
        pytest.param([f"Bearer {APP_KEY}"], ["Bearer [redacted]"], id="list"),
        pytest.param(
            ValueError(f"bad key {TEAM_KEY}"),
            "ValueError('bad key [redacted]')",
            id="exception-object",
        ),
        pytest.param(
            {"outer": [{"inner": (TEAM_KEY, APP_KEY)}]},
            {"outer": [{"inner": ["[redacted]", "[redacted]"]}]},
            id="deeply-nested",
        ),
        pytest.param({TEAM_KEY: 1}, {"[redacted]": 1}, id="dict-key"),
        pytest.param(Opaque(), "Opaque(token=[redacted])", id="repr-fallback"),
    ],
)
def test_nested_values_are_scrubbed(
    start_logging: StartLogging, value: object, shown: object
) -> None:
    stderr = start_logging("info", [TEAM_KEY])
    structlog.get_logger().info("x", value=value)
    assert TEAM_KEY.encode() not in stderr.getvalue()
    assert APP_KEY.encode() not in stderr.getvalue()
    assert lines(stderr) == [{"event": "x", "level": "info", "value": shown}]


@pytest.mark.parametrize("secret", ESCAPED_SECRETS)
def test_json_escaped_secret_is_scrubbed_from_the_line(
    start_logging: StartLogging, secret: str
) -> None:
    stderr = start_logging("info", [secret])
    log = structlog.get_logger()
    log.info("upstream.error", message=f"bad key {secret}!", header={"x-api-key": secret})
    try:
        raise RuntimeError(f"boom {secret}")
    except RuntimeError:
        log.exception("gateway.internal_error")
    raw = stderr.getvalue()
    assert orjson.dumps(secret)[1:-1] not in raw
    assert secret.encode() not in raw
    first, second = lines(stderr)
    assert first == {
        "event": "upstream.error",
        "level": "info",
        "message": "bad key [redacted]!",
        "header": {"x-api-key": "[redacted]"},
    }
    assert second["exception"].endswith("RuntimeError: boom [redacted]")


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(ValueError("bad key team\\secret-0123"), id="exception-object"),
        pytest.param({"team\\secret-0123"}, id="set"),
    ],
)
def test_repr_escaped_secret_is_scrubbed(start_logging: StartLogging, value: object) -> None:
    secret = "team\\secret-0123"
    stderr = start_logging("info", [secret])
    structlog.get_logger().info("x", value=value)
    assert b"secret-0123" not in stderr.getvalue()


def test_a_rotated_team_key_is_scrubbed_from_then_on(start_logging: StartLogging) -> None:
    rotated = "rotated-team-key-9f8e7d6c5b4a"
    stderr = start_logging("info", [TEAM_KEY])
    log = structlog.get_logger("gateway.test")
    log.warning("before", key=rotated)
    scrub_also(rotated)
    log.warning("after", key=rotated, old=TEAM_KEY)
    assert lines(stderr) == [
        {"event": "before", "key": rotated, "level": "warning"},
        {"event": "after", "key": "[redacted]", "old": "[redacted]", "level": "warning"},
    ]

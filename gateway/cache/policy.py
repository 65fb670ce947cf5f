"""Caching policy for run inputs: pure decisions, no I/O."""

from __future__ import annotations

import enum
import re

import orjson

# A run id reaches upstream only if it is plain: no percent-encoding, no dots, no slashes.
# Matching the raw (undecoded) path segment means %2F can never become a path separator.
RUN_ID = re.compile(r"[A-Za-z0-9_-]{1,128}")
# Any id isolation checks (a run's, or a task group's, FindAll run's or monitor's): one path
# segment of the same characters, of any length.
OWNED_ID = re.compile(r"[A-Za-z0-9_-]+")
INPUT_PATH = re.compile(r"/v1/tasks/runs/([^/?]*)/input")

CACHE_NAME = "parallel-gateway"


# Cache-Status values (RFC 9211 section 2), naming this cache.
CACHE_HIT = f"{CACHE_NAME}; hit"
CACHE_MISS = f"{CACHE_NAME}; fwd=uri-miss"
# A create answered from a recording of the same create (README: Run your app's tests offline).
CACHE_REPLAY = f"{CACHE_HIT}; detail=replay"
# Every forwarded route: the cache was not used for it (RFC 9211 2.2).
CACHE_BYPASS = f"{CACHE_NAME}; fwd=bypass"


def cache_status(
    *,
    stored: bool,
    collapsed: bool = False,
    fwd_status: int | None = None,
    detail: str | None = None,
) -> str:
    """Cache-Status for a miss: `fwd-status` (2.4) when upstream did not answer 200, `stored`
    (2.5) once committed, `collapsed` (2.6) for a request that waited on another's fetch, and
    `detail` (2.8) when the gateway itself could not get an answer."""
    value = CACHE_MISS
    if fwd_status is not None and fwd_status != 200:
        value += f"; fwd-status={fwd_status}"
    if stored:
        value += "; stored"
    if collapsed:
        value += "; collapsed"
    if detail:
        value += f"; detail={detail}"
    return value


def unconsulted_status(detail: str) -> str:
    """Cache-Status for a request refused before the cache was consulted (bad key, bad id)."""
    return f"{CACHE_NAME}; detail={detail}"


class Storability(enum.Enum):
    STORE = "store"
    NOT_OK = "not-ok"
    NOT_JSON = "not-json"  # nothing the SDK could read: the app gets 502
    MALFORMED = "malformed"  # JSON, but not a TaskRunInput: relayed, not stored
    TOO_LARGE = "too-large"
    NOT_FINAL = "not-final"  # a run object that may still change (final answers only)
    MCP_HEADERS = "mcp-headers"  # an event stream that may carry MCP tokens (mcp_headers.py)


def match_input_path(raw_path: str) -> str | None:
    """Return the raw run_id segment if `raw_path` is the run-input route, else None."""
    m = INPUT_PATH.fullmatch(raw_path)
    return m.group(1) if m else None


def is_valid_run_id(run_id: str) -> bool:
    return RUN_ID.fullmatch(run_id) is not None


def is_valid_owned_id(owned_id: str) -> bool:
    """A run id, or the id of a task group, FindAll run or monitor (`runs grant`)."""
    return OWNED_ID.fullmatch(owned_id) is not None


def storability(status: int, body: bytes, max_body_bytes: int) -> Storability:
    """Decide whether an upstream answer may be kept forever.

    Only a 200 carrying a TaskRunInput (a JSON object with `processor` and `input`) is stored:
    a run's input never changes, but an error or a garbled body might next time.
    """
    if status != 200:
        return Storability.NOT_OK
    if len(body) > max_body_bytes:
        return Storability.TOO_LARGE
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return Storability.NOT_JSON
    return Storability.STORE if is_task_run_input(data) else Storability.MALFORMED


def is_task_run_input(data: object) -> bool:
    """A TaskRunInput: an object whose `processor` is a string and `input` a string or object.

    Other fields are not checked: newer API versions add fields, and they are kept as they are.
    """
    return (
        isinstance(data, dict)
        and isinstance(data.get("processor"), str)
        and isinstance(data.get("input"), str | dict)
    )

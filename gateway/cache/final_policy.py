"""Caching policy for final answers (results, finished runs, their event streams): pure
decisions, no I/O."""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import parse_qsl

import orjson

from ..storage.types import AnswerKind
from .mcp_headers import stream_names_mcp_servers
from .policy import Storability

# A run object with one of these statuses never changes again (PARALLEL_API.md: completed and
# failed are documented as terminal; cancelled is final in practice). queued, running,
# action_required and cancelling are not.
FINAL_STATUSES = frozenset({"completed", "failed", "cancelled"})
# /result long-polls for `timeout` seconds: how long the app waits, not what the answer is.
IGNORED_QUERY = {
    AnswerKind.RESULT: frozenset({"timeout"}),
    AnswerKind.RUN: frozenset(),
    AnswerKind.EVENTS: frozenset(),
}
# What a stored answer is served as (a stream's media type, as upstream sends it).
CONTENT_TYPES = {
    AnswerKind.RESULT: "application/json",
    AnswerKind.RUN: "application/json",
    AnswerKind.EVENTS: "text/event-stream",
}
STATE_EVENT = "task_run.state"


def beta_set(values: Iterable[str]) -> str:
    """The parallel-beta headers as one normalised set: split on commas, trimmed, sorted,
    de-duplicated, joined by commas; "" for none. `b, a` and `a,b,a` are the same set."""
    names = {name.strip() for value in values for name in value.split(",")}
    return ",".join(sorted(names - {""}))


def answer_key(kind: AnswerKind, run_id: str, beta: str) -> str:
    """A final answer's key in the memory layer it shares with run inputs (keyed by bare run
    id): a run id never holds "/", so the run comes first and no key collides with an input's."""
    return f"{run_id}/{kind.value}/{beta}"


def run_of(key: str) -> str:
    """The run a memory key belongs to (an input's key is its run id)."""
    return key.partition("/")[0]


def cacheable_query(kind: AnswerKind, query_string: str) -> bool:
    """Whether a request with this query may be answered from (and stored in) the cache: any
    parameter but those that do not change the answer makes it a plain forward."""
    names = {name for name, _ in parse_qsl(query_string, keep_blank_values=True)}
    return names <= IGNORED_QUERY[kind]


def answer_storability(kind: AnswerKind, body: bytes, max_body_bytes: int) -> Storability:
    """Whether a 200 answer may be kept for ever: a result that is a JSON object, a run
    object whose status is final, or an event stream whose last event is a final run state. A
    non-final run (NOT_FINAL) changes; anything else the gateway cannot read might be different
    next time."""
    if len(body) > max_body_bytes:
        return Storability.TOO_LARGE
    if kind is AnswerKind.EVENTS:
        return _stream_storability(body)
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return Storability.NOT_JSON
    if not isinstance(data, dict):
        return Storability.MALFORMED
    if kind is AnswerKind.RUN:
        status = data.get("status")
        if not isinstance(status, str):
            return Storability.MALFORMED
        if status not in FINAL_STATUSES:
            return Storability.NOT_FINAL
    return Storability.STORE


def _stream_storability(body: bytes) -> Storability:
    """A stream is final once its last event is a task_run.state whose run's status is final
    (PARALLEL_API.md: a finished run's stream starts and ends with one). One that ended on a
    run still active was cut off (streams close after 570 s) and replays less than the run."""
    data = last_event_data(body)
    if data is None:
        return Storability.MALFORMED
    try:
        event = orjson.loads(data)
    except orjson.JSONDecodeError:
        return Storability.NOT_JSON
    if not isinstance(event, dict) or event.get("type") != STATE_EVENT:
        return Storability.NOT_FINAL
    run = event.get("run")
    if not isinstance(run, dict) or run.get("status") not in FINAL_STATUSES:
        return Storability.NOT_FINAL
    if stream_names_mcp_servers(body):
        return Storability.MCP_HEADERS
    return Storability.STORE


def last_event_data(body: bytes) -> bytes | None:
    """The data of the last event of a Server-Sent Events stream (WHATWG HTML 9.2.6: lines end
    in CRLF, LF or CR; `data:` lines join with LF; a blank line dispatches an event, one with no
    data is none), None if the stream has no event or does not end with a dispatched one."""
    lines = body.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n")
    if len(lines) < 3 or lines[-1] or lines[-2]:  # not ended by a blank line: an event cut short
        return None
    last: bytes | None = None
    data: list[bytes] = []
    for line in lines[:-1]:
        if not line:
            if data:
                last, data = b"\n".join(data), []
            continue
        name, _, value = line.partition(b":")
        if name == b"data":
            data.append(value[1:] if value.startswith(b" ") else value)
    return last

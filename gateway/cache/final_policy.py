"""Caching policy for final answers (results, finished runs): pure decisions, no I/O."""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import parse_qsl

import orjson

from ..storage.types import AnswerKind
from .policy import Storability

# A run object with one of these statuses never changes again (PARALLEL_API.md: completed and
# failed are documented as terminal; cancelled is final in practice). queued, running,
# action_required and cancelling are not.
FINAL_STATUSES = frozenset({"completed", "failed", "cancelled"})
# /result long-polls for `timeout` seconds: how long the app waits, not what the answer is.
IGNORED_QUERY = {AnswerKind.RESULT: frozenset({"timeout"}), AnswerKind.RUN: frozenset()}


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
    """Whether a 200 answer may be kept for ever: a result that is a JSON object, or a run
    object whose status is final. A non-final run (NOT_FINAL) changes; anything else the
    gateway cannot read might be different next time."""
    if len(body) > max_body_bytes:
        return Storability.TOO_LARGE
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

"""Which calls Parallel bills, of what kind and processor, read from a call's request and its
answer. Pure."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping

import orjson

# The kinds Parallel bills (PARALLEL_API.md, Billing), by the route classes of http/catalog.py.
TASK_RUN = "task_run"
GROUP_RUN = "group_run"
SEARCH = "search"
EXTRACT = "extract"
FINDALL = "findall"
MONITOR = "monitor"
BILLABLE: Mapping[str, str] = {
    "tasks.runs.create": TASK_RUN,
    "tasks.groups.add_runs": GROUP_RUN,
    "search": SEARCH,
    "extract": EXTRACT,
    "findall.create": FINDALL,
    "monitors.create": MONITOR,
}
# Reads answered from the cache: free upstream, so what they save is a call, not money.
RUN_INPUT = "run_input"
RUN_RESULT = "run_result"
RUN_OBJECT = "run"
RUN_EVENTS = "run_events"
FREE_KINDS = frozenset({RUN_INPUT, RUN_RESULT, RUN_OBJECT, RUN_EVENTS})

# Calls made, by processor (None where the kind has none, or it could not be read).
Made = dict[str | None, int]


def calls_made(kind: str, request: bytes | None, answer: bytes) -> Made:
    """The calls a successful (2xx) billable call made: a create's processor as upstream's answer
    confirms it, else as the request asked; a group's added runs one by one."""
    asked, answered = _object(request), _object(answer)
    if kind == TASK_RUN:
        return {_text(answered, "processor") or _text(asked, "processor"): 1}
    if kind == GROUP_RUN:
        return _group_runs(asked, answered)
    if kind == FINDALL:
        return {_text(answered, "generator") or _text(asked, "generator"): 1}
    return {None: 1}


def _group_runs(asked: dict[str, object], answered: dict[str, object]) -> Made:
    """Each run added, by its processor; by upstream's count of run ids under no processor where
    the request's inputs do not match it (a body that could not be read)."""
    inputs = asked.get("inputs")
    run_ids = answered.get("run_ids")
    added = len(run_ids) if isinstance(run_ids, list) else None
    if isinstance(inputs, list) and (added is None or added == len(inputs)):
        processors = [_text(i, "processor") if isinstance(i, dict) else None for i in inputs]
        return dict(Counter(processors))
    return {None: added} if added else {}


def _object(body: bytes | None) -> dict[str, object]:
    if not body:
        return {}
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def _text(value: dict[str, object], key: str) -> str | None:
    found = value.get(key)
    return found if isinstance(found, str) and found else None

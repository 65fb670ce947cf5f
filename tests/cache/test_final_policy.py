"""The final-answer policy with no server: the beta set, the query, what may be stored."""

from __future__ import annotations

import pytest

from gateway.cache.final_policy import (
    answer_key,
    answer_storability,
    beta_set,
    cacheable_query,
    last_event_data,
    run_of,
)
from gateway.cache.policy import Storability
from gateway.storage.types import AnswerKind

RESULT, RUN, EVENTS = AnswerKind.RESULT, AnswerKind.RUN, AnswerKind.EVENTS
RUNNING = b'event: task_run.state\ndata: {"type":"task_run.state","run":{"status":"running"}}\n\n'
PROGRESS = b'event: task_run.progress_stats\ndata: {"type":"task_run.progress_stats"}\n\n'
DONE = b'event: task_run.state\ndata: {"type":"task_run.state","run":{"status":"completed"}}\n\n'


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ([], ""),
        ([""], ""),
        (["b, a"], "a,b"),
        (["a,b,a"], "a,b"),
        ([" b ,a, ,"], "a,b"),
        (["b", "a, c"], "a,b,c"),  # the header sent twice
        (["A"], "A"),  # values are compared as sent: no case folding
    ],
)
def test_beta_set(headers: list[str], expected: str) -> None:
    assert beta_set(headers) == expected


@pytest.mark.parametrize(
    ("kind", "query", "cacheable"),
    [
        (RESULT, "", True),
        (RESULT, "timeout=5", True),
        (RESULT, "timeout=5&timeout=60", True),
        (RESULT, "timeout", True),
        (RESULT, "timeout=5&view=full", False),
        (RESULT, "=5", False),
        (RUN, "", True),
        (RUN, "timeout=5", False),
        (RUN, "x", False),
        (EVENTS, "", True),
        (EVENTS, "timeout=5", False),
    ],
)
def test_cacheable_query(kind: AnswerKind, query: str, cacheable: bool) -> None:
    assert cacheable_query(kind, query) is cacheable


@pytest.mark.parametrize(
    ("kind", "body", "decision"),
    [
        (RESULT, b'{"run": {"status": "completed"}, "output": {}}', Storability.STORE),
        (RESULT, b"not json", Storability.NOT_JSON),
        (RESULT, b"[1]", Storability.MALFORMED),
        (RUN, b'{"status": "completed"}', Storability.STORE),
        (RUN, b'{"status": "failed"}', Storability.STORE),
        (RUN, b'{"status": "cancelled"}', Storability.STORE),
        (RUN, b'{"status": "queued"}', Storability.NOT_FINAL),
        (RUN, b'{"status": "running"}', Storability.NOT_FINAL),
        (RUN, b'{"status": "action_required"}', Storability.NOT_FINAL),
        (RUN, b'{"status": "cancelling"}', Storability.NOT_FINAL),
        (RUN, b'{"status": null}', Storability.MALFORMED),
        (RUN, b'{"status": "completed", "pad": "' + b"x" * 100 + b'"}', Storability.TOO_LARGE),
    ],
)
def test_answer_storability(kind: AnswerKind, body: bytes, decision: Storability) -> None:
    assert answer_storability(kind, body, max_body_bytes=100) is decision


@pytest.mark.parametrize(
    ("body", "decision"),
    [
        (RUNNING + PROGRESS + DONE, Storability.STORE),
        (RUNNING + DONE.replace(b"completed", b"failed"), Storability.STORE),
        (RUNNING + DONE.replace(b"completed", b"cancelled"), Storability.STORE),
        (RUNNING + PROGRESS, Storability.NOT_FINAL),  # cut before its final state
        (RUNNING + PROGRESS + RUNNING, Storability.NOT_FINAL),  # closed at 570 s, still running
        (DONE + PROGRESS, Storability.NOT_FINAL),  # a final state is the last event, or nothing
        (RUNNING + DONE[:-1], Storability.MALFORMED),  # its last event never dispatched
        (b"", Storability.MALFORMED),
        (b": keep-alive\n\n", Storability.MALFORMED),
        (RUNNING + b"data: {not json\n\n", Storability.NOT_JSON),
        (RUNNING + b'data: {"type":"task_run.state","run":"completed"}\n\n', Storability.NOT_FINAL),
        (RUNNING + PROGRESS + DONE + b"x" * 1000, Storability.TOO_LARGE),
    ],
)
def test_an_event_stream_is_final_once_it_ends_with_a_final_state(
    body: bytes, decision: Storability
) -> None:
    assert answer_storability(EVENTS, body, max_body_bytes=1000) is decision


@pytest.mark.parametrize(
    ("body", "data"),
    [
        (b"data: a\n\n", b"a"),
        (b"data: a\r\n\r\ndata:b\r\r", b"b"),  # CRLF and CR end lines too; one space is cut
        (b"event: x\ndata: a\ndata:  b\nid: 1\n\n", b"a\n b"),  # data lines join with LF
        (b"data: a\n\n: comment\n\nevent: empty\n\n", b"a"),  # no data: no event
        (b"data: a\n\ndata: b\n", None),  # the last event is not ended
        (b"data: a", None),
        (b"\n\n", None),
    ],
)
def test_last_event_data(body: bytes, data: bytes | None) -> None:
    assert last_event_data(body) == data


def test_an_answer_key_never_collides_with_an_input_and_names_its_run() -> None:
    key = answer_key(RESULT, "trun_1", "a,b")
    assert key != "trun_1"
    assert key != answer_key(RUN, "trun_1", "a,b") != answer_key(RESULT, "trun_1", "")
    assert run_of(key) == run_of("trun_1") == "trun_1"

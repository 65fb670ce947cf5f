"""The final-answer policy with no server: the beta set, the query, what may be stored."""

from __future__ import annotations

import pytest

from gateway.cache.final_policy import (
    answer_key,
    answer_storability,
    beta_set,
    cacheable_query,
    run_of,
)
from gateway.cache.policy import Storability
from gateway.storage.types import AnswerKind

RESULT, RUN = AnswerKind.RESULT, AnswerKind.RUN


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


def test_an_answer_key_never_collides_with_an_input_and_names_its_run() -> None:
    key = answer_key(RESULT, "trun_1", "a,b")
    assert key != "trun_1"
    assert key != answer_key(RUN, "trun_1", "a,b") != answer_key(RESULT, "trun_1", "")
    assert run_of(key) == run_of("trun_1") == "trun_1"

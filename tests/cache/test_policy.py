"""The run-input caching decision, table by table: route, run id, Cache-Status, storability."""

from __future__ import annotations

import orjson
import pytest

from gateway.cache.policy import (
    CACHE_HIT,
    CACHE_MISS,
    Storability,
    cache_status,
    is_task_run_input,
    is_valid_run_id,
    match_input_path,
    storability,
    unconsulted_status,
)

RUN_ID = "trun_9907962f83aa4d9d98fd7f4bf745d654"
TASK_RUN_INPUT = orjson.dumps(
    {"processor": "base", "input": "What is the capital of France?", "metadata": None}
)


@pytest.mark.parametrize(
    ("raw_path", "expected"),
    [
        pytest.param(f"/v1/tasks/runs/{RUN_ID}/input", RUN_ID, id="trun-id"),
        pytest.param(
            "/v1/tasks/runs/fcb2b4f3-c75e-4186-87bc-caa1a8381331/input",
            "fcb2b4f3-c75e-4186-87bc-caa1a8381331",
            id="bare-uuid",
        ),
        # The segment is returned raw: percent-encoding is never decoded, so %2F is no separator.
        pytest.param("/v1/tasks/runs/a%2Fb/input", "a%2Fb", id="encoded-slash-in-segment"),
        pytest.param("/v1/tasks/runs/a%2fb/input", "a%2fb", id="lowercase-encoded-slash"),
        pytest.param("/v1/tasks/runs/%2e%2e/input", "%2e%2e", id="encoded-dot-dot"),
        pytest.param("/v1/tasks/runs/a%252Fb/input", "a%252Fb", id="double-encoded-slash"),
        pytest.param("/v1/tasks/runs/../input", "..", id="dot-dot-segment"),
        pytest.param("/v1/tasks/runs/%00/input", "%00", id="encoded-nul"),
        pytest.param("/v1/tasks/runs//input", "", id="empty-segment"),
        pytest.param(f"/v1/tasks/runs/{RUN_ID}%2Finput", None, id="encoded-slash-before-input"),
        pytest.param("/v1/tasks/runs/a/b/input", None, id="two-segments"),
        pytest.param(f"/v1/tasks/runs/{RUN_ID}/input/", None, id="trailing-slash"),
        pytest.param(f"/v1/tasks/runs/{RUN_ID}", None, id="run-not-input"),
        pytest.param(f"/v1/tasks/runs/{RUN_ID}/result", None, id="result"),
        pytest.param(f"/v1/tasks/runs/{RUN_ID}/inputs", None, id="inputs"),
        pytest.param(f"/v1/tasks/runs/{RUN_ID}/input.json", None, id="input-suffix"),
        pytest.param(f"//v1/tasks/runs/{RUN_ID}/input", None, id="double-leading-slash"),
        pytest.param(f"/prefix/v1/tasks/runs/{RUN_ID}/input", None, id="path-prefix"),
        pytest.param(f"v1/tasks/runs/{RUN_ID}/input", None, id="no-leading-slash"),
        pytest.param(f"/V1/tasks/runs/{RUN_ID}/input", None, id="case-sensitive"),
        pytest.param(f"/v1/tasks/groups/{RUN_ID}/input", None, id="groups"),
        pytest.param("/v1/tasks/runs", None, id="runs-collection"),
        pytest.param("/", None, id="root"),
        pytest.param("", None, id="empty"),
    ],
)
def test_match_input_path(raw_path: str, expected: str | None) -> None:
    assert match_input_path(raw_path) == expected


@pytest.mark.parametrize(
    "run_id",
    [
        pytest.param(RUN_ID, id="trun-32-hex"),
        pytest.param("fcb2b4f3-c75e-4186-87bc-caa1a8381331", id="bare-uuid"),
        pytest.param("a", id="one-char"),
        pytest.param("a" * 128, id="128-chars"),
        pytest.param("A_b-9", id="underscore-dash-mixed-case"),
        pytest.param("_", id="underscore-only"),
        pytest.param("-", id="dash-only"),
    ],
)
def test_valid_run_ids(run_id: str) -> None:
    assert is_valid_run_id(run_id) is True


@pytest.mark.parametrize(
    "run_id",
    [
        pytest.param("", id="empty"),
        pytest.param(".", id="dot"),
        pytest.param("..", id="dot-dot"),
        pytest.param("%2e%2e", id="encoded-dot-dot"),
        pytest.param("a%2Fb", id="encoded-slash"),
        pytest.param("%00", id="encoded-nul"),
        pytest.param("a\x00b", id="nul"),
        pytest.param("a b", id="space"),
        pytest.param("a/b", id="slash"),
        pytest.param("a.b", id="inner-dot"),
        pytest.param("a+b", id="plus"),
        pytest.param(f"{RUN_ID}\n", id="trailing-newline"),
        pytest.param("a" * 129, id="129-chars"),
        pytest.param("a" * 200, id="200-chars"),
        pytest.param("trün_1", id="latin-umlaut"),
        pytest.param("\uff54run_1", id="fullwidth-letter"),
        pytest.param("\u0661\u0662", id="arabic-indic-digits"),
        pytest.param("run\u200b", id="zero-width-space"),
    ],
)
def test_invalid_run_ids(run_id: str) -> None:
    assert is_valid_run_id(run_id) is False


def test_cache_status_constants() -> None:
    assert CACHE_HIT == "parallel-gateway; hit"
    assert CACHE_MISS == "parallel-gateway; fwd=uri-miss"


MISS = "parallel-gateway; fwd=uri-miss"


@pytest.mark.parametrize(
    ("stored", "collapsed", "fwd_status", "expected"),
    [
        pytest.param(False, False, None, MISS, id="miss"),
        pytest.param(True, False, None, f"{MISS}; stored", id="stored"),
        pytest.param(False, True, None, f"{MISS}; collapsed", id="collapsed"),
        pytest.param(True, True, None, f"{MISS}; stored; collapsed", id="stored-collapsed"),
        pytest.param(False, False, 200, MISS, id="fwd-200-miss"),
        pytest.param(True, False, 200, f"{MISS}; stored", id="fwd-200-stored"),
        pytest.param(False, True, 200, f"{MISS}; collapsed", id="fwd-200-collapsed"),
        pytest.param(True, True, 200, f"{MISS}; stored; collapsed", id="fwd-200-stored-collapsed"),
        pytest.param(False, False, 404, f"{MISS}; fwd-status=404", id="fwd-404"),
        pytest.param(True, False, 404, f"{MISS}; fwd-status=404; stored", id="fwd-404-stored"),
        pytest.param(
            False, True, 404, f"{MISS}; fwd-status=404; collapsed", id="fwd-404-collapsed"
        ),
        pytest.param(
            True,
            True,
            404,
            f"{MISS}; fwd-status=404; stored; collapsed",
            id="fwd-404-stored-collapsed",
        ),
        pytest.param(False, False, 503, f"{MISS}; fwd-status=503", id="fwd-503"),
        pytest.param(
            False, True, 503, f"{MISS}; fwd-status=503; collapsed", id="fwd-503-collapsed"
        ),
        pytest.param(False, False, 204, f"{MISS}; fwd-status=204", id="fwd-204"),
    ],
)
def test_cache_status(stored: bool, collapsed: bool, fwd_status: int | None, expected: str) -> None:
    assert cache_status(stored=stored, collapsed=collapsed, fwd_status=fwd_status) == expected


@pytest.mark.parametrize(
    ("collapsed", "detail", "expected"),
    [
        pytest.param(False, "upstream-timeout", f"{MISS}; detail=upstream-timeout", id="detail"),
        pytest.param(
            True,
            "upstream-unavailable",
            f"{MISS}; collapsed; detail=upstream-unavailable",
            id="collapsed-detail",
        ),
        pytest.param(False, "", MISS, id="empty-detail-left-out"),
        pytest.param(False, None, MISS, id="no-detail"),
    ],
)
def test_cache_status_detail(collapsed: bool, detail: str | None, expected: str) -> None:
    assert cache_status(stored=False, collapsed=collapsed, detail=detail) == expected


def test_cache_status_parameter_order() -> None:
    # One fixed order, so the header is stable for clients and tests that compare it whole.
    assert cache_status(stored=True, collapsed=True, fwd_status=503, detail="x") == (
        "parallel-gateway; fwd=uri-miss; fwd-status=503; stored; collapsed; detail=x"
    )


@pytest.mark.parametrize(
    "detail", ["unauthenticated", "invalid-run-id", "method-not-allowed", "no-team-key"]
)
def test_unconsulted_status(detail: str) -> None:
    assert unconsulted_status(detail) == f"parallel-gateway; detail={detail}"


def test_cache_status_defaults_to_plain_miss() -> None:
    assert cache_status(stored=False) == "parallel-gateway; fwd=uri-miss"


LIMIT = 1024


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        pytest.param(200, TASK_RUN_INPUT, Storability.STORE, id="task-run-input"),
        pytest.param(
            200,
            orjson.dumps(
                {
                    "processor": "core",
                    "input": {"company": "Parallel"},
                    "task_spec": {"output_schema": {"type": "text"}},
                    "memory_scope_key": "team-a",
                    "some_field_from_next_year": [1, 2, 3],
                }
            ),
            Storability.STORE,
            id="unknown-extra-fields",
        ),
        pytest.param(200, b'{"input":"x","processor":"base"}', Storability.STORE, id="key-order"),
        pytest.param(201, TASK_RUN_INPUT, Storability.NOT_OK, id="201"),
        pytest.param(203, TASK_RUN_INPUT, Storability.NOT_OK, id="203"),
        pytest.param(204, b"", Storability.NOT_OK, id="204"),
        pytest.param(304, b"", Storability.NOT_OK, id="304"),
        pytest.param(
            404,
            b'{"type":"error","error":{"ref_id":"r","message":"Run id not found","detail":null}}',
            Storability.NOT_OK,
            id="404-error-body",
        ),
        pytest.param(500, TASK_RUN_INPUT, Storability.NOT_OK, id="500-with-input-shape"),
        pytest.param(503, b"x" * (LIMIT + 1), Storability.NOT_OK, id="non-200-over-limit"),
        pytest.param(200, b"<html>oops</html>", Storability.NOT_JSON, id="html"),
        pytest.param(200, b"", Storability.NOT_JSON, id="empty-body"),
        pytest.param(200, TASK_RUN_INPUT[:-1], Storability.NOT_JSON, id="truncated-json"),
        pytest.param(200, b"\xff\xfe{}", Storability.NOT_JSON, id="invalid-utf8"),
        pytest.param(200, b"null", Storability.MALFORMED, id="json-null"),
        pytest.param(200, b'"processor input"', Storability.MALFORMED, id="json-string"),
        pytest.param(200, b"42", Storability.MALFORMED, id="json-number"),
        pytest.param(200, b"[" + TASK_RUN_INPUT + b"]", Storability.MALFORMED, id="json-array"),
        pytest.param(200, b'["processor", "input"]', Storability.MALFORMED, id="array-of-keys"),
        pytest.param(200, b"{}", Storability.MALFORMED, id="empty-object"),
        pytest.param(200, b'{"processor":"base"}', Storability.MALFORMED, id="no-input"),
        pytest.param(200, b'{"input":"x"}', Storability.MALFORMED, id="no-processor"),
        pytest.param(
            200, b'{"Processor":"base","Input":"x"}', Storability.MALFORMED, id="keys-wrong-case"
        ),
        pytest.param(
            200, b'{"data":{"processor":"base","input":"x"}}', Storability.MALFORMED, id="nested"
        ),
        pytest.param(
            200, b'{"processor":"base","input":null}', Storability.MALFORMED, id="input-null"
        ),
        pytest.param(
            200, b'{"processor":"base","input":42}', Storability.MALFORMED, id="input-number"
        ),
        pytest.param(
            200, b'{"processor":"base","input":["x"]}', Storability.MALFORMED, id="input-list"
        ),
        pytest.param(
            200, b'{"processor":"base","input":true}', Storability.MALFORMED, id="input-bool"
        ),
        pytest.param(
            200, b'{"processor":1,"input":"x"}', Storability.MALFORMED, id="processor-number"
        ),
        pytest.param(
            200, b'{"processor":null,"input":"x"}', Storability.MALFORMED, id="processor-null"
        ),
        pytest.param(
            200,
            b'{"processor":{"name":"base"},"input":"x"}',
            Storability.MALFORMED,
            id="processor-object",
        ),
        pytest.param(
            200, b'{"processor":"base","input":"x"}', Storability.STORE, id="input-string"
        ),
        pytest.param(
            200, b'{"processor":"base","input":""}', Storability.STORE, id="input-empty-string"
        ),
        pytest.param(
            200, b'{"processor":"base","input":{}}', Storability.STORE, id="input-empty-object"
        ),
        pytest.param(200, b"x" * (LIMIT + 1), Storability.TOO_LARGE, id="garbage-over-limit"),
    ],
)
def test_storability(status: int, body: bytes, expected: Storability) -> None:
    assert storability(status, body, LIMIT) is expected


def padded_input(size: int) -> bytes:
    """A valid TaskRunInput of exactly `size` bytes."""
    empty = orjson.dumps({"processor": "base", "input": ""})
    body = orjson.dumps({"processor": "base", "input": "x" * (size - len(empty))})
    assert len(body) == size
    return body


@pytest.mark.parametrize(
    ("size", "limit", "expected"),
    [
        pytest.param(500, 500, Storability.STORE, id="exactly-at-limit"),
        pytest.param(500, 499, Storability.TOO_LARGE, id="one-byte-over"),
        pytest.param(500, 501, Storability.STORE, id="one-byte-under"),
        pytest.param(100_000, 1024, Storability.TOO_LARGE, id="far-over"),
    ],
)
def test_storability_size_limit(size: int, limit: int, expected: Storability) -> None:
    assert storability(200, padded_input(size), limit) is expected


def test_storability_values() -> None:
    # The values are logged as the reason a body was not stored.
    assert {s.name: s.value for s in Storability} == {
        "STORE": "store",
        "NOT_OK": "not-ok",
        "NOT_JSON": "not-json",
        "MALFORMED": "malformed",
        "TOO_LARGE": "too-large",
        "NOT_FINAL": "not-final",
        "MCP_HEADERS": "mcp-headers",
    }


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        pytest.param({"processor": "base", "input": "What is 2 + 2?"}, True, id="input-string"),
        pytest.param({"processor": "core", "input": {"company": "Parallel"}}, True, id="input-obj"),
        pytest.param({"processor": "base", "input": ""}, True, id="input-empty-string"),
        pytest.param({"processor": "base", "input": {}}, True, id="input-empty-object"),
        pytest.param({"processor": "", "input": "x"}, True, id="processor-empty-string"),
        pytest.param(
            {"processor": "base", "input": "x", "metadata": None, "next_year": [1]},
            True,
            id="extra-fields-unchecked",
        ),
        pytest.param({"processor": "base", "input": None}, False, id="input-null"),
        pytest.param({"processor": "base", "input": 42}, False, id="input-int"),
        pytest.param({"processor": "base", "input": 4.2}, False, id="input-float"),
        pytest.param({"processor": "base", "input": True}, False, id="input-bool"),
        pytest.param({"processor": "base", "input": ["x"]}, False, id="input-list"),
        pytest.param({"processor": "base", "input": []}, False, id="input-empty-list"),
        pytest.param({"processor": 1, "input": "x"}, False, id="processor-int"),
        pytest.param({"processor": None, "input": "x"}, False, id="processor-null"),
        pytest.param({"processor": ["base"], "input": "x"}, False, id="processor-list"),
        pytest.param({"processor": {"name": "base"}, "input": "x"}, False, id="processor-dict"),
        pytest.param({"processor": "base"}, False, id="no-input"),
        pytest.param({"input": "x"}, False, id="no-processor"),
        pytest.param({}, False, id="empty-dict"),
        pytest.param(None, False, id="none"),
        pytest.param("processor input", False, id="str"),
        pytest.param(42, False, id="int"),
        pytest.param([{"processor": "base", "input": "x"}], False, id="list-of-input"),
    ],
)
def test_is_task_run_input(data: object, expected: bool) -> None:
    assert is_task_run_input(data) is expected

"""A create's match key with no server: what changes it, what does not, and what it keeps."""

from __future__ import annotations

import orjson
import pytest

from gateway.cache.match_key import BETA_FIELD, differing_fields, match_key

MCP_TOKEN = "Bearer mcp-secret-token-123"
BASE: dict[str, object] = {
    "processor": "lite",
    "input": "What is the GDP of France?",
    "metadata": {"suite": "ci"},
    "task_spec": {"output_schema": {"type": "text"}},
    "mcp_servers": [
        {"type": "url", "name": "docs", "url": "https://mcp.example", "headers": {"x": MCP_TOKEN}}
    ],
}


def key_of(body: object, *beta: str) -> str:
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    key = match_key(raw, beta)
    assert key is not None
    return key.hash


def changed(path: str, value: object) -> dict[str, object]:
    """BASE with one field (or one field of task_spec) set to `value`."""
    body = orjson.loads(orjson.dumps(BASE))
    if path.startswith("task_spec."):
        body["task_spec"][path.removeprefix("task_spec.")] = value
    else:
        body[path] = value
    return body  # type: ignore[no-any-return]


def test_key_order_and_whitespace_do_not_change_the_key() -> None:
    spaced = (
        b'{ "task_spec" : {"output_schema": {"type" : "text"}},\n "metadata": {"suite": "ci"},'
        b'\t"mcp_servers": [{"headers": {"x": "' + MCP_TOKEN.encode() + b'"}, "url": '
        b'"https://mcp.example", "name": "docs", "type": "url"}],'
        b' "input": "What is the GDP of France?", "processor": "lite" }'
    )
    assert key_of(spaced) == key_of(BASE)


def test_an_mcp_header_value_does_not_change_the_key_and_is_never_kept() -> None:
    other = orjson.loads(orjson.dumps(BASE))
    other["mcp_servers"][0]["headers"]["x"] = "Bearer another-token"
    assert key_of(other) == key_of(BASE)
    key = match_key(orjson.dumps(BASE), ())
    assert key is not None
    assert MCP_TOKEN not in repr(key)
    # A header's name is part of what the create sends: another name is another create.
    renamed = orjson.loads(orjson.dumps(BASE))
    renamed["mcp_servers"][0]["headers"] = {"authorization": MCP_TOKEN}
    assert key_of(renamed) != key_of(BASE)


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("processor", "base"),
        ("input", "What is the GDP of Spain?"),
        ("task_spec.output_schema", {"type": "json", "json_schema": {"type": "object"}}),
        ("metadata", {"suite": "nightly"}),
    ],
)
def test_an_argument_changes_the_key_and_is_named(path: str, value: object) -> None:
    body = changed(path, value)
    assert key_of(body) != key_of(BASE)
    asked, recorded = match_key(orjson.dumps(body), ()), match_key(orjson.dumps(BASE), ())
    assert asked is not None
    assert recorded is not None
    assert differing_fields(asked.fields, recorded.fields) == [path]


def test_the_parallel_beta_set_is_part_of_the_key() -> None:
    plain = match_key(orjson.dumps(BASE), ())
    beta = match_key(orjson.dumps(BASE), ["mcp-server-2025-07-17, events-sse-2025-07-24"])
    same = match_key(orjson.dumps(BASE), ["events-sse-2025-07-24", "mcp-server-2025-07-17"])
    assert plain is not None
    assert beta is not None
    assert same is not None
    assert beta.hash != plain.hash
    assert same.hash == beta.hash  # one set, however it is sent
    assert differing_fields(beta.fields, plain.fields) == [BETA_FIELD]


def test_fields_are_top_level_and_one_level_into_task_spec() -> None:
    key = match_key(orjson.dumps(BASE), ["a-beta"])
    assert key is not None
    assert sorted(key.fields) == [
        "input",
        "mcp_servers",
        "metadata",
        BETA_FIELD,
        "processor",
        "task_spec.output_schema",
    ]
    assert all(len(h) == 16 for h in key.fields.values())
    assert key.processor == "lite"
    assert len(key.hash) == 64


def test_numbers_are_matched_by_value() -> None:
    assert key_of(b'{"processor":"lite","input":{"x":1.0}}') == key_of(
        b'{"processor":"lite","input":{"x":1.00}}'
    )
    assert key_of(b'{"processor":"lite","input":{"x":1}}') != key_of(
        b'{"processor":"lite","input":{"x":1.0}}'
    )


@pytest.mark.parametrize("body", [b"", b"not json", b"[1, 2]", b'"text"'])
def test_a_body_that_is_not_a_json_object_has_no_key(body: bytes) -> None:
    assert match_key(body, ()) is None


def test_a_processor_that_is_not_a_plain_name_is_not_repeated() -> None:
    key = match_key(orjson.dumps({"processor": "lite secret=1", "input": "x"}), ())
    assert key is not None
    assert key.processor is None

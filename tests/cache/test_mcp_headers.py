"""An app's MCP tokens in a run input are replaced by the placeholder, every other byte kept."""

from __future__ import annotations

import orjson
import pytest

from gateway.cache.export_format import decode_entry
from gateway.cache.mcp_headers import (
    PLACEHOLDER,
    input_without_header_values,
    stream_names_mcp_servers,
)
from gateway.storage.types import StoredInput

SERVER = b'{"type":"url","name":"docs","url":"https://mcp.example","headers":%s}'


def run_input(headers: bytes, spacing: bytes = b" ") -> bytes:
    return (
        b'{"processor":"lite",%s"input":"1.10 and 12345678901234567890",'
        b'%s"mcp_servers":[%s]}' % (spacing, spacing, SERVER % headers)
    )


def test_each_value_is_replaced_where_it_stands_and_every_other_byte_kept() -> None:
    raw = run_input(b'{"authorization":"Bearer tok-1","x-other":"tok-2"}', b"\n  ")
    expected = run_input(b'{"authorization":"<header value>","x-other":"<header value>"}', b"\n  ")
    assert input_without_header_values(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        run_input(b"{}"),
        run_input(b'{"authorization":"<header value>"}'),
        b'{"processor":"lite","input":"mcp_servers"}',
        b'{"processor":"lite","input":"q","mcp_servers":"not a list"}',
    ],
)
def test_an_input_with_no_header_value_is_kept_as_it_is(raw: bytes) -> None:
    assert input_without_header_values(raw) is raw


@pytest.mark.parametrize(
    "headers",
    [
        b'{"authorization":"Bearer tok\\/1"}',  # escaped otherwise than orjson writes it
        b'{"authorization":"\\u0042earer tok-1"}',
        b'{"authorization":12345}',  # not a string
        b'{"a":"tok","b":","}',  # "," also spans two tokens: replaced, the JSON breaks
    ],
)
def test_a_value_not_found_as_orjson_writes_it_is_scrubbed_by_writing_the_input_anew(
    headers: bytes,
) -> None:
    raw = run_input(headers)
    scrubbed = input_without_header_values(raw)
    data = orjson.loads(raw)
    data["mcp_servers"][0]["headers"] = dict.fromkeys(
        data["mcp_servers"][0]["headers"], PLACEHOLDER
    )
    assert orjson.loads(scrubbed) == data
    assert b"tok" not in scrubbed


def test_an_imported_input_is_stored_scrubbed() -> None:
    """An export written before the scrubbing began may hold tokens: they are never stored."""
    body = run_input(b'{"authorization":"Bearer tok-1"}')
    line = b'{"version":1,"run_id":"trun_1","stored_at":"2026-11-28T00:00:00Z","input":%s}' % body
    entry = decode_entry(line)
    assert isinstance(entry, StoredInput)
    assert entry.body == run_input(b'{"authorization":"<header value>"}')


def test_a_stream_that_names_mcp_servers_is_told_apart() -> None:
    assert stream_names_mcp_servers(b'data: {"input":{"mcp_servers":[]}}\n\n')
    assert not stream_names_mcp_servers(b'data: {"input":{"processor":"lite"}}\n\n')

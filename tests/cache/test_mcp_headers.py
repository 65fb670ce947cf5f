"""An app's MCP tokens in a run input are replaced by the placeholder, every other byte kept."""

from __future__ import annotations

from collections.abc import Callable

import orjson
import pytest

from gateway.cache.export_format import decode_entry
from gateway.cache.mcp_headers import (
    PLACEHOLDER,
    input_without_header_values,
    stream_names_mcp_servers,
)
from gateway.config import Settings
from gateway.storage.types import StoredInput
from tests.conftest import StartGateway, run_cli
from tests.storage_support import opened_storage

RUN = "trun_" + "4d" * 16
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


async def test_an_input_stored_before_the_scrubbing_leaves_the_gateway_scrubbed(
    start_gateway: StartGateway, make_settings: Callable[..., Settings]
) -> None:
    """A database written by an older gateway may hold tokens: the gateway answers, exports
    and prints such an input scrubbed (`cache purge` removes it from the file)."""
    settings = make_settings()
    raw = run_input(b'{"authorization":"Bearer tok-1"}')
    async with opened_storage(settings.storage) as storage:
        await storage.run_inputs.put(StoredInput(RUN, raw, "2026-11-01T00:00:00.000000Z"))
    gateway = await start_gateway(settings)
    scrubbed = run_input(b'{"authorization":"<header value>"}')
    answers = [await gateway.get(f"/v1/tasks/runs/{RUN}/input") for _ in "12"]
    assert [(a.status, a.body) for a in answers] == [(200, scrubbed)] * 2
    exported = await run_cli(gateway.config, "cache", "export")
    printed = await run_cli(gateway.config, "cache", "get", RUN)
    assert (exported.code, printed.code, printed.out) == (0, 0, scrubbed + b"\n")
    assert scrubbed in exported.out
    assert b"tok-1" not in exported.out

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
from gateway.storage.types import AnswerKind, StoredAnswer, StoredInput
from tests.conftest import StartGateway, run_cli
from tests.fake_upstream import FakeUpstream
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


async def test_an_input_relayed_unstored_is_scrubbed_too(
    start_gateway: StartGateway, make_settings: Callable[..., Settings], upstream: FakeUpstream
) -> None:
    """Over cache.max_body_bytes an input is relayed, not stored: still never with a token."""
    raw = run_input(b'{"authorization":"Bearer tok-1"}')
    upstream.add(RUN, raw)
    gateway = await start_gateway(make_settings(cache={"max_body_bytes": len(raw) - 1}))
    answers = [await gateway.get(f"/v1/tasks/runs/{RUN}/input") for _ in "12"]
    scrubbed = run_input(b'{"authorization":"<header value>"}')
    assert [(a.status, a.body) for a in answers] == [(200, scrubbed)] * 2
    assert upstream.count(RUN) == 2  # not stored


async def test_a_stream_stored_by_an_older_gateway_naming_mcp_servers_is_never_served(
    start_gateway: StartGateway, make_settings: Callable[..., Settings], upstream: FakeUpstream
) -> None:
    """An older gateway may have stored a finished run's events with the run's input in them:
    such a stream is asked of upstream anew, and never exported."""
    settings = make_settings()
    stream = b'event: task_run.state\ndata: {"input":{"mcp_servers":[{"headers":{"a":"tok"}}]}}\n\n'
    async with opened_storage(settings.storage) as storage:
        old = StoredAnswer(AnswerKind.EVENTS, RUN, "", stream, "2026-11-01T00:00:00.000000Z")
        await storage.final_answers.put(old)
        await storage.run_inputs.put(StoredInput(RUN, run_input(b"{}"), old.stored_at))
    gateway = await start_gateway(settings)
    reply = await gateway.get(f"/v1/tasks/runs/{RUN}/events")
    assert (reply.status, reply.body != stream) == (404, True)  # asked of upstream: unknown there
    assert upstream.requests[-1].raw_path == f"/v1/tasks/runs/{RUN}/events"
    exported = await run_cli(gateway.config, "cache", "export")
    assert exported.code == 0
    assert [orjson.loads(line)["kind"] for line in exported.out.splitlines()] == ["input"]

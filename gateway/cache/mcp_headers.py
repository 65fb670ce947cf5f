"""MCP header values: an app's own tokens for its MCP servers, never kept. Pure, no I/O.

A create's `mcp_servers[].headers` may hold an app's bearer tokens, and Parallel returns them
in the run's input (PARALLEL_API.md). The gateway keeps none of them: a create's match key
hashes a placeholder in their place (match_key.py); a run input is answered, stored and
exported with each value replaced by the placeholder; and an event stream that names
`mcp_servers` (a task_run.state event may carry the run's input) is relayed, never stored.
"""

from __future__ import annotations

import orjson

from ..storage.types import AnswerKind, StoredAnswer

# What a header value of an MCP server becomes. One placeholder for every value, so a rotated
# token changes neither a create's match nor a stored input.
PLACEHOLDER = "<header value>"
_PLACEHOLDER_JSON = orjson.dumps(PLACEHOLDER)
MCP_SERVERS = b'"mcp_servers"'


def scrub_mcp_headers(body: dict[str, object]) -> dict[str, object]:
    """`body` with every `mcp_servers[].headers` value replaced by PLACEHOLDER (names kept)."""
    servers = body.get("mcp_servers")
    if not isinstance(servers, list):
        return body
    scrubbed = [
        {**server, "headers": dict.fromkeys(headers, PLACEHOLDER)}
        if (headers := _headers(server)) is not None
        else server
        for server in servers
    ]
    return {**body, "mcp_servers": scrubbed}


def header_values(body: dict[str, object]) -> list[object]:
    """Every `mcp_servers[].headers` value of a run input that is not the placeholder."""
    servers = body.get("mcp_servers")
    if not isinstance(servers, list):
        return []
    return [
        value
        for server in servers
        if (headers := _headers(server)) is not None
        for value in headers.values()
        if value != PLACEHOLDER
    ]


def _headers(server: object) -> dict[str, object] | None:
    """An `mcp_servers` entry's headers, if it is an object that has them."""
    if isinstance(server, dict) and isinstance(headers := server.get("headers"), dict):
        return headers
    return None


def input_without_header_values(raw: bytes) -> bytes:
    """`raw`, a run input (a JSON object) as upstream wrote it, with each MCP header value
    replaced by the placeholder; `raw` itself where it holds none (or is no JSON object).

    Each value's JSON text is replaced where it stands, so every other byte stays as upstream
    wrote it; where that does not give exactly the scrubbed input (a value escaped otherwise,
    or text that also spans two tokens), the input is written anew from the scrubbed object."""
    if MCP_SERVERS not in raw:
        return raw
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:  # not an input at all: nothing of it is served as one
        return raw
    if not isinstance(body, dict):
        return raw
    values = header_values(body)
    if not values:
        return raw
    scrubbed = scrub_mcp_headers(body)
    replaced = raw
    for value in values:
        if isinstance(value, str):
            replaced = replaced.replace(orjson.dumps(value), _PLACEHOLDER_JSON)
    try:
        if orjson.loads(replaced) == scrubbed:
            return replaced
    except orjson.JSONDecodeError:
        pass
    return orjson.dumps(scrubbed)


def kept_stream_holds_tokens(answer: StoredAnswer) -> bool:
    """Whether a stored answer is an event stream naming `mcp_servers`, as an older gateway
    kept them: never served or exported."""
    return answer.kind is AnswerKind.EVENTS and stream_names_mcp_servers(answer.body)


def stream_names_mcp_servers(body: bytes) -> bool:
    """Whether an event stream names `mcp_servers`: a task_run.state event may carry the run's
    input, header values and all, so such a stream is relayed and never stored."""
    return MCP_SERVERS in body

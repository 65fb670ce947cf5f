"""A create's match key for record and replay: pure, no I/O.

The key is a SHA-256 of the create's body as canonical JSON (keys sorted, no insignificant
whitespace; numbers as orjson reads and writes them, so `1.0` and `1.00` are one number, `1`
and `1.0` two), every `mcp_servers[].headers` value replaced by a placeholder, plus the
normalised parallel-beta set. Beside it, each field's own hash, so that a miss can name the
fields that differ from a recording without the body ever being stored.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import orjson

from .final_policy import beta_set
from .mcp_headers import scrub_mcp_headers

BETA_FIELD = "parallel-beta"
# One level into task_spec: its output schema and input schema are arguments of their own.
NESTED = "task_spec"
KEY_VERSION = b"create-match-v1\n"
FIELD_HASH_CHARS = 16  # 64 bits: enough to tell two fields apart, little to store


@dataclass(frozen=True, slots=True)
class MatchKey:
    """A create's match hash, and each field's hash (path -> hex), values never kept."""

    hash: str
    fields: Mapping[str, str]
    processor: str | None  # as sent, when it is a plain name (a miss names it)
    beta: str  # the normalised parallel-beta set, which a replayed run's answers are under


def match_key(body: bytes, beta_headers: Iterable[str]) -> MatchKey | None:
    """The match key of a create's `body` and its parallel-beta headers; None for a body
    that is not a JSON object (upstream refuses it; nothing to match)."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(data, dict):
        return None
    scrubbed = scrub_mcp_headers(data)
    beta = beta_set(beta_headers)
    whole = hashlib.sha256(KEY_VERSION + canonical(scrubbed) + b"\n" + beta.encode())
    fields = {path: _field_hash(value) for path, value in _fields(scrubbed)}
    if beta:
        fields[BETA_FIELD] = _field_hash(beta)
    processor = data.get("processor")
    return MatchKey(whole.hexdigest(), fields, processor if _plain(processor) else None, beta)


def canonical(value: object) -> bytes:
    """JSON with keys sorted and no insignificant whitespace."""
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


def differing_fields(asked: Mapping[str, str], recorded: Mapping[str, str]) -> list[str]:
    """The fields present in only one of two creates, or in both with other values; sorted."""
    return sorted(
        path for path in asked.keys() | recorded.keys() if asked.get(path) != recorded.get(path)
    )


def _fields(body: dict[str, object]) -> Iterable[tuple[str, object]]:
    for name, value in body.items():
        if name == NESTED and isinstance(value, dict) and value:
            for inner, inner_value in value.items():
                yield f"{NESTED}.{inner}", inner_value
        else:
            yield name, value


def _field_hash(value: object) -> str:
    return hashlib.sha256(canonical(value)).hexdigest()[:FIELD_HASH_CHARS]


def _plain(processor: object) -> bool:
    """A processor name as Parallel spells them (lite, core-fast, ...), safe to repeat."""
    return (
        isinstance(processor, str)
        and 0 < len(processor) <= 64
        and all(c.isascii() and (c.isalnum() or c in "-_.") for c in processor)
    )

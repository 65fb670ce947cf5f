"""The cache export format: JSON Lines, one cached entry per line, versioned. Pure code, no I/O.

Version 2, one object per line, its `kind` saying what it holds:
    {"version": 2, "kind": "input", "run_id": "trun_...", "stored_at": "2026-...Z",
     "input": {"processor": "core", "input": ...}}
    {"version": 2, "kind": "result", "run_id": "trun_...", "stored_at": "2026-...Z",
     "beta": "events-sse-2025-07-24", "body": "eyJydW4iOnsi..."}
`result`, `run` and `events` lines carry a final answer's body in base64, so every byte of it
(a stream's line breaks included) comes back; `beta` is the normalised parallel-beta set it was
asked with. A `recording` line is a recorded create (cache/match_key.py): its app, match hash
and field hashes, and the run it made (`stored_at` is when it was recorded); never its body:
    {"version": 2, "kind": "recording", "run_id": "trun_...", "stored_at": "2026-...Z",
     "app": "billing", "match_hash": "9f86d0...", "fields": {"input": "2c26b46b68ffc68f"}}
Version 1 lines are run inputs: `{"version": 1, "run_id", "stored_at", "input"}`.
A reader dispatches on `version`, then `kind`, so later gateways keep reading older files.
An `input` member is stored as its raw text in the line, never re-encoded: re-encoding would
turn 123456789012345678901234567890 into 1.2345678901234568e+29, 1.10 into 1.1, and
"caf\\u00e9" into "café".

KINDS is the one place a kind of entry is defined: how its records are written in a line, read
back and checked, and which store lists and keeps them. A new kind is one more entry.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

import orjson

from ..storage.protocols import Storage
from ..storage.types import AnswerKind, Recording, StoredAnswer, StoredInput
from ..timestamps import rfc3339
from .final_policy import answer_storability, beta_set
from .mcp_headers import input_without_header_values, kept_stream_holds_tokens
from .policy import Storability, is_task_run_input, is_valid_run_id

FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)
V1_KIND = "input"  # what every version 1 line holds

Record = StoredInput | StoredAnswer | Recording
R = TypeVar("R", StoredInput, StoredAnswer, Recording)
HASH = re.compile(r"[0-9a-f]{64}")
FIELD_HASH = re.compile(r"[0-9a-f]{16}")


class EntryError(ValueError):
    """A line that is not a valid export entry; the message says why."""


@dataclass(frozen=True, slots=True)
class Line:
    """An export line whose envelope (version, kind, run_id, stored_at) has been checked."""

    kind: str
    run_id: str
    stored_at: str  # normalised
    data: dict[str, Any]  # the whole line, parsed
    text: str  # the whole line, as written


@dataclass(frozen=True, slots=True)
class ExportKind(Generic[R]):
    """One kind of cached entry: its lines' `kind` values, and how its records travel."""

    names: tuple[str, ...]
    record: type[R]
    name_of: Callable[[R], str]  # the `kind` a record's line is written under
    stored_at: Callable[[R], str]  # when it was stored (a recording: recorded)
    members: Callable[[R], dict[str, Any]]  # a line's members beyond the envelope
    read: Callable[[Line], R]  # the record a checked line holds; EntryError if none
    check: Callable[[R, int], None]  # EntryError unless stored as the gateway would store it
    # Every record, or those of the runs named; a recording only of the app given, if one is.
    scan: Callable[[Storage, Sequence[str], str | None], AsyncIterator[R]]
    put_many: Callable[[Storage, list[R]], Awaitable[int]]  # one transaction; how many new
    count: Callable[[Storage], Awaitable[int]]  # how many records the store holds


def encode_entry(record: Record) -> bytes:
    """One export line, newline included."""
    kind = kind_of(record)
    envelope = {"version": FORMAT_VERSION, "kind": kind.name_of(record), "run_id": record.run_id}
    return orjson.dumps(
        {**envelope, "stored_at": kind.stored_at(record), **kind.members(record)},
        option=orjson.OPT_APPEND_NEWLINE,
    )


def decode_entry(line: bytes | str) -> Record:
    """Parse and check one export line; raise EntryError saying what is wrong."""
    try:
        data = orjson.loads(line)
    except orjson.JSONDecodeError as e:
        raise EntryError(f"not JSON ({e.msg})") from None
    if not isinstance(data, dict):
        raise EntryError("not a JSON object")
    version = data.get("version")
    if type(version) is not int or version not in READABLE_VERSIONS:
        readable = ", ".join(map(str, READABLE_VERSIONS))
        raise EntryError(f"unsupported version {version!r}; this gateway reads versions {readable}")
    name = V1_KIND if version == 1 else data.get("kind")
    if not isinstance(name, str) or name not in KIND_NAMES:
        known = ", ".join(KIND_NAMES)
        raise EntryError(f"kind {name!r} is not one this gateway reads ({known})")
    run_id = data.get("run_id")
    if not isinstance(run_id, str) or not is_valid_run_id(run_id):
        raise EntryError(f"run_id {run_id!r} is not 1 to 128 of A-Z, a-z, 0-9, '_', '-'")
    stored_at = normalise_timestamp(data.get("stored_at"))
    text = line if isinstance(line, str) else line.decode()
    record: Record = KIND_NAMES[name].read(Line(name, run_id, stored_at, data, text))
    return record


def check_entry(record: Record, max_body_bytes: int) -> None:
    """Raise EntryError unless the gateway would have stored `record` itself."""
    kind_of(record).check(record, max_body_bytes)


def kind_of(record: Record) -> ExportKind[Any]:
    return next(kind for kind in KINDS if isinstance(record, kind.record))


# --- run inputs ----------------------------------------------------------------------------


def _input_members(entry: StoredInput) -> dict[str, Any]:
    # JSON strings cannot hold raw newlines, so in a valid body they are only whitespace between
    # tokens: dropping them keeps the value identical and the line a line.
    body = input_without_header_values(entry.body)  # one stored before they were scrubbed
    return {"input": orjson.Fragment(body.replace(b"\n", b"").replace(b"\r", b""))}


def _read_input(line: Line) -> StoredInput:
    if not is_task_run_input(line.data.get("input")):
        raise EntryError("input is not a task run input (an object with processor and input)")
    try:
        body = raw_member(line.text, "input")
    except RecursionError:  # Python's scanner nests less deeply than orjson's
        raise EntryError("input is nested too deeply") from None
    # An export made before MCP header values were scrubbed may hold them: never stored.
    return StoredInput(line.run_id, input_without_header_values(body.encode()), line.stored_at)


def _check_input(entry: StoredInput, max_body_bytes: int) -> None:
    if len(entry.body) > max_body_bytes:  # the gateway would not store it either
        raise EntryError(f"input is {len(entry.body)} bytes, over {max_body_bytes}")


async def _count_inputs(storage: Storage) -> int:
    return (await storage.run_inputs.stats()).entries


# --- final answers (results, finished runs, their event streams) ---------------------------


def _answer_members(answer: StoredAnswer) -> dict[str, Any]:
    return {"beta": answer.beta, "body": base64.b64encode(answer.body).decode()}


def _read_answer(line: Line) -> StoredAnswer:
    beta, body = line.data.get("beta"), line.data.get("body")
    if not isinstance(beta, str):
        raise EntryError(f"beta {beta!r} is not a string (the parallel-beta set, '' for none)")
    if not isinstance(body, str):
        raise EntryError("body is not a string (the answer in base64)")
    try:
        raw = base64.b64decode(body, validate=True)
    except binascii.Error:
        raise EntryError("body is not base64") from None
    return StoredAnswer(AnswerKind(line.kind), line.run_id, beta_set([beta]), raw, line.stored_at)


def _check_answer(answer: StoredAnswer, max_body_bytes: int) -> None:
    decision = answer_storability(answer.kind, answer.body, max_body_bytes)
    if decision is Storability.TOO_LARGE:
        raise EntryError(f"{answer.kind.value} is {len(answer.body)} bytes, over {max_body_bytes}")
    if decision is Storability.MCP_HEADERS:
        raise EntryError("events name mcp_servers, which may carry MCP tokens: never stored")
    if decision is not Storability.STORE:  # a run still active, a stream cut short, not JSON
        raise EntryError(f"{answer.kind.value} is not a final answer ({decision.value})")


async def _scan_answers(storage: Storage, run_ids: Sequence[str]) -> AsyncIterator[StoredAnswer]:
    async for answer in storage.final_answers.scan(run_ids):
        if not kept_stream_holds_tokens(answer):
            yield answer


async def _count_answers(storage: Storage) -> int:
    return sum(stats.entries for stats in (await storage.final_answers.stats()).values())


# --- create recordings --------------------------------------------------------------------


def _recording_members(recording: Recording) -> dict[str, Any]:
    return {"app": recording.app, "match_hash": recording.match_hash, "fields": recording.fields}


def _read_recording(line: Line) -> Recording:
    app, match_hash, fields = (line.data.get(name) for name in ("app", "match_hash", "fields"))
    if not isinstance(app, str) or not 0 < len(app) <= 64 or not app.isprintable():
        raise EntryError(f"app {app!r} is not an app name (1 to 64 printable characters)")
    if not isinstance(match_hash, str) or not HASH.fullmatch(match_hash):
        raise EntryError("match_hash is not a SHA-256 in lower-case hex")
    if not isinstance(fields, dict) or not all(
        isinstance(v, str) and FIELD_HASH.fullmatch(v) for v in fields.values()
    ):
        raise EntryError("fields is not an object of field names to 16-hex-digit hashes")
    return Recording(app, match_hash, fields, line.run_id, line.stored_at)


def _check_recording(recording: Recording, max_body_bytes: int) -> None:
    """Nothing more to check: a recording holds hashes, and _read_recording checked them."""


async def _scan_recordings(
    storage: Storage, run_ids: Sequence[str], app: str | None
) -> AsyncIterator[Recording]:
    wanted = set(run_ids)
    for recording in reversed(await storage.recordings.list_recordings(app)):  # oldest first
        if not wanted or recording.run_id in wanted:
            yield recording


async def _put_recordings(storage: Storage, recordings: list[Recording]) -> int:
    return sum([await storage.recordings.put(recording) for recording in recordings])


async def _count_recordings(storage: Storage) -> int:
    return len(await storage.recordings.list_recordings())


KINDS: tuple[ExportKind[Any], ...] = (
    ExportKind(
        (V1_KIND,),
        StoredInput,
        lambda _: V1_KIND,
        lambda entry: entry.stored_at,
        _input_members,
        _read_input,
        _check_input,
        lambda storage, run_ids, _: storage.run_inputs.scan(run_ids),
        lambda storage, records: storage.run_inputs.put_many(records),
        _count_inputs,
    ),
    ExportKind(
        tuple(kind.value for kind in AnswerKind),
        StoredAnswer,
        lambda answer: answer.kind.value,
        lambda answer: answer.stored_at,
        _answer_members,
        _read_answer,
        _check_answer,
        lambda storage, run_ids, _: _scan_answers(storage, run_ids),
        lambda storage, records: storage.final_answers.put_many(records),
        _count_answers,
    ),
    ExportKind(
        ("recording",),
        Recording,
        lambda _: "recording",
        lambda recording: recording.recorded_at,
        _recording_members,
        _read_recording,
        _check_recording,
        _scan_recordings,
        _put_recordings,
        _count_recordings,
    ),
)
KIND_NAMES = {name: kind for kind in KINDS for name in kind.names}


_DECODER = json.JSONDecoder()
# A member's name and its colon, with JSON's whitespace (RFC 8259 section 2) around them.
_NAME = re.compile(r'[ \t\n\r]*"([^"\\]*(?:\\.[^"\\]*)*)"[ \t\n\r]*(:)[ \t\n\r]*', re.DOTALL)
_AFTER_VALUE = re.compile(r"[ \t\n\r]*([,}])")


def raw_member(document: str, name: str) -> str:
    """The raw text of the value of the top-level member `name` of `document` (a JSON object
    orjson has already parsed, so valid JSON that has that member), with the whitespace around
    it: in an export line, that is the stored body's own.

    A name given twice is refused: orjson keeps the last one, and storing another's text would
    store something other than what was checked.
    """
    found: str | None = None
    at = document.index("{") + 1
    while True:
        member = _NAME.match(document, at)
        assert member is not None, "not a JSON object with members"
        key = member.group(1)
        if "\\" in key:  # a name spelt with escapes
            key = json.loads(f'"{key}"')
        _, end = _DECODER.raw_decode(document, member.end())
        after = _AFTER_VALUE.match(document, end)
        assert after is not None, "not a JSON object"
        if key == name:
            if found is not None:
                raise EntryError(f"{name} appears more than once")
            found = document[member.end(2) : after.start(1)]
        if after.group(1) == "}":
            break
        at = after.end()
    assert found is not None, f"{name} is not a member of the object"
    return found


def normalise_timestamp(value: object) -> str:
    """An RFC 3339 timestamp with a zone, as UTC in the gateway's own spelling."""
    if not isinstance(value, str):
        raise EntryError(f"stored_at {value!r} is not an RFC 3339 timestamp")
    try:
        # RFC 3339 5.6 allows a lower-case z, which Python 3.11's parser does not.
        when = datetime.fromisoformat(value[:-1] + "Z" if value.endswith("z") else value)
    except ValueError:
        raise EntryError(f"stored_at {value!r} is not an RFC 3339 timestamp") from None
    if when.tzinfo is None:
        raise EntryError(f"stored_at {value!r} has no time zone")
    try:
        return rfc3339(when)
    except OverflowError:  # a year 1 or 9999 time that leaves the calendar once in UTC
        raise EntryError(f"stored_at {value!r} is out of range") from None

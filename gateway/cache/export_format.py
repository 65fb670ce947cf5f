"""The cache export format: JSON Lines, one run per line, versioned. Pure code, no I/O.

Version 1, one object per line:
    {"version": 1, "run_id": "trun_...", "stored_at": "2026-11-22T07:00:00.000000Z",
     "input": {"processor": "core", "input": ...}}
A reader dispatches on `version`, so later gateways keep reading version 1 files.
The `input` member is stored as its raw text in the line, never re-encoded: re-encoding would
turn 123456789012345678901234567890 into 1.2345678901234568e+29, 1.10 into 1.1, and
"caf\\u00e9" into "café".
"""

from __future__ import annotations

import json
import re
from datetime import datetime

import orjson

from ..storage.types import StoredInput
from ..timestamps import rfc3339
from .policy import is_task_run_input, is_valid_run_id

FORMAT_VERSION = 1
READABLE_VERSIONS = (1,)


class EntryError(ValueError):
    """A line that is not a valid export entry; the message says why."""


def encode_entry(entry: StoredInput) -> bytes:
    """One export line, newline included. The stored body goes in as it is, not re-encoded."""
    # JSON strings cannot hold raw newlines, so in a valid body they are only whitespace between
    # tokens: dropping them keeps the value identical and the line a line.
    body = entry.body.replace(b"\n", b"").replace(b"\r", b"")
    return orjson.dumps(
        {
            "version": FORMAT_VERSION,
            "run_id": entry.run_id,
            "stored_at": entry.stored_at,
            "input": orjson.Fragment(body),
        },
        option=orjson.OPT_APPEND_NEWLINE,
    )


def decode_entry(line: bytes | str) -> StoredInput:
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
        raise EntryError(f"unsupported version {version!r}; this gateway reads version {readable}")
    run_id = data.get("run_id")
    if not isinstance(run_id, str) or not is_valid_run_id(run_id):
        raise EntryError(f"run_id {run_id!r} is not 1 to 128 of A-Z, a-z, 0-9, '_', '-'")
    stored_at = normalise_timestamp(data.get("stored_at"))
    task_input = data.get("input")
    if not is_task_run_input(task_input):
        raise EntryError("input is not a task run input (an object with processor and input)")
    text = line if isinstance(line, str) else line.decode()
    try:
        body = raw_member(text, "input")
    except RecursionError:  # Python's scanner nests less deeply than orjson's
        raise EntryError("input is nested too deeply") from None
    return StoredInput(run_id, body.encode(), stored_at)


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

"""The cache export format: JSON Lines, one run per line, versioned. Pure code, no I/O.

Version 1, one object per line:
    {"version": 1, "run_id": "trun_...", "stored_at": "2026-11-22T07:00:00.000000Z",
     "input": {"processor": "core", "input": ...}}
A reader dispatches on `version`, so later gateways keep reading version 1 files.
"""

from __future__ import annotations

from datetime import datetime

import orjson

from .policy import is_task_run_input, is_valid_run_id
from .store import StoredInput, rfc3339

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
    return StoredInput(run_id, orjson.dumps(task_input), stored_at)


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

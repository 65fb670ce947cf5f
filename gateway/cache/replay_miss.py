"""Why a create had no recording to replay: what was looked for, and the nearest recordings
with the fields that differ. Pure; names fields and run ids, never a field's value."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..storage.types import Recording
from .match_key import MatchKey, differing_fields

NEAREST = 3  # recordings named in a miss
NEAREST_POOL = 500  # the most recent recordings compared (of those the create could match)


@dataclass(frozen=True, slots=True)
class ReplayMiss:
    message: str
    detail: dict[str, Any]


def explain_miss(
    key: MatchKey | None,
    unfinished: Sequence[Recording],
    pool: Sequence[Recording],
    why_not_upstream: str,
) -> ReplayMiss:
    """A miss's message and detail. `unfinished`: recordings of this very create whose run is
    not finished in the cache; `pool`: the recordings it could match, to find the nearest in;
    None for a body that is not a JSON object (nothing could match it)."""
    if key is None:
        message = "No recording of this create to replay: its body is not a JSON object"
        return ReplayMiss(f"{message}, and {why_not_upstream}.", {"looked_for": None})
    fields = sorted(key.fields)
    processor = f"processor {key.processor!r}" if key.processor else "no plain processor name"
    parts = [f"No finished recording of this create to replay: looked for {processor} with "
             f"fields {', '.join(fields) or '(none)'}."]  # fmt: skip
    if unfinished:
        runs = ", ".join(_named(r) for r in unfinished)
        parts.append(
            f"This create was recorded ({runs}), but that run never finished in the gateway's "
            "cache (neither its final run object nor its result is stored)."
        )
    nearest = _nearest(key, [r for r in pool if r.match_hash != key.hash])
    for recording, differ in nearest:
        parts.append(f"Nearest recording ({_named(recording)}) differs in: {', '.join(differ)}.")
    if not unfinished and not nearest:
        parts.append("There is no other recording to compare it with.")
    parts.append(f"Not sent upstream: {why_not_upstream}.")
    detail = {
        "looked_for": {"processor": key.processor, "fields": fields},
        "unfinished": [_entry(r) for r in unfinished],
        "nearest": [{**_entry(r), "differs_in": differ} for r, differ in nearest],
    }
    return ReplayMiss(" ".join(parts), detail)


def _nearest(key: MatchKey, pool: Sequence[Recording]) -> list[tuple[Recording, list[str]]]:
    """The recordings with the most fields in common (then the newest), and how they differ."""
    ranked = sorted(
        pool,
        key=lambda r: (
            sum(key.fields.get(path) == value for path, value in r.fields.items()),
            r.recorded_at,
        ),
        reverse=True,
    )
    return [(r, differing_fields(key.fields, r.fields)) for r in ranked[:NEAREST]]


def _named(recording: Recording) -> str:
    return f"{recording.run_id}, {recording.recorded_at[:10]}"


def _entry(recording: Recording) -> dict[str, str]:
    return {"run_id": recording.run_id, "recorded_at": recording.recorded_at}

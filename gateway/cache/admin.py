"""Cache operations behind `parallel-gateway cache ...`: export, import, warm."""

from __future__ import annotations

import asyncio
import itertools
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from tqdm import tqdm

from ..errors import GatewayError, parse_error_body
from ..storage.protocols import Storage
from .export_format import KINDS, EntryError, Record, check_entry, decode_entry, encode_entry
from .policy import is_valid_run_id
from .run_inputs import RunInputCache

# Entries per import transaction (one per kind in a batch): SQLite's write lock is held for
# milliseconds at a time, so a running gateway's writes get it between two batches.
IMPORT_BATCH = 1000


def progress(total: int | None, unit: str, desc: str) -> tqdm[Any]:
    """A progress bar on stderr when it is a terminal; silent otherwise (stdout stays data)."""
    return tqdm(total=total, unit=unit, desc=desc, file=sys.stderr, disable=not sys.stderr.isatty())


@dataclass
class ExportReport:
    written: int = 0  # runs
    missing: list[str] = field(default_factory=list)


async def export_entries(
    storage: Storage,
    out: BinaryIO,
    run_ids: Sequence[str],
    bar: tqdm[Any],
    app: str | None = None,
) -> ExportReport:
    """Write every cached entry of every kind (or those of the runs named) to `out` as export
    lines, kind after kind. With `app`: that app's recordings, and every entry of the runs they
    name (what its tests replay), and no other app's recordings."""
    report = ExportReport()
    wanted = list(dict.fromkeys(run_ids))
    if app is not None:
        recorded = [r.run_id for r in reversed(await storage.recordings.list_recordings(app))]
        recorded = list(dict.fromkeys(recorded))
        wanted = [run_id for run_id in recorded if run_id in wanted] if wanted else recorded
        if not wanted:
            return report  # nothing recorded: an empty export, never everything
    written: set[str] = set()
    for kind in KINDS:
        async for entry in kind.scan(storage, wanted, app):
            out.write(encode_entry(entry))
            written.add(entry.run_id)
            bar.update()
    report.written = len(written)
    report.missing = [run_id for run_id in run_ids if run_id not in written]
    return report


@dataclass
class ImportReport:
    valid: int = 0
    imported: int = 0
    rejected: list[tuple[int, str]] = field(default_factory=list)

    @property
    def already_present(self) -> int:
        return self.valid - self.imported


async def import_entries(
    storage: Storage, lines: Iterable[bytes], bar: tqdm[Any], max_body_bytes: int
) -> ImportReport:
    """Import export lines, IMPORT_BATCH entries at a time, in the order given: each kind's
    entries of a batch in one transaction.

    An entry already stored is left as it is, so an import that was stopped part-way is
    finished by running it again: the batches it committed are skipped.
    """
    report = ImportReport()
    entries = _valid_entries(lines, report, bar, max_body_bytes)
    while batch := list(itertools.islice(entries, IMPORT_BATCH)):
        for kind in KINDS:
            if mine := [entry for entry in batch if isinstance(entry, kind.record)]:
                report.imported += await kind.put_many(storage, mine)
    return report


def _valid_entries(
    lines: Iterable[bytes], report: ImportReport, bar: tqdm[Any], max_body_bytes: int
) -> Iterator[Record]:
    for number, line in enumerate(lines, start=1):
        bar.update()
        if not line.strip():
            continue
        try:
            entry = decode_entry(line)
            check_entry(entry, max_body_bytes)
        except EntryError as e:
            report.rejected.append((number, str(e)))
            continue
        report.valid += 1
        yield entry


@dataclass(frozen=True, slots=True)
class WarmResult:
    run_id: str
    outcome: str  # "stored", "cached" or "failed"
    status: int | None = None
    ref_id: str | None = None
    message: str | None = None


async def warm(
    cache: RunInputCache, run_ids: Sequence[str], concurrency: int, bar: tqdm[Any]
) -> list[WarmResult]:
    """Fetch runs through the normal upstream path, at most `concurrency` at a time."""
    wanted = list(dict.fromkeys(run_ids))
    queue: asyncio.Queue[str] = asyncio.Queue()
    for run_id in wanted:
        queue.put_nowait(run_id)
    results: dict[str, WarmResult] = {}

    async def worker() -> None:
        while not queue.empty():
            run_id = queue.get_nowait()
            results[run_id] = await warm_one(cache, run_id)
            bar.update()

    await asyncio.gather(*(worker() for _ in range(min(concurrency, len(wanted)))))
    return [results[run_id] for run_id in wanted]


async def warm_one(cache: RunInputCache, run_id: str) -> WarmResult:
    if not is_valid_run_id(run_id):
        return WarmResult(run_id, "failed", message="not a valid run id; nothing was fetched")
    try:
        lookup = await cache.lookup(run_id)
    except GatewayError as e:
        return WarmResult(run_id, "failed", e.status, e.ref_id, e.message)
    if not lookup.fetched:
        return WarmResult(run_id, "cached", 200)
    if lookup.stored:
        return WarmResult(run_id, "stored", 200)
    if lookup.status == 200:
        return WarmResult(run_id, "failed", 200, message="upstream's 200 could not be stored")
    ref_id, message = parse_error_body(lookup.body)
    return WarmResult(run_id, "failed", lookup.status, ref_id, message)

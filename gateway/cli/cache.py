"""`parallel-gateway cache ...`: arguments in, reports out; the work is in cache/admin.py."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import errno
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import orjson

from ..app import build_cache
from ..cache.admin import (
    ExportReport,
    ImportReport,
    WarmResult,
    export_entries,
    import_entries,
    progress,
    warm,
)
from ..cache.export_format import KINDS
from ..cache.mcp_headers import input_without_header_values
from ..cache.policy import is_valid_run_id
from ..config import Settings
from ..ops.log import configure_logging
from ..storage.health import StorageHealth
from ..storage.open import run_with_storage
from ..storage.protocols import Storage
from ..storage.types import AnswerKind
from ..upstream.client import UpstreamClient, create_session
from ..upstream.team_key import team_key_from

DEFAULT_WARM_CONCURRENCY = 8
# A file that is not an export at all is rejected line by line: the first few say why.
SHOWN_REJECTIONS = 10


def add_cache_commands(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    common: argparse.ArgumentParser,
) -> None:
    cache = commands.add_parser("cache", parents=[common], help="inspect and move cached runs")
    sub = cache.add_subparsers(dest="cache_command", required=True, metavar="COMMAND")

    export = sub.add_parser("export", parents=[common], help="write cached runs as JSON Lines")
    export.add_argument("--output", "-o", metavar="FILE", help="write here (default: stdout)")
    export.add_argument(
        "--app",
        metavar="NAME",
        help="only this app's create recordings, and the runs they name (for its tests' CI)",
    )
    export.add_argument("run_ids", nargs="*", metavar="RUN_ID", help="only these runs")
    export.set_defaults(run=cmd_export)

    imp = sub.add_parser("import", parents=[common], help="load an export file")
    imp.add_argument("file", metavar="FILE", help="an export file, or - for stdin")
    imp.set_defaults(run=cmd_import)

    warm_cmd = sub.add_parser("warm", parents=[common], help="fetch runs into the cache")
    warm_cmd.add_argument("run_ids", nargs="*", metavar="RUN_ID")
    warm_cmd.add_argument("--from", dest="from_file", metavar="FILE", help="one id per line")
    warm_cmd.add_argument(
        "--concurrency",
        type=int,
        default=DEFAULT_WARM_CONCURRENCY,
        help=f"fetches at once (default {DEFAULT_WARM_CONCURRENCY})",
    )
    warm_cmd.set_defaults(run=cmd_warm)

    stats = sub.add_parser(
        "stats", parents=[common], help="entries, bytes, oldest and newest, of each kind"
    )
    stats.set_defaults(run=cmd_stats)

    get = sub.add_parser("get", parents=[common], help="print one run's stored input")
    get.add_argument("run_id", metavar="RUN_ID")
    get.set_defaults(run=cmd_get)

    purge = sub.add_parser("purge", parents=[common], help="remove runs from the cache")
    purge.add_argument("run_ids", nargs="*", metavar="RUN_ID")
    purge.add_argument("--all", action="store_true", help="empty the whole cache")
    purge.add_argument("--yes", action="store_true", help="confirm --all")
    purge.set_defaults(run=cmd_purge)


class _IncompleteExportError(Exception):
    """A named run is not cached: a FILE export is dropped, whole."""


def cmd_export(args: argparse.Namespace, settings: Settings) -> int:
    if (bad := _invalid(args.run_ids)) is not None:
        return bad

    async def run(storage: Storage) -> ExportReport:
        everything = not args.run_ids and args.app is None
        total = sum([await kind.count(storage) for kind in KINDS]) if everything else None
        with _output(args.output) as out, progress(total, "entry", "export") as bar:
            report = await export_entries(storage, out, args.run_ids, bar, args.app)
            if report.missing and args.output is not None:
                raise _IncompleteExportError(report)
        return report

    try:
        report = run_with_storage(settings.storage, run)
    except _IncompleteExportError as incomplete:
        [report] = incomplete.args
        _fail(f"Not in the cache: {' '.join(report.missing)}; {args.output} was not written.")
        return 1
    _say(f"Exported {_count(report.written, 'run')}.")
    if report.missing:
        _fail(f"Not in the cache: {' '.join(report.missing)}")
        return 1
    return 0


def cmd_import(args: argparse.Namespace, settings: Settings) -> int:
    async def run(storage: Storage) -> ImportReport:
        with _input(args.file) as lines, progress(None, "line", "import") as bar:
            return await import_entries(storage, lines, bar, settings.cache.max_body_bytes)

    report = run_with_storage(settings.storage, run)
    for number, reason in report.rejected[:SHOWN_REJECTIONS]:
        _say(f"{args.file}:{number}: rejected: {reason}")
    if len(report.rejected) > SHOWN_REJECTIONS:
        hidden = len(report.rejected) - SHOWN_REJECTIONS
        _say(f"{args.file}: {_count(hidden, 'more line')} rejected, not shown.")
    _say(
        f"Imported {_count(report.imported, 'new entry')}; {report.already_present} already "
        f"cached; {_count(len(report.rejected), 'line')} rejected."
    )
    return 1 if report.rejected else 0


def cmd_warm(args: argparse.Namespace, settings: Settings) -> int:
    run_ids = list(args.run_ids)
    if args.from_file:
        with _input(args.from_file) as lines:
            listed = (line.decode().strip() for line in lines)
            run_ids += [line for line in listed if line and not line.startswith("#")]
    if not run_ids:
        _fail("Nothing to warm: give run ids, or --from FILE.")
        return 2
    if args.concurrency < 1:
        _fail(f"--concurrency must be at least 1, not {args.concurrency}.")
        return 2
    # Upstream errors are reported below with their ref_ids; only worse is logged.
    configure_logging("error")
    team_key = team_key_from(settings, os.environ)

    async def run(storage: Storage) -> list[WarmResult]:
        async with create_session(settings.upstream) as session:
            upstream = UpstreamClient(settings.upstream, team_key, session)
            health = StorageHealth(settings.storage.database)
            cache = build_cache(settings, storage, upstream, health)
            try:
                with progress(len(run_ids), "run", "warm") as bar:
                    return await warm(cache, run_ids, args.concurrency, bar)
            finally:
                upstream.close()

    results = run_with_storage(settings.storage, run)
    for result in results:
        print(orjson.dumps(dataclasses.asdict(result)).decode())
        if result.outcome == "failed":
            reason = f"{result.status} {result.message}" if result.status else result.message
            ref = f" (ref_id {result.ref_id})" if result.ref_id else ""
            _say(f"{result.run_id}: failed: {reason}{ref}")
    failed = sum(result.outcome == "failed" for result in results)
    stored = sum(result.outcome == "stored" for result in results)
    cached = len(results) - stored - failed
    _say(
        f"Warmed {_count(len(results), 'run')}: {stored} stored, {cached} already cached, "
        f"{failed} failed."
    )
    return 1 if failed else 0


def cmd_stats(args: argparse.Namespace, settings: Settings) -> int:
    async def run(storage: Storage) -> dict[str, Any]:
        # Run inputs at the top, as before final answers were cached; each kind of those beside.
        finals = await storage.final_answers.stats()
        return {
            **dataclasses.asdict(await storage.run_inputs.stats()),
            "results": dataclasses.asdict(finals[AnswerKind.RESULT]),
            "final_runs": dataclasses.asdict(finals[AnswerKind.RUN]),
            "events": dataclasses.asdict(finals[AnswerKind.EVENTS]),
            "recordings": len(await storage.recordings.list_recordings()),
        }

    print(orjson.dumps(run_with_storage(settings.storage, run)).decode())
    return 0


def cmd_get(args: argparse.Namespace, settings: Settings) -> int:
    if (bad := _invalid([args.run_id])) is not None:
        return bad
    entry = run_with_storage(settings.storage, lambda s: s.run_inputs.get(args.run_id))
    if entry is None:
        _fail(f"Run {args.run_id} is not in the cache.")
        return 1
    sys.stdout.buffer.write(input_without_header_values(entry.body) + b"\n")
    return 0


def cmd_purge(args: argparse.Namespace, settings: Settings) -> int:
    if args.all and args.run_ids:
        _fail("Give run ids or --all, not both.")
        return 2
    if args.all and not args.yes:
        _fail("Refusing to empty the whole cache without --yes.")
        return 2
    if not args.all and not args.run_ids:
        _fail("Nothing to purge: give run ids, or --all --yes.")
        return 2
    if (bad := _invalid(args.run_ids)) is not None:
        return bad
    targets = None if args.all else list(dict.fromkeys(args.run_ids))

    async def run(storage: Storage) -> tuple[int, list[str]]:
        missing = [run_id for run_id in targets or () if not await _cached(storage, run_id)]
        return await storage.purges.purge(targets), missing

    removed, missing = run_with_storage(settings.storage, run)
    _say(f"Purged {_count(removed, 'run')}.")
    if missing:  # as `cache get` and `cache export` say of a run that is not there
        _fail(f"Not in the cache: {' '.join(missing)}")
        return 1
    return 0


async def _cached(storage: Storage, run_id: str) -> bool:
    """Whether the cache holds anything of the run: its input, a final answer, a recording."""
    if await storage.run_inputs.get(run_id) is not None:
        return True
    return await storage.final_answers.has_run(run_id) or await storage.recordings.has_run(run_id)


def _count(n: int, noun: str) -> str:
    if n == 1:
        return f"1 {noun}"
    return f"{n} {noun[:-1]}ies" if noun.endswith("y") else f"{n} {noun}s"


def _say(message: str) -> None:
    print(message, file=sys.stderr)


def _fail(message: str) -> None:
    """An error, said as every other command says one."""
    print(f"parallel-gateway: {message}", file=sys.stderr)


def _invalid(run_ids: list[str]) -> int | None:
    """Exit status 2, having said so, when any run id could never be cached; else None."""
    bad = [run_id for run_id in run_ids if not is_valid_run_id(run_id)]
    if not bad:
        return None
    _fail(
        f"Not a run id: {' '.join(map(repr, bad))}; a run id is 1 to 128 of A-Z, a-z, 0-9, _ and -."
    )
    return 2


@contextlib.contextmanager
def _output(path: str | None) -> Iterator[BinaryIO]:
    """stdout, or a file that appears whole or not at all (written aside, then renamed)."""
    if path is None:
        yield sys.stdout.buffer
        sys.stdout.buffer.flush()
        return
    target = Path(path)
    if not target.parent.is_dir():
        raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), path)
    fd, temp = tempfile.mkstemp(dir=target.parent or ".", prefix=f".{target.name}.")
    try:
        with os.fdopen(fd, "wb") as out:
            yield out
        os.replace(temp, target)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def _input(path: str) -> Iterator[BinaryIO]:
    if path == "-":
        yield sys.stdin.buffer
        return
    with open(path, "rb") as f:
        yield f

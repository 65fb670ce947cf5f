"""`parallel-gateway cache ...`: arguments in, reports out; the work is in cache_admin."""

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
from typing import BinaryIO

import orjson

from .app import build_cache
from .cache_admin import ImportReport, WarmResult, export_entries, import_entries, progress, warm
from .config import Settings
from .db import Database, run_with_database
from .log import configure_logging
from .storage_health import StorageHealth
from .store import SQLiteRunInputStore
from .team_key import team_key_from
from .upstream import UpstreamClient, create_session

DEFAULT_WARM_CONCURRENCY = 8


def add_cache_commands(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    common: argparse.ArgumentParser,
) -> None:
    cache = commands.add_parser("cache", parents=[common], help="inspect and move cached runs")
    sub = cache.add_subparsers(dest="cache_command", required=True, metavar="COMMAND")

    export = sub.add_parser("export", parents=[common], help="write cached runs as JSON Lines")
    export.add_argument("--output", "-o", metavar="FILE", help="write here (default: stdout)")
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

    stats = sub.add_parser("stats", parents=[common], help="entries, bytes, oldest and newest")
    stats.set_defaults(run=cmd_stats)

    get = sub.add_parser("get", parents=[common], help="print one run's stored input")
    get.add_argument("run_id", metavar="RUN_ID")
    get.set_defaults(run=cmd_get)

    purge = sub.add_parser("purge", parents=[common], help="remove runs from the cache")
    purge.add_argument("run_ids", nargs="*", metavar="RUN_ID")
    purge.add_argument("--all", action="store_true", help="empty the whole cache")
    purge.add_argument("--yes", action="store_true", help="confirm --all")
    purge.set_defaults(run=cmd_purge)


def cmd_export(args: argparse.Namespace, settings: Settings) -> int:
    async def run(db: Database) -> tuple[int, list[str]]:
        store = SQLiteRunInputStore(db)
        total = len(set(args.run_ids)) or (await store.stats()).entries
        with _output(args.output) as out, progress(total, "run", "export") as bar:
            report = await export_entries(store, out, args.run_ids, bar)
        return report.written, report.missing

    written, missing = run_with_database(settings.storage, run)
    _say(f"Exported {_count(written, 'run')}.")
    if missing:
        _say(f"Not in the cache: {' '.join(missing)}")
        return 1
    return 0


def cmd_import(args: argparse.Namespace, settings: Settings) -> int:
    async def run(db: Database) -> ImportReport:
        store = SQLiteRunInputStore(db)
        with _input(args.file) as lines, progress(None, "line", "import") as bar:
            return await import_entries(store, lines, bar, settings.cache.max_body_bytes)

    report = run_with_database(settings.storage, run)
    for number, reason in report.rejected:
        _say(f"{args.file}:{number}: rejected: {reason}")
    _say(
        f"Imported {_count(report.imported, 'new run')}; {report.already_present} already "
        f"cached; {_count(len(report.rejected), 'line')} rejected."
    )
    return 1 if report.rejected else 0


def cmd_warm(args: argparse.Namespace, settings: Settings) -> int:
    run_ids = list(args.run_ids)
    if args.from_file:
        with _input(args.from_file) as lines:
            run_ids += [line.decode().strip() for line in lines if line.strip()]
    if not run_ids:
        _say("Nothing to warm: give run ids, or --from FILE.")
        return 2
    if args.concurrency < 1:
        _say(f"--concurrency must be at least 1, not {args.concurrency}.")
        return 2
    # Upstream errors are reported below with their ref_ids; only worse is logged.
    configure_logging("error")
    team_key = team_key_from(settings, os.environ)

    async def run(db: Database) -> list[WarmResult]:
        async with create_session(settings.upstream) as session:
            upstream = UpstreamClient(settings.upstream, team_key, session)
            health = StorageHealth(settings.storage.database)
            cache = build_cache(settings, db, upstream, health)
            with progress(len(run_ids), "run", "warm") as bar:
                return await warm(cache, run_ids, args.concurrency, bar)

    results = run_with_database(settings.storage, run)
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
    stats = run_with_database(settings.storage, lambda db: SQLiteRunInputStore(db).stats())
    print(orjson.dumps(dataclasses.asdict(stats)).decode())
    return 0


def cmd_get(args: argparse.Namespace, settings: Settings) -> int:
    entry = run_with_database(settings.storage, lambda db: SQLiteRunInputStore(db).get(args.run_id))
    if entry is None:
        _say(f"Run {args.run_id} is not in the cache.")
        return 1
    sys.stdout.buffer.write(entry.body + b"\n")
    return 0


def cmd_purge(args: argparse.Namespace, settings: Settings) -> int:
    if args.all and args.run_ids:
        _say("Give run ids or --all, not both.")
        return 2
    if args.all and not args.yes:
        _say("Refusing to empty the whole cache without --yes.")
        return 2
    if not args.all and not args.run_ids:
        _say("Nothing to purge: give run ids, or --all --yes.")
        return 2
    targets = None if args.all else list(dict.fromkeys(args.run_ids))
    removed = run_with_database(settings.storage, lambda db: SQLiteRunInputStore(db).purge(targets))
    _say(f"Purged {_count(removed, 'run')}.")
    return 0


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'s' * (n != 1)}"


def _say(message: str) -> None:
    print(message, file=sys.stderr)


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

"""The parallel-gateway command: parse arguments and call into the package."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import argcomplete
import structlog
from argcomplete.shell_integration import shellcode

from gateway import __version__

from ..app import create_app
from ..config import CONFIG_ENV, ConfigError, Settings, load_settings, replace_server
from ..http.fdlimit import raise_open_files_limit
from ..http.server import ListenError, run_server
from ..http.workers import is_worker, supervise
from ..keys.app_keys import AppKeyError
from ..keys.ownership import GrantError
from ..ops.log import configure_logging
from ..ops.reload import ConfigSource
from ..storage.location import is_postgres_url, password_of, redacted
from ..storage.open import run_with_storage
from ..storage.protocols import Storage
from ..storage.types import StorageError, StoreError
from ..upstream.team_key import team_key_from
from .cache import add_cache_commands
from .keys import add_key_commands
from .runs import add_run_commands
from .status import add_status_command
from .storage import add_storage_commands
from .usage import add_usage_command

SHELLS = ("bash", "zsh", "fish")
# These make the database where storage.database says, as a gateway's start does.
DATABASE_UNCHECKED = frozenset({"serve", "migrate", "completion", "status", "storage"})
WRITING_COMMANDS = frozenset(
    {
        ("keys", "create"),
        ("keys", "update"),
        ("keys", "rotate"),
        ("keys", "revoke"),
        ("keys", "delete"),
        ("runs", "grant"),
        ("runs", "revoke"),
        ("cache", "import"),
        ("cache", "warm"),
        ("cache", "purge"),
    }
)
NO_CONFIG = " (no config file: this user's default database)"


def build_parser() -> argparse.ArgumentParser:
    config_help = "TOML config file (default: $PARALLEL_GATEWAY_CONFIG, else built-in defaults)"
    # --config is taken before or after the command; SUPPRESS keeps a later absence from
    # overwriting an earlier value.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", metavar="PATH", default=argparse.SUPPRESS, help=config_help)
    # Every command but serve and migrate works on an existing database, unless told otherwise.
    opens = argparse.ArgumentParser(add_help=False, parents=[common])
    opens.add_argument(
        "--create",
        action="store_true",
        default=argparse.SUPPRESS,
        help="make a new database if there is none where storage.database says",
    )
    parser: argparse.ArgumentParser = CommandParser(
        prog="parallel-gateway",
        description="A caching, key-isolating gateway for Parallel's Task API.",
    )
    parser.add_argument("--config", metavar="PATH", help=config_help)
    parser.add_argument("--version", action="version", version=f"parallel-gateway {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", parents=[common], help="run the gateway")
    serve.add_argument("--host", help="address to listen on (overrides server.host)")
    serve.add_argument("--port", type=int, help="port to listen on (overrides server.port)")
    serve.add_argument(
        "--offline",
        action="store_true",
        help="never call upstream: serve cached runs, replay recorded creates (every key "
        "replay-only), answer misses 503 (upstream.offline)",
    )
    serve.add_argument(
        "--workers",
        type=int,
        default=1,
        help="processes sharing the port with SO_REUSEPORT (default 1)",
    )
    serve.set_defaults(run=cmd_serve)

    migrate = commands.add_parser("migrate", parents=[common], help="apply database migrations")
    migrate.set_defaults(run=cmd_migrate)

    add_key_commands(commands, opens)
    add_cache_commands(commands, opens)
    add_status_command(commands, common)
    add_run_commands(commands, opens)
    add_storage_commands(commands, common)
    add_usage_command(commands, opens)

    completion = commands.add_parser(
        "completion", help="print a shell's tab-completion script for this command"
    )
    completion.add_argument("shell", choices=SHELLS, help="eval its output in that shell")
    completion.set_defaults(run=cmd_completion)
    return parser


class CommandParser(argparse.ArgumentParser):
    """A parser that can be found from the arguments it parsed (`usage`), so that an argument
    its command does not know is refused with its usage, not the top-level one: argparse hands
    a subcommand's unknown arguments up to the top-level parser. add_subparsers makes each
    command's parser of its parent's class, so every command's is one of these."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.set_defaults(usage=self)


def parse_args(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> argparse.Namespace:
    """The arguments; a usage error is reported by the deepest command named, with its usage."""
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        usage: argparse.ArgumentParser = args.usage
        usage.error(f"unrecognized arguments: {' '.join(unknown)}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    # Under the shell's completion hook, this answers with the completions and exits.
    argcomplete.autocomplete(parser)
    args = parse_args(parser, argv)
    try:
        settings = load_settings(args.config)
        if args.command not in DATABASE_UNCHECKED:
            _check_database(args, settings)
        code: int = args.run(args, settings)
    except ConfigError as e:
        print(f"parallel-gateway: {e}", file=sys.stderr)
        return 2
    except (AppKeyError, GrantError, StorageError, ListenError) as e:
        print(f"parallel-gateway: {e}", file=sys.stderr)
        return 1
    except StoreError as e:
        # A read-only file, a full disk, a corrupt page: one line naming the file and the cause.
        database = redacted(settings.storage.database)
        print(f"parallel-gateway: Cannot use database '{database}': {e}.", file=sys.stderr)
        return 1
    except OSError as e:
        where = f": {e.filename}" if e.filename is not None else ""
        print(f"parallel-gateway: {e.strerror}{where}", file=sys.stderr)
        return 1
    return code


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    settings = replace_server(settings, args.host, args.port, args.offline)
    if args.workers < 1 or (args.workers > 1 and settings.server.port == 0):
        print(
            f"parallel-gateway: --workers {args.workers} needs a number from 1 up, and more "
            "than 1 needs a fixed port (not 0).",
            file=sys.stderr,
        )
        return 2
    team_key = team_key_from(settings, os.environ)
    secrets = [s for s in (team_key, password_of(settings.storage.database)) if s]
    configure_logging(settings.log.level, secrets=secrets)
    log = structlog.get_logger("gateway")
    log.info(
        "gateway.starting",
        host=settings.server.host,
        port=settings.server.port,
        database=redacted(settings.storage.database),
        upstream=settings.upstream.base_url,
        mode="offline" if settings.upstream.offline else "online",
        workers=args.workers,
    )
    if args.workers < 1:
        print(
            f"parallel-gateway: --workers must be at least 1, not {args.workers}.", file=sys.stderr
        )
        return 2
    before, now, hard = raise_open_files_limit()
    log.info("gateway.open_files_limit", soft=now, raised_from=before, hard=hard)
    if args.workers > 1 and not is_worker():
        run_with_storage(settings.storage, _applied)  # migrate once, before the workers start
        return supervise(_worker_argv(args, settings), args.workers)
    source = ConfigSource(args.config, args.host, args.port, args.offline)  # read on SIGHUP
    run_server(create_app(settings, source=source), settings.server, reuse_port=is_worker() or None)
    return 0


def _worker_argv(args: argparse.Namespace, settings: Settings) -> list[str]:
    """`serve` as each worker runs it: the resolved address, the same config and mode."""
    argv = ["serve", "--host", settings.server.host, "--port", str(settings.server.port)]
    if args.config:
        argv += ["--config", args.config]
    if settings.upstream.offline:
        argv.append("--offline")
    return argv


def cmd_migrate(args: argparse.Namespace, settings: Settings) -> int:
    applied = run_with_storage(settings.storage, _applied)
    for name in applied:
        print(f"Applied {name}")
    print(f"Database {redacted(settings.storage.database)} is at the latest schema.")
    return 0


def _check_database(args: argparse.Namespace, settings: Settings) -> None:
    """Refuse to make a new database by accident (a command run from the wrong directory, a
    mistyped path), and say which database a command that writes is writing. A PostgreSQL
    database is made by its operator: opening it is enough (its schema is migrated then)."""
    if is_postgres_url(settings.storage.database):
        if _writes(args):
            print(f"Database: {redacted(settings.storage.database)}", file=sys.stderr)
        return
    database = Path(os.path.abspath(Path(settings.storage.database).expanduser()))
    where = "" if args.config or os.environ.get(CONFIG_ENV) else NO_CONFIG
    if not database.exists() and not getattr(args, "create", False):
        raise StorageError(
            f"No database at {database}{where}. Start `serve` or run `migrate` with the "
            "gateway's config first, give --config, or pass --create to make a new one there."
        )
    if _writes(args):
        print(f"Database: {database}{where}", file=sys.stderr)


def _writes(args: argparse.Namespace) -> bool:
    sub = getattr(args, f"{args.command}_command", None)
    return (args.command, sub) in WRITING_COMMANDS


def cmd_completion(args: argparse.Namespace, settings: Settings) -> int:
    print(shellcode(["parallel-gateway"], shell=args.shell), end="")
    return 0


async def _applied(storage: Storage) -> list[str]:
    """Opening the store applies pending migrations; report which."""
    return storage.applied_migrations

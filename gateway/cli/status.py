"""`parallel-gateway status`: one screen on a running gateway, from its /status endpoint."""

from __future__ import annotations

import argparse
import sys
import urllib.error
import urllib.request
from typing import Any

import orjson

from ..config import Settings
from .tables import table_lines

TIMEOUT = 5.0


def add_status_command(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    common: argparse.ArgumentParser,
) -> None:
    status = commands.add_parser(
        "status", parents=[common], help="what a running gateway is doing: apps, upstream, errors"
    )
    status.add_argument(
        "--url", help="the gateway's base URL (default: from server.host and metrics.port/port)"
    )
    status.add_argument("--json", action="store_true", help="print /status's JSON as it is")
    status.set_defaults(run=cmd_status)


def status_url(settings: Settings) -> str:
    """Where the config says /status is served: the metrics port if it has one. Pure."""
    host = settings.server.host
    if host in ("0.0.0.0", "::", ""):  # noqa: S104 (listening everywhere: ask this machine)
        host = "127.0.0.1"
    port = settings.metrics.port or settings.server.port
    return f"http://{host}:{port}"


def cmd_status(args: argparse.Namespace, settings: Settings) -> int:
    url = (args.url or status_url(settings)).rstrip("/") + "/status"
    request = urllib.request.Request(url)  # noqa: S310 (the operator's own URL)
    if settings.metrics.token:
        request.add_header("Authorization", f"Bearer {settings.metrics.token}")
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT) as resp:  # noqa: S310
            body = resp.read()
    except urllib.error.HTTPError as e:
        print(f"parallel-gateway: {url} answered {e.code} {e.reason}.", file=sys.stderr)
        return 1
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        print(f"parallel-gateway: no gateway answered at {url} ({reason}).", file=sys.stderr)
        return 1
    if args.json:
        sys.stdout.buffer.write(body + b"\n")
        return 0
    print(render(orjson.loads(body)), end="")
    return 0


def render(status: dict[str, Any]) -> str:
    """The one screen. Pure."""
    ready = status["ready"]
    upstream = ready.get("upstream", {})
    contact = upstream.get("last_contact", "never")
    if contact != "never":
        contact += f" at {upstream['at']} ({upstream['detail']})"
    lines = [
        f"Gateway: {ready['status']}; database {ready.get('database')}; "
        f"last upstream contact {contact}",
        "",
        f"Requests since {status['since']} ({status['window_seconds']} s):",
    ]
    rows = [("APP", "REQUESTS", "HITS", "MISSES", "ERRORS")]
    rows += [
        (app, *(str(counts[kind]) for kind in ("requests", "hits", "misses", "errors")))
        for app, counts in status["apps"].items()
    ]
    lines += table_lines(rows)
    if len(rows) == 1:
        lines.append("(none)")
    lines += ["", "Last upstream errors:"]
    for note in status["upstream_errors"]:
        run = f" {note['run_id']}" if note["run_id"] else ""
        lines.append(
            f"{note['at']}  {note['status']}  {note['route']}{run}  ref_id {note['ref_id']}  "
            f"{note['message'] or ''}".rstrip()
        )
    if not status["upstream_errors"]:
        lines.append("(none)")
    return "\n".join(lines) + "\n"

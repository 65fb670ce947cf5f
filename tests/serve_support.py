"""Start the real `python -m gateway serve` on a free port and wait until it answers."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO

import aiohttp

from tests.conftest import unused_port


async def launch_serve(
    config: Path | None,
    *args: str,
    env: Mapping[str, str],
    stdout: int | IO[bytes] | None = None,
    stderr: int | IO[bytes] = asyncio.subprocess.PIPE,
    probe: str = "/healthz",
    host: str = "127.0.0.1",
    preexec_fn: Callable[[], object] | None = None,
    cwd: Path | None = None,
) -> tuple[asyncio.subprocess.Process, str]:
    """`serve --config --host --port *args` (no --config if `config` is None), in `cwd`, until
    `probe` answers 200; env replaces PARALLEL_*; `preexec_fn` runs in the child before it
    starts (to lower a resource limit).

    A gateway that does not answer 200 within 10 s is killed, and the AssertionError says how
    it ended (and what it wrote to stderr, when that is a pipe).
    """
    base = {k: v for k, v in os.environ.items() if not k.startswith("PARALLEL")}
    port = unused_port()
    given = ["--config", str(config)] if config is not None else []
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway", "serve", *given,
        "--host", host, "--port", str(port), *args,
        cwd=cwd,
        env={**base, **env},
        stdin=asyncio.subprocess.DEVNULL,
        stdout=stdout,
        stderr=stderr,
        preexec_fn=preexec_fn,
    )  # fmt: skip
    url = f"http://{host}:{port}"
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    async with aiohttp.ClientSession() as session:
        while proc.returncode is None and loop.time() < deadline:
            try:
                async with session.get(url + probe) as resp:
                    if resp.status == 200:
                        return proc, url
            except aiohttp.ClientConnectionError:
                pass
            await asyncio.sleep(0.05)
    if proc.returncode is None:
        proc.kill()
        ended = "gave no 200 in 10 s (killed)"
    else:
        ended = f"exited with code {proc.returncode}"
    _, err = await proc.communicate()
    tail = err.decode(errors="replace")[-2000:] if err else ""
    raise AssertionError(f"serve {ended} before {probe} answered 200\n{tail}")

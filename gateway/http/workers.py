"""`serve --workers N`: a supervisor running N gateway processes on one port (SO_REUSEPORT)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from types import FrameType

import structlog

from ..ops.metrics import MULTIPROC_ENV

# Set in each worker's environment: bind with SO_REUSEPORT beside the other workers.
WORKER_ENV = "PARALLEL_GATEWAY_WORKER"
log = structlog.get_logger("gateway.workers")


def is_worker() -> bool:
    return os.environ.get(WORKER_ENV) == "1"


def supervise(worker_argv: Sequence[str], workers: int) -> int:
    """Start `workers` processes running `python -m gateway <worker_argv>`; pass SIGTERM,
    SIGINT and SIGHUP on to them, and wait. If one dies on its own, stop the rest and fail, so
    whatever supervises the gateway (systemd, Kubernetes) restarts it whole."""
    metrics_dir = tempfile.mkdtemp(prefix="parallel-gateway-metrics-")
    env = {**os.environ, MULTIPROC_ENV: metrics_dir, WORKER_ENV: "1"}
    # Ignored, and so inherited ignored, until each worker's own handler takes it: a SIGHUP
    # passed on while a worker still starts would otherwise end it (the default action).
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    children = [
        subprocess.Popen([sys.executable, "-m", "gateway", *worker_argv], env=env)
        for _ in range(workers)
    ]
    log.info("workers.started", pids=[child.pid for child in children])
    stopping = False

    def pass_on(signum: int, _: FrameType | None) -> None:
        nonlocal stopping
        stopping = stopping or signum != signal.SIGHUP  # SIGHUP: re-read the config, key file
        for child in children:
            if child.poll() is None:
                child.send_signal(signum)

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, pass_on)
    try:
        while any(child.poll() is None for child in children):
            if not stopping and any(child.poll() is not None for child in children):
                log.error("workers.lost", exited=[c.pid for c in children if c.poll() is not None])
                pass_on(signal.SIGTERM, None)
            time.sleep(0.1)
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)
    codes = [child.returncode for child in children]
    log.info("workers.stopped", codes=codes)
    return 0 if stopping and all(code == 0 for code in codes) else 1

"""x."""

from __future__ import annotations

import http.client
import importlib

import aiohttp

EXAMPLE: dict[str, object] = importlib.import_module("bench.cache_io").EXAMPLE


def f() -> int:
    c = http.client.HTTPConnection("127.0.0.1", 1)
    return c.port + "x" + len(EXAMPLE) + len(aiohttp.__version__)

"""What the gateway reads of an upstream answer, whichever client brought it: aiohttp's
ClientResponse (long polls, streams) or upstream/wire.py's WireResponse (short calls)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Protocol

from multidict import CIMultiDictProxy


class Chunks(Protocol):
    def iter_any(self) -> AsyncIterator[bytes]: ...


class Answer(Protocol):
    @property
    def status(self) -> int: ...
    @property
    def headers(self) -> CIMultiDictProxy[str]: ...
    @property
    def content_length(self) -> int | None: ...
    @property
    def content(self) -> Chunks: ...
    async def read(self) -> bytes: ...
    def release(self) -> Any: ...
    def close(self) -> None: ...

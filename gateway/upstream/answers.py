"""What the gateway reads of an upstream answer, whichever client brought it: upstream/wire.py's
WireResponse (GET and POST with a body sent whole), or aiohttp's ClientResponse (a streamed
request body, other methods, and every call where the wire client is off)."""

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

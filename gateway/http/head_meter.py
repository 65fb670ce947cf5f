"""Where a request head ends, and how long its target is, from its bytes as they arrive. Pure.

The public-stack connection cannot see aiohttp's parser: this tells it when a head is whole (its
header timeout stops there), whether a line aiohttp found too long was the request line (414)
or a header field (431), and how many header fields came (431 past the limit).
"""

from __future__ import annotations

# Bytes of a request line kept to measure its target: a method and a version are far shorter.
SPARE = 64
# Fields that announce a body (RFC 9112 section 6.1 and 6.2): what follows the head is not a head.
BODY_FIELDS = (b"content-length", b"transfer-encoding")
NAME_BYTES = len(b"transfer-encoding:")


class HeadMeter:
    """Follows request heads, one after another."""

    __slots__ = (
        "_cap",
        "_ended",
        "_kept",
        "_last_cr",
        "_line_bytes",
        "_lines",
        "_name",
        "_request_line_bytes",
        "_started",
        "body",
        "fields",
    )

    def __init__(self, max_line_bytes: int) -> None:
        self._cap = max_line_bytes + SPARE
        self.reset()

    def reset(self) -> None:
        self._ended = False
        self._kept = bytearray()
        self._name = bytearray()
        self._last_cr = False
        self._line_bytes = 0
        self._lines = 0
        self._request_line_bytes = 0
        self._started = False
        self.body = False
        self.fields = 0

    @property
    def started(self) -> bool:
        return self._started

    @property
    def in_request_line(self) -> bool:
        return self._lines == 0

    def target_bytes(self) -> int:
        """The request target's length (at most, while the request line goes on)."""
        total = self._line_bytes if self._lines == 0 else self._request_line_bytes
        method, _, rest = bytes(self._kept).partition(b" ")
        if self._lines == 0 or total > len(self._kept):
            return max(0, total - len(method) - 1)
        target, space, _ = rest.rstrip(b"\r").rpartition(b" ")
        return len(target) if space else len(rest)

    def feed(self, data: bytes) -> int | None:
        """Read `data`; return where in it the head ended (just past its empty line), if it did.
        Past a head's end, `data` starts the next head (what is known of the last stays until)."""
        if self._ended:
            self.reset()
        pos = 0
        if not self._started:
            # RFC 9112 section 2.2: empty lines before a request line are ignored.
            pos = len(data) - len(data.lstrip(b"\r\n"))
            if pos == len(data):
                return None
            self._started = True
        while True:
            end = data.find(b"\n", pos)
            chunk = data[pos:] if end < 0 else data[pos:end]
            if self._lines == 0 and len(self._kept) < self._cap:
                self._kept += chunk[: self._cap - len(self._kept)]
            elif self._lines > 0 and len(self._name) < NAME_BYTES:
                self._name += chunk[: NAME_BYTES - len(self._name)]
            if chunk:
                self._line_bytes += len(chunk)
                self._last_cr = chunk.endswith(b"\r")
            if end < 0:
                return None
            pos = end + 1
            empty = self._line_bytes == 0 or (self._line_bytes == 1 and self._last_cr)
            if self._lines > 0 and empty:
                self._ended = True
                return pos
            if self._lines == 0:
                self._request_line_bytes = self._line_bytes
            else:
                self.fields += 1
                name = bytes(self._name).partition(b":")[0].strip().lower()
                self.body = self.body or name in BODY_FIELDS
                self._name.clear()
            self._lines += 1
            self._line_bytes = 0
            self._last_cr = False

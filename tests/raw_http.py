"""Raw HTTP/1.1 over a socket, for requests no client would send and answers read byte by byte."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from multidict import CIMultiDict


@dataclass
class RawReply:
    status: int
    headers: CIMultiDict[str]
    body: bytes
    closed: bool  # the server closed the connection after this answer


async def read_reply(reader: asyncio.StreamReader) -> RawReply:
    """One HTTP/1.x response, read by its Content-Length."""
    head = await reader.readuntil(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")[:-2]
    headers: CIMultiDict[str] = CIMultiDict()
    for line in lines:
        name, _, value = line.partition(":")
        headers.add(name.strip(), value.strip())
    body = await reader.readexactly(int(headers["Content-Length"]))
    closed = headers.get("Connection", "").lower() == "close"
    return RawReply(int(status_line.split()[1]), headers, body, closed)


async def connect(server_url: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    host, port = server_url.removeprefix("http://").rsplit(":", 1)
    return await asyncio.open_connection(host, int(port))


async def send_raw(server_url: str, data: bytes) -> RawReply:
    """Send bytes exactly as given (no client would send them), and read the one answer."""
    reader, writer = await connect(server_url)
    try:
        writer.write(data)
        await writer.drain()
        reply = await read_reply(reader)
        if reply.closed:
            assert await reader.read() == b""  # the server did close it
        return reply
    finally:
        writer.close()
        await writer.wait_closed()


def request(path: str, *headers: str) -> bytes:
    return ("\r\n".join([f"GET {path} HTTP/1.1", "Host: gw", *headers]) + "\r\n\r\n").encode()

"""Raw HTTP/1.1 exchanges with the gateway: bytes no HTTP client library would send."""

from __future__ import annotations

import asyncio
import contextlib
import struct
import zlib
from dataclasses import dataclass
from functools import cache
from typing import Any

import orjson

from tests.gateway.conftest import ADMIN_TOKEN, Cairn

MIB = 1024 * 1024
EXCHANGE_TIMEOUT_SECONDS = 60.0
JSON_HEADERS = {"Accept": "application/vnd.pulumi+9", "Content-Type": "application/json"}


@dataclass(frozen=True)
class RawResponse:
    status: int
    headers: dict[str, str]  # names lower-cased
    body: bytes

    def json(self) -> Any:
        return orjson.loads(self.body)


def request_bytes(
    method: str, path: str, headers: dict[str, str] | None = None, body: bytes = b""
) -> bytes:
    """A request closing its connection after the answer; header values as Latin-1 bytes."""
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", "Connection: close"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    if body:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


async def exchange(cairn: Cairn, raw: bytes, *, until_closed: bool = True) -> RawResponse:
    """Send `raw` on a new connection and read the answer; `until_closed`: until the server
    closes the connection, so it is done with the request (lingering over an unread body
    included) on return."""
    port = cairn.client.server.port
    assert port is not None
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(raw)
        with contextlib.suppress(ConnectionError):  # refused early: the answer is readable
            await writer.drain()
        read = reader.read() if until_closed else _read_answer(reader)
        data = await asyncio.wait_for(read, EXCHANGE_TIMEOUT_SECONDS)
    finally:
        writer.close()
    return parse_response(data)


async def _read_answer(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = parse_response(head).headers.get("content-length", "0")
    return head + await reader.readexactly(int(length))


def parse_response(data: bytes) -> RawResponse:
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers: dict[str, str] = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = headers.get("content-length")
    return RawResponse(
        int(status_line.split(" ")[1]), headers, body[: int(length)] if length else body
    )


@cache
def gzip_bomb(inflated_mib: int = 1024) -> bytes:
    """A valid gzip stream of `inflated_mib` MiB of zeros in about 1/1000 of that.

    Built from one flushed deflate segment repeated (each segment starts afresh, so the
    copies decode alike): compressing the zeros themselves would cost seconds.
    """
    compressor = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    segment = compressor.compress(bytes(MIB)) + compressor.flush(zlib.Z_FULL_FLUSH)
    zeros = bytes(MIB)
    crc = 0
    for _ in range(inflated_mib):
        crc = zlib.crc32(zeros, crc)
    header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"
    trailer = struct.pack("<II", crc, (inflated_mib * MIB) & 0xFFFFFFFF)
    return header + segment * inflated_mib + compressor.flush(zlib.Z_FINISH) + trailer


def bomb_request(method: str, path: str, *, is_authenticated: bool) -> bytes:
    """A request carrying `gzip_bomb()`, with the admin's token or none."""
    headers = {**JSON_HEADERS, "Content-Encoding": "gzip"}
    if is_authenticated:
        headers["Authorization"] = f"token {ADMIN_TOKEN}"
    return request_bytes(method, path, headers, gzip_bomb())

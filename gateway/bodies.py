"""Request bodies: the one place that reads them, inflating compressed ones under a hard bound.

The gateway's server never inflates (`create_app` turns aiohttp's automatic decompression
off), so a request that is refused before its body is read costs no more than draining the
compressed bytes. A body is read only here, after routing and authentication, and a gzip or
deflate body is inflated chunk by chunk as it arrives: inflation stops as soon as the output
passes `max_body_bytes`, so no body costs more CPU than its bound allows.
"""

from __future__ import annotations

import asyncio
import zlib
from urllib.parse import parse_qsl

from aiohttp import web
from multidict import MultiDict

from gateway.context import SETTINGS
from gateway.errors import ApiError, bad_request

BODY = web.RequestKey("body", bytes)

# zlib's `wbits` for each accepted coding: gzip wrapper, zlib wrapper (RFC 9110's "deflate").
_WBITS = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}
_IDENTITY = ("", "identity")
# Compressed bytes handed to the inflater at a time; each step's output is capped separately.
_READ_CHUNK_BYTES = 64 * 1024
_INFLATE_STEP_BYTES = 256 * 1024
TOO_LARGE = "Request Entity Too Large: the request body exceeds the size limit."
UNSUPPORTED_ENCODING = "Unsupported Media Type: Content-Encoding must be gzip, deflate or identity"
UNDECODABLE = "the request body could not be decoded (bad Content-Encoding)"


def too_large() -> ApiError:
    return ApiError(413, TOO_LARGE)


def content_coding(request: web.Request) -> str:
    """The body's single content coding, lower-cased ('' for none); 415 for any other."""
    coding = request.headers.get("Content-Encoding", "").strip().lower()
    if coding in _IDENTITY:
        return ""
    if coding not in _WBITS:
        raise ApiError(415, UNSUPPORTED_ENCODING)
    return coding


async def read_body(request: web.Request) -> bytes:
    """The request body, inflated: 413 past `max_body_bytes`, 415 for an unknown coding,
    400 when it does not decode. Read once; later calls return the same bytes."""
    if BODY in request:
        return request[BODY]
    if not request.body_exists:
        body = b""
    else:
        coding = content_coding(request)
        limit = request.app[SETTINGS].max_body_bytes
        length = request.content_length
        if length is not None and length > limit:
            raise too_large()
        body = await _inflate(request, coding, limit) if coding else await _read(request)
    request[BODY] = body
    return body


async def read_form(request: web.Request) -> MultiDict[str]:
    """An `application/x-www-form-urlencoded` body (the console's forms); empty otherwise."""
    if request.content_type != "application/x-www-form-urlencoded":
        return MultiDict()
    raw = await read_body(request)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise bad_request("the form is not UTF-8") from None
    return MultiDict(parse_qsl(text, keep_blank_values=True))


async def _read(request: web.Request) -> bytes:
    """An uncompressed body; aiohttp refuses it past `client_max_size` (= max_body_bytes)."""
    try:
        return await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise too_large() from None
    except web.HTTPException:
        raise
    except Exception:  # aiohttp's payload errors: a truncated or malformed chunked body
        raise bad_request(UNDECODABLE) from None


async def _inflate(request: web.Request, coding: str, limit: int) -> bytes:
    """Inflate the body as it streams in, never producing more than `limit` + 1 bytes."""
    wbits = _WBITS[coding]
    inflater = zlib.decompressobj(wbits=wbits)
    out = bytearray()
    received = 0
    try:
        while chunk := await request.content.read(_READ_CHUNK_BYTES):
            received += len(chunk)
            if received > limit:
                raise too_large()
            pending = chunk
            while pending:
                if inflater.eof:
                    # gzip allows several members in a row (Go's reader reads them all).
                    inflater = zlib.decompressobj(wbits=wbits)
                room = limit + 1 - len(out)  # at least 1: 0 would mean "no limit"
                out += inflater.decompress(pending, min(room, _INFLATE_STEP_BYTES))
                if len(out) > limit:
                    raise too_large()
                pending = inflater.unused_data if inflater.eof else inflater.unconsumed_tail
                if pending or received > _READ_CHUNK_BYTES:
                    # Let other requests run between steps of a large body (a small one,
                    # inflated in one step, goes on without a turn of the loop).
                    await asyncio.sleep(0)
    except zlib.error:
        raise bad_request(UNDECODABLE) from None
    except (ApiError, web.HTTPException):
        raise
    except Exception:  # aiohttp's payload errors: a truncated or malformed chunked body
        raise bad_request(UNDECODABLE) from None
    if not inflater.eof:
        raise bad_request(UNDECODABLE)
    return bytes(out)

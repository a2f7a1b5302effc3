"""Request-body parsing and JSON helpers shared by every handler."""

from __future__ import annotations

import base64
import binascii
import functools
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiohttp import web

# Handlers read bodies through here; gateway/bodies.py is the one place that reads them.
from gateway.bodies import read_body as read_body
from gateway.errors import ApiError, bad_request
from gateway.schemas import BodyChecker, Schema, unknown_member

# Integers travel in protobuf fields of these widths; a wider one is the client's mistake.
from gateway.schemas.constraints import INT32_BITS as INT32_BITS
from gateway.schemas.constraints import INT64_BITS as INT64_BITS

JSON_CONTENT_TYPE = "application/json"

# Member paths are cut short in error messages, so a hostile body cannot inflate them.
_SHOWN_MEMBER_LENGTH = 100


def fits(value: int, bits: int) -> bool:
    """Whether a signed integer field of `bits` bits holds the value."""
    bound: int = 1 << (bits - 1)
    return -bound <= value < bound


def json_response(payload: object, status: int = 200) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(payload), content_type=JSON_CONTENT_TYPE)


def no_content() -> web.Response:
    return web.Response(status=204)


def ok_without_body() -> web.Response:
    """200 with an empty body: where the REST documentation says 200 OK and describes none."""
    return web.Response(status=200)


def checked_body(
    handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
    checker: BodyChecker,
    closed: Schema | None = None,
) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """`handler` behind the check that every member of a JSON body has its documented type
    and enum and, with a `closed` schema, that the body names only members it names: a typo
    is a 400 naming the member before anything is read or written."""

    @functools.wraps(handler)
    async def checked(request: web.Request) -> web.StreamResponse:
        raw = await read_body(request)  # aiohttp keeps it: the handler reads it again
        try:
            body = orjson.loads(raw) if raw.strip() else None
        except orjson.JSONDecodeError:
            body = None  # the handler answers malformed JSON as it always does
        member = None if closed is None else unknown_member(body, closed)
        if member is not None:
            if len(member) > _SHOWN_MEMBER_LENGTH:
                member = member[:_SHOWN_MEMBER_LENGTH] + "…"
            raise bad_request(f"unknown member '{member}' in the request body")
        if body is not None:
            problem = checker.problem(body)
            if problem is not None:
                raise bad_request(problem)
        return await handler(request)

    return checked


def parse_json(raw: bytes) -> Any:
    if not raw.strip():
        raise bad_request("a JSON request body is required")
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as error:
        raise bad_request(f"the request body is not valid JSON ({error.msg})") from None


def parse_object(raw: bytes) -> dict[str, Any]:
    body = parse_json(raw)
    if not isinstance(body, dict):
        raise bad_request("the request body must be a JSON object")
    return body


async def read_json_object(request: web.Request) -> dict[str, Any]:
    return parse_object(await read_body(request))


async def read_optional_json_object(request: web.Request) -> dict[str, Any]:
    """An object body that may also be absent or empty (treated as `{}`); blanks alone are
    not JSON (400)."""
    raw = await read_body(request)
    if not raw:
        return {}
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as error:
        raise bad_request(f"the request body is not valid JSON ({error.msg})") from None
    if body is None:
        return {}
    if not isinstance(body, dict):
        raise bad_request("the request body must be a JSON object")
    return body


def optional_string(body: dict[str, Any], name: str) -> str:
    """A string field; absent or null (the SDK sends explicit nulls) reads as ''."""
    value = body.get(name)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise bad_request(f"'{name}' must be a string")
    return value


def required_string(body: dict[str, Any], name: str) -> str:
    value = optional_string(body, name)
    if not value:
        raise bad_request(f"'{name}' is required")
    return value


def optional_object(value: Any, name: str) -> dict[str, Any]:
    """A nested JSON object; absent or null reads as empty."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise bad_request(f"'{name}' must be an object")
    return value


def optional_int(
    body: dict[str, Any], name: str, default: int = 0, *, bits: int = INT64_BITS
) -> int:
    """An integer field; absent or null reads as the default. JSON does not tell 3 from 3.0,
    and JSON Schema calls both integers."""
    value = body.get(name)
    if value is None:
        return default
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool):
        raise bad_request(f"'{name}' must be an integer")
    if not fits(value, bits):
        raise bad_request(f"'{name}' is out of range")
    return value


def string_map(value: Any, name: str) -> dict[str, str]:
    """A JSON object of strings (tags); null reads as empty."""
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise bad_request(f"'{name}' must be an object of string values")
    return dict(value)


def string_list(value: Any, name: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise bad_request(f"'{name}' must be an array of strings")
    return list(value)


def b64decode(value: Any, name: str) -> bytes:
    """Standard padded base64 (Go's []byte encoding) to bytes; anything else is a 400."""
    if not isinstance(value, str):
        raise bad_request(f"'{name}' must be a base64 string")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise bad_request(f"'{name}' is not valid base64") from None


def b64encode(value: bytes) -> str:
    return base64.b64encode(value).decode("ascii")


def bool_query(request: web.Request, name: str) -> bool:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return False
    lowered = raw.lower()
    if lowered in ("true", "1"):
        return True
    if lowered in ("false", "0"):
        return False
    raise ApiError(400, f"Bad Request: invalid query parameter '{name}': expected true or false")


def int_query(request: web.Request, name: str, default: int, *, bits: int = INT32_BITS) -> int:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    return parse_int(raw, f"query parameter '{name}'", bits)


def parse_int(raw: str, what: str, bits: int) -> int:
    """A decimal integer from a query or path; malformed or too wide is a 400."""
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(400, f"Bad Request: invalid {what}: expected an integer") from None
    if not fits(value, bits):
        raise ApiError(400, f"Bad Request: invalid {what}: out of range")
    return value


def optional_bool(body: dict[str, Any], name: str, default: bool = False) -> bool:
    """A boolean field; absent or null reads as the default."""
    value = body.get(name)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise bad_request(f"'{name}' must be true or false")
    return value


def required_bool(body: dict[str, Any], name: str) -> bool:
    if body.get(name) is None:
        raise bad_request(f"'{name}' is required")
    return optional_bool(body, name)


def path_version(request: web.Request) -> int:
    """The `{version}` of a path: 400 unless a whole number from 1 (seed 000's "invalid
    version"), 404 beyond int64 (no stack ever gets there)."""
    raw = request.match_info["version"]
    if not raw.isascii() or not raw.isdigit():
        raise bad_request(f"invalid version {raw[:32]!r}: versions are whole numbers from 1")
    version = int(raw)
    if version < 1:
        raise bad_request("versions start at 1")
    if not fits(version, INT64_BITS):
        raise ApiError(404, f"Not Found: Version {version}")
    return version

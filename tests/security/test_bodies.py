"""Compressed bodies cost no more than their bound: a gzip bomb (1 MiB that inflates to 1 GiB)
is refused cheaply wherever it is sent, and other callers stay fast meanwhile."""

from __future__ import annotations

import asyncio
import gzip
import time
import zlib
from collections.abc import AsyncIterator

import pytest

from services.common.config import Settings
from tests.gateway.conftest import ADMIN_TOKEN, AiohttpClient, Cairn, running_cairn
from tests.security.raw_http import (
    JSON_HEADERS,
    MIB,
    RawResponse,
    bomb_request,
    exchange,
    gzip_bomb,
    request_bytes,
)

# CPU seconds of this whole process (test client, gateway and services) one refusal may
# take. Inflating the bomb's 1 GiB costs about 2.5 s of CPU on a 2-core box; stopping at the
# default 64 MiB limit about 0.15 s, and refusing before the body is read next to nothing.
REFUSAL_CPU_SECONDS = 1.0
# Wall-clock bound per refusal, generous for a loaded 2-core CI box.
REFUSAL_WALL_SECONDS = 2.0
# The slowest `GET /api/user` allowed while four bombs are in flight (14.5 s before).
CONCURRENT_LATENCY_SECONDS = 1.5
TOKENS = "/api/user/tokens"
SMALL_LIMIT = 4096

# (what, method, path, with the admin token, expected status)
BOMB_CASES = [
    ("unknown route", "POST", "/api/no/such/route", False, 404),
    ("method not allowed", "PUT", "/api/user", True, 405),
    ("no token on a real route", "POST", TOKENS, False, 401),
    ("valid token on a real route", "POST", TOKENS, True, 413),
]


async def timed_exchange(cairn: Cairn, raw: bytes) -> tuple[RawResponse, float, float]:
    """The answer, and the process CPU and wall seconds until the server closed the
    connection (lingering over any unread body included)."""
    cpu, wall = time.process_time(), time.monotonic()
    answer = await exchange(cairn, raw)
    return answer, time.process_time() - cpu, time.monotonic() - wall


def assert_error(answer: RawResponse, status: int) -> None:
    assert answer.status == status, answer.body[:300]
    assert answer.headers["content-type"].startswith("application/json")
    body = answer.json()
    assert body["code"] == status and body["message"]


def test_the_bomb_is_what_it_claims() -> None:
    bomb = gzip_bomb()
    assert MIB <= len(bomb) < 1.1 * MIB
    inflater = zlib.decompressobj(wbits=31)
    # Its first 64 MiB are zeros; the whole is checked by zlib's own CRC at the end.
    assert inflater.decompress(bomb, 64 * MIB) == bytes(64 * MIB)


@pytest.mark.parametrize(
    ("method", "path", "is_authenticated", "status"),
    [case[1:] for case in BOMB_CASES],
    ids=[case[0] for case in BOMB_CASES],
)
async def test_a_gzip_bomb_is_refused_within_a_cpu_bound(
    cairn: Cairn, method: str, path: str, is_authenticated: bool, status: int
) -> None:
    raw = bomb_request(method, path, is_authenticated=is_authenticated)
    answer, cpu, wall = await timed_exchange(cairn, raw)
    assert_error(answer, status)
    print(f"{method} {path} -> {status}: {cpu:.3f} s CPU, {wall:.3f} s wall")
    assert cpu < REFUSAL_CPU_SECONDS
    assert wall < REFUSAL_WALL_SECONDS
    # The connection was fine to close; the server still answers.
    assert (await cairn.json("GET", "/api/user"))["githubLogin"] == "admin"


async def test_other_callers_stay_fast_while_bombs_are_in_flight(cairn: Cairn) -> None:
    bombs = [
        asyncio.create_task(
            exchange(cairn, bomb_request(method, path, is_authenticated=is_authenticated))
        )
        for _, method, path, is_authenticated, _ in BOMB_CASES
    ]
    latencies: list[float] = []
    during_bombs = 0
    while not all(bomb.done() for bomb in bombs) or len(latencies) < 5:
        during_bombs += not all(bomb.done() for bomb in bombs)
        started = time.monotonic()
        response = await cairn.call("GET", "/api/user")
        assert response.status == 200
        await response.read()
        latencies.append(time.monotonic() - started)
    answers = await asyncio.gather(*bombs)
    for answer, (_, _, _, _, status) in zip(answers, BOMB_CASES, strict=True):
        assert_error(answer, status)
    print(f"GET /api/user with 4 bombs in flight: max {max(latencies):.3f} s, n={during_bombs}")
    assert during_bombs >= 1
    assert max(latencies) < CONCURRENT_LATENCY_SECONDS


async def test_a_declared_length_over_the_limit_is_refused_unread(cairn: Cairn) -> None:
    head = request_bytes(
        "POST",
        TOKENS,
        {**JSON_HEADERS, "Authorization": f"token {ADMIN_TOKEN}", "Content-Length": "1000000000"},
    )
    # Only the head is sent: the answer cannot wait for the (absent) gigabyte.
    answer = await exchange(cairn, head, until_closed=False)
    assert_error(answer, 413)


async def test_gzip_and_deflate_bodies_are_read(cairn: Cairn) -> None:
    body = b'{"description": "compressed"}'
    deflated = zlib.compress(body)
    for encoding, data in (
        ("gzip", gzip.compress(body)),
        ("deflate", deflated),
        ("GZIP", gzip.compress(body)),
    ):
        created = await cairn.json("POST", TOKENS, raw=data, headers={"Content-Encoding": encoding})
        assert created["tokenValue"]
    # Several gzip members in a row are one body (as Go's reader reads them).
    members = gzip.compress(body[:10]) + gzip.compress(body[10:])
    created = await cairn.json("POST", TOKENS, raw=members, headers={"Content-Encoding": "gzip"})
    assert created["tokenValue"]
    tokens = await cairn.json("GET", TOKENS)
    assert sum(t["description"] == "compressed" for t in tokens["tokens"]) == 4


@pytest.fixture
async def small_cairn(settings: Settings, aiohttp_client: AiohttpClient) -> AsyncIterator[Cairn]:
    small = settings.model_copy(update={"max_body_bytes": SMALL_LIMIT})
    async for running in running_cairn(small, aiohttp_client):
        yield running


async def test_inflation_stops_right_at_the_limit(small_cairn: Cairn) -> None:
    prefix = b'{"description": "padded"'
    exact = prefix + b" " * (SMALL_LIMIT - len(prefix) - 1) + b"}"
    assert len(exact) == SMALL_LIMIT
    for encoding, compress in (("gzip", gzip.compress), ("deflate", zlib.compress)):
        headers = {"Content-Encoding": encoding}
        created = await small_cairn.json("POST", TOKENS, raw=compress(exact), headers=headers)
        assert created["tokenValue"]
        over = exact[:-1] + b" }"
        response = await small_cairn.call("POST", TOKENS, raw=compress(over), headers=headers)
        assert response.status == 413
        assert (await response.json())["code"] == 413


@pytest.mark.parametrize("encoding", ["br", "zstd", "gzip, gzip", "compress"])
async def test_an_unsupported_content_encoding_is_415(cairn: Cairn, encoding: str) -> None:
    response = await cairn.call(
        "POST", TOKENS, raw=b"\x00\x01\x02", headers={"Content-Encoding": encoding}
    )
    assert response.status == 415
    body = await response.json()
    assert body["code"] == 415 and "Content-Encoding" in body["message"]


@pytest.mark.parametrize(
    "data",
    [gzip.compress(b'{"description": "x"}')[:-12], b"not gzip at all"],
    ids=["truncated", "garbage"],
)
async def test_an_undecodable_body_is_400(cairn: Cairn, data: bytes) -> None:
    response = await cairn.call("POST", TOKENS, raw=data, headers={"Content-Encoding": "gzip"})
    assert response.status == 400, await response.text()
    body = await response.json()
    assert body == {"code": 400, "message": body["message"]} and "decoded" in body["message"]

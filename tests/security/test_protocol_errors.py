"""Requests aiohttp's parser refuses are answered in Pulumi's JSON error shape, quoting none
of the request's bytes (raw sockets: no client library sends these)."""

from __future__ import annotations

import pytest

from tests.gateway.conftest import ADMIN_TOKEN, Cairn
from tests.security.conftest import LogEntries, logged_text
from tests.security.raw_http import exchange, request_bytes

MARKER = "c0ffee-marker-9f8e7d"
LONG = MARKER + "a" * 9000

MALFORMED = [
    ("header over 8190 bytes", request_bytes("GET", "/api/user", {"X-Long": LONG})),
    ("NUL in a header", request_bytes("GET", "/api/user", {"X-Note": f"{MARKER}\x00x"})),
    ("control character in a header", request_bytes("GET", "/api/user", {"X-N": f"{MARKER}\x1b"})),
    ("header name with a space", request_bytes("GET", "/api/user", {f"X {MARKER}": "1"})),
    ("bad request line", f"GARBAGE {MARKER}\r\n\r\n".encode()),
    ("bad method", f"G@T /api/user?{MARKER} HTTP/1.1\r\nHost: x\r\n\r\n".encode()),
    ("bad HTTP version", f"GET /api/user?{MARKER} HTTP/9.Z\r\nHost: x\r\n\r\n".encode()),
    ("request line over 8190 bytes", f"GET /{LONG} HTTP/1.1\r\nHost: x\r\n\r\n".encode()),
    (
        "bad chunked body",
        request_bytes(
            "POST",
            "/api/user/tokens",
            {"Transfer-Encoding": "chunked", "Authorization": f"token {ADMIN_TOKEN}"},
        )
        + f"zz{MARKER}\r\n".encode(),
    ),
]


@pytest.mark.parametrize("raw", [case[1] for case in MALFORMED], ids=[c[0] for c in MALFORMED])
async def test_parser_errors_answer_json(
    cairn: Cairn, logs: LogEntries, caplog: pytest.LogCaptureFixture, raw: bytes
) -> None:
    answer = await exchange(cairn, raw)
    assert answer.status == 400, answer.body[:300]
    assert answer.headers["content-type"] == "application/json"
    body = answer.json()
    assert body["code"] == 400 and body["message"].startswith("Bad Request: ")
    assert MARKER.encode() not in answer.body
    assert MARKER not in logged_text(logs, caplog)
    # The server is unharmed.
    assert (await cairn.json("GET", "/api/user"))["githubLogin"] == "admin"

"""Malformed Authorization headers are a plain 401: never a 500, and the header's value
appears in no answer and no log line (structlog's or the standard library's)."""

from __future__ import annotations

import logging

import pytest

from tests.gateway.conftest import Cairn
from tests.security.conftest import LogEntries, logged_text
from tests.security.raw_http import RawResponse, exchange, request_bytes

SECRET = "pul-5ecre7-d0-not-log-0123456789abcdef"
HEADERS = {"Accept": "application/vnd.pulumi+9", "Content-Type": "application/json"}
UPDATE = "/api/stacks/admin/web/dev/update/0123456789abcdef0123456789abcdef"

# Header values as the bytes on the wire (Latin-1 maps each character to one byte).
CREDENTIALS = [
    ("bytes ff fe", "token \xff\xfe"),
    ("bytes ff fe after a token", f"token {SECRET}\xff\xfe"),
    ("control character", f"token {SECRET}\x01"),
    ("escape character", f"token {SECRET}\x1b[2J"),
    ("DEL", f"token {SECRET}\x7f"),
    ("tab inside", f"token {SECRET}\tmore"),
    ("non-ASCII", f"token {SECRET}é"),
    ("too long", f"token {SECRET}{'x' * 5000}"),
]
ROUTES = [
    ("GET", "/api/user"),
    ("POST", "/api/orgs/admin/tokens"),
    ("POST", f"{UPDATE}/complete"),
    ("POST", "/api/agents/register"),
]


def assert_unauthorized(answer: RawResponse) -> None:
    assert answer.status == 401, answer.body[:300]
    assert answer.headers["content-type"] == "application/json"
    body = answer.json()
    assert body["code"] == 401 and body["message"].startswith("Unauthorized")
    assert SECRET.encode() not in answer.body


@pytest.mark.parametrize(
    "authorization", [case[1] for case in CREDENTIALS], ids=[case[0] for case in CREDENTIALS]
)
@pytest.mark.parametrize(("method", "path"), ROUTES, ids=[path for _, path in ROUTES])
async def test_a_malformed_credential_is_401_and_never_logged_or_echoed(
    cairn: Cairn,
    logs: LogEntries,
    caplog: pytest.LogCaptureFixture,
    method: str,
    path: str,
    authorization: str,
) -> None:
    scheme = "update-token" if path.startswith(UPDATE) else "token"
    authorization = authorization.replace("token ", f"{scheme} ", 1)
    raw = request_bytes(method, path, {**HEADERS, "Authorization": authorization}, b"{}")
    assert_unauthorized(await exchange(cairn, raw))
    text = logged_text(logs, caplog)
    assert SECRET not in text
    assert "\\xff\\xfe" not in text and "\\udcff" not in text
    assert not [entry for entry in logs if entry["log_level"] in ("error", "critical")]
    assert not [record for record in caplog.records if record.levelno >= logging.ERROR]


async def test_an_ordinary_wrong_token_is_not_logged_either(
    cairn: Cairn, logs: LogEntries, caplog: pytest.LogCaptureFixture
) -> None:
    response = await cairn.call("GET", "/api/user", token=SECRET)
    assert response.status == 401
    assert SECRET not in await response.text()
    assert SECRET not in logged_text(logs, caplog)

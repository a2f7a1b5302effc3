"""Pure pieces of the gateway: the status table, the Accept rule, body helpers, routes."""

from __future__ import annotations

import logging
from types import SimpleNamespace
from typing import Any

import aiohttp
import grpc
import pytest
from aiohttp import web
from hypothesis import given
from hypothesis import strategies as st

from cairn.cli import free_ports
from gateway.context import BACKENDS, SETTINGS
from gateway.convert import b64decode, b64encode, optional_string, string_map
from gateway.errors import ApiError
from gateway.middleware import _accepts
from gateway.routes import ROUTES, ROUTES_BY_OPERATION, Access
from gateway.serving import serving
from gateway.views import TOKEN_LOOKUP_BATCH, updates_by_tokens
from protos.cairn.v1 import updates_pb2
from services.common.config import Settings
from services.common.errors import HTTP_STATUS, http_status


def test_status_table_follows_the_style_guide() -> None:
    assert http_status(grpc.StatusCode.FAILED_PRECONDITION) == 409
    assert http_status(grpc.StatusCode.ABORTED) == 409
    assert http_status(grpc.StatusCode.INVALID_ARGUMENT) == 400
    assert http_status(grpc.StatusCode.UNAVAILABLE) == 503
    assert set(HTTP_STATUS) == set(grpc.StatusCode)


@pytest.mark.parametrize(
    ("header", "accepted"),
    [
        ("application/vnd.pulumi+8", True),
        ("application/vnd.pulumi+9", True),
        ("application/vnd.pulumi+10", True),
        ("application/json", True),
        ("application/json; charset=utf-8", True),
        ("*/*", True),
        ("text/html, */*;q=0.1", True),
        ("text/html", False),
        ("", False),
        ("application/vnd.pulumi+x", False),
        ("application/xml", False),
    ],
)
def test_accept_rule(header: str, accepted: bool) -> None:
    assert _accepts(header) is accepted


@given(st.binary(max_size=256))
def test_base64_round_trip_is_standard_padded(data: bytes) -> None:
    encoded = b64encode(data)
    assert b64decode(encoded, "x") == data
    assert len(encoded) % 4 == 0


def test_helpers_treat_null_as_absent_and_reject_wrong_types() -> None:
    assert optional_string({"a": None}, "a") == ""
    assert string_map(None, "tags") == {}
    with pytest.raises(ApiError) as error:
        optional_string({"a": 1}, "a")
    assert error.value.status == 400
    with pytest.raises(ApiError):
        string_map({"a": 1}, "tags")
    with pytest.raises(ApiError):
        b64decode("abc", "x")


def test_route_table_is_consistent() -> None:
    assert len(ROUTES_BY_OPERATION) == len(ROUTES), "operation ids must be unique"
    keys = [(route.method, route.path) for route in ROUTES]
    assert len(set(keys)) == len(keys), "a method and path appear twice"
    for route in ROUTES:
        if route.access in (Access.ORG, Access.STACK):
            assert "{orgName}" in route.path, route.operation_id
        if route.access is Access.ORG:
            assert route.role != 0 and route.permission == 0, route.operation_id
        if route.access is Access.STACK:
            # Stack routes need a stack permission, never an organization role.
            assert "{stackName}" in route.path, route.operation_id
            assert route.permission != 0 and route.role == 0, route.operation_id
        if route.manages_access:
            assert route.access in (Access.USER, Access.ORG, Access.STACK), route.operation_id


@pytest.mark.parametrize(
    ("access_log", "logged"),
    [
        ("requests", ["/api/thing"]),
        ("all", ["/healthz", "/api/thing", "/metrics"]),
        ("off", []),
    ],
)
async def test_access_log_leaves_out_probes_unless_asked(
    access_log: str, logged: list[str], caplog: pytest.LogCaptureFixture
) -> None:
    async def answer(_request: web.Request) -> web.Response:
        return web.json_response({})

    app = web.Application()
    for path in ("/healthz", "/api/thing", "/metrics"):
        app.router.add_get(path, answer)
    app[SETTINGS] = Settings(access_log=access_log)  # type: ignore[arg-type]
    (port,) = free_ports(1)
    caplog.set_level(logging.INFO, logger="aiohttp.access")
    async with serving(app, "127.0.0.1", port), aiohttp.ClientSession() as http:
        for path in ("/healthz", "/api/thing", "/metrics"):
            async with http.get(f"http://127.0.0.1:{port}{path}") as response:
                assert response.status == 200
    lines = [record.getMessage() for record in caplog.records if record.name == "aiohttp.access"]
    assert [
        path
        for path in ("/healthz", "/api/thing", "/metrics")
        if any(f"GET {path} " in line for line in lines)
    ] == logged


def test_access_log_takes_on_and_off_spellings() -> None:
    assert Settings(access_log="true").access_log == "requests"  # type: ignore[arg-type]
    assert Settings(access_log=False).access_log == "off"  # type: ignore[arg-type]
    assert Settings().access_log == "off"


async def test_updates_by_tokens_asks_in_batches_keeping_each_owner_whole() -> None:
    """More job tokens than one lookup may name go in several calls; an owner's tokens are
    never split, so its updates stay oldest first."""
    asked: list[list[str]] = []

    async def lookup(
        request: updates_pb2.ListUpdatesByTokensRequest, **_: object
    ) -> updates_pb2.ListUpdatesResponse:
        asked.append(list(request.token_ids))
        return updates_pb2.ListUpdatesResponse(
            updates=[
                updates_pb2.UpdateInfo(update_id=f"u-{token}", requested_by_token=token)
                for token in request.token_ids
            ]
        )

    backends = SimpleNamespace(timeout=1.0, updates=SimpleNamespace(ListUpdatesByTokens=lookup))
    request: Any = SimpleNamespace(app={BACKENDS: backends}, get=lambda key, default=None: default)
    owners = {f"t{n:04d}-{k}": f"d{n:04d}" for n in range(700) for k in (0, 1)}
    found = await updates_by_tokens(request, owners, ["stack-1"])
    assert [len(batch) for batch in asked] == [TOKEN_LOOKUP_BATCH, 400]
    assert all(len(batch) <= TOKEN_LOOKUP_BATCH for batch in asked)
    assert len(found) == 700
    assert found["d0499"][0].update_id == "u-t0499-0"
    assert [u.requested_by_token for u in found["d0500"]] == ["t0500-0", "t0500-1"]
    assert await updates_by_tokens(request, {}, ["stack-1"]) == {}
    assert len(asked) == 2

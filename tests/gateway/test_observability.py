"""Metrics, liveness and readiness, and request ids in log lines, through the whole system.

Every service of `cairn up` and the gateway count into the process's default registry, which
earlier tests in the same pytest run have counted into too, so assertions compare before and after.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
import structlog
from prometheus_client.parser import text_string_to_metric_families

from protos.cairn.v1 import identity_pb2
from services.common.logging import configure_logging
from tests.gateway.cli import begin, create_stack, stack_path
from tests.gateway.conftest import CLI_HEADERS, Cairn

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def scrape(cairn: Cairn) -> tuple[Samples, str]:
    """`GET /metrics` as Prometheus does: no token and no Pulumi Accept header."""
    response = await cairn.client.get("/metrics")
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    text = await response.text()
    samples = {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }
    return samples, text


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def delta(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


async def test_metrics_count_http_routes_and_rpcs(cairn: Cairn) -> None:
    await create_stack(cairn, "web", "metrics")
    before, _ = await scrape(cairn)
    for _ in range(3):
        await cairn.json("GET", stack_path("admin", "web", "metrics"))
    missing = await cairn.call("GET", stack_path("admin", "web", "absent"))
    assert missing.status == 404
    assert (await cairn.call("GET", "/no/such/path")).status == 404

    after, text = await scrape(cairn)
    http = "cairn_http_requests_total"
    assert delta(before, after, http, route="get_stack", method="GET", status="200") == 3
    assert delta(before, after, http, route="get_stack", method="GET", status="404") == 1
    assert delta(before, after, http, route="unmatched", method="GET", status="404") == 1
    assert value(after, http, route="get_metrics", method="GET", status="200") >= 1
    timed = "cairn_http_request_seconds_count"
    assert delta(before, after, timed, route="get_stack", method="GET") == 4

    rpc = "cairn_grpc_requests_total"
    stacks = {"service": "cairn.v1.StacksService", "method": "GetStack"}
    assert delta(before, after, rpc, **stacks, code="OK") == 3
    assert delta(before, after, rpc, **stacks, code="NOT_FOUND") == 1
    authorize = {"service": "cairn.v1.IdentityService", "method": "Authorize", "code": "OK"}
    assert delta(before, after, rpc, **authorize) == 4
    assert value(after, "cairn_grpc_request_seconds_count", **stacks) >= 4

    # Labels name routes and methods, never raw paths.
    route_labels = {
        dict(labels).get("route") for name, labels in after if name.startswith("cairn_http_")
    }
    assert "get_stack" in route_labels
    assert not any(label and "/" in label for label in route_labels)
    assert "/api/stacks" not in text


async def test_livez_answers_without_backends_and_readyz_follows_the_services(
    cairn: Cairn,
) -> None:
    live = await cairn.client.get("/livez")
    assert live.status == 200
    assert (await live.json())["status"] == "ok"
    ready = await cairn.client.get("/readyz")
    assert ready.status == 200, await ready.text()
    assert set((await ready.json())["services"].values()) == {"serving"}

    stopped = cairn.system.services[-1]
    await stopped.stop(0)

    ready = await cairn.client.get("/readyz")
    assert ready.status == 503
    body = await ready.json()
    assert body["code"] == 503 and body["services"][stopped.name] == "unavailable"
    assert (await cairn.client.get("/livez")).status == 200
    assert (await cairn.client.get("/healthz")).status == 503


UPDATES: tuple[tuple[str, dict[str, str]], ...] = (
    ("cairn_updates_started_total", {"kind": "update"}),
    ("cairn_updates_finished_total", {"kind": "update", "status": "succeeded"}),
    ("cairn_update_lock_conflicts_total", {}),
    ("cairn_update_lock_wait_seconds_count", {}),
    ("cairn_updates_started_total", {"kind": "preview"}),
)


async def test_update_metrics_follow_a_cli_update(cairn: Cairn) -> None:
    path = stack_path("admin", "web", "observed")
    await create_stack(cairn, "web", "observed")
    before, _ = await scrape(cairn)

    run = await begin(cairn, path)
    run.resources = []
    await run.full_checkpoint({})
    # A second update while the first holds the stack: the CLI's 409.
    created = await cairn.json(
        "POST", f"{path}/update", body={"options": {"dryRun": False}, "config": {}}
    )
    conflict = await cairn.call("POST", f"{path}/update/{created['updateID']}", body={})
    assert conflict.status == 409, await conflict.text()
    await run.complete()
    preview = await begin(cairn, path, "preview", dry_run=True)
    await preview.complete()

    after, _ = await scrape(cairn)
    changes = {
        name + str(sorted(labels.items())): delta(before, after, name, **labels)
        for name, labels in UPDATES
    }
    assert changes == {
        "cairn_updates_started_total[('kind', 'update')]": 1,
        "cairn_updates_finished_total[('kind', 'update'), ('status', 'succeeded')]": 1,
        "cairn_update_lock_conflicts_total[]": 1,
        # Both non-preview starts waited for the lock, the refused one included.
        "cairn_update_lock_wait_seconds_count[]": 2,
        "cairn_updates_started_total[('kind', 'preview')]": 1,
    }
    received = delta(before, after, "cairn_checkpoint_bytes_total", kind="full")
    assert received > 0


@pytest.fixture
def json_logs() -> Iterator[io.StringIO]:
    """The JSON log format of `configure_logging`, written to a buffer instead of stdout."""
    previous = structlog.get_config()
    buffer = io.StringIO()
    configure_logging("json")
    # No logger may keep the buffer (or this format) after the test: no caching.
    structlog.configure(
        logger_factory=structlog.PrintLoggerFactory(buffer), cache_logger_on_first_use=False
    )
    try:
        yield buffer
    finally:
        structlog.configure(**previous)


def log_lines(buffer: io.StringIO, event: str) -> list[dict[str, Any]]:
    lines = [orjson.loads(line) for line in buffer.getvalue().splitlines() if line.strip()]
    return [line for line in lines if line.get("event") == event]


@pytest.mark.parametrize("supplied", ["obs-request-7", None])
async def test_service_log_lines_carry_the_gateways_request_id(
    cairn: Cairn, json_logs: io.StringIO, supplied: str | None
) -> None:
    # A new user's first stack creates their own organization; the identity service logs it.
    org = f"observed-{supplied or 'generated'}"
    await cairn.identity.CreateUser(identity_pb2.CreateUserRequest(login=org))
    token = await cairn.identity.CreateAccessToken(
        identity_pb2.CreateAccessTokenRequest(user_login=org, name="tests")
    )
    response = await cairn.call(
        "POST",
        f"/api/stacks/{org}/web",
        token=token.token,
        body={"stackName": "dev"},
        headers={"X-Request-ID": supplied} if supplied else {},
    )
    assert response.status == 200, await response.text()
    request_id = response.headers["X-Request-ID"]
    if supplied:
        assert request_id == supplied

    (line,) = log_lines(json_logs, "organization_created")
    assert line["organization"] == org
    assert line["request_id"] == request_id
    assert line["rpc"] == "/cairn.v1.IdentityService/Authorize"
    assert line["level"] == "info" and line["timestamp"]


async def test_metrics_and_probes_need_no_pulumi_accept_header(cairn: Cairn) -> None:
    for path in ("/metrics", "/livez", "/readyz"):
        response = await cairn.client.get(path, headers={"Accept": "text/html"})
        assert response.status == 200, path
    response = await cairn.client.get("/api/capabilities", headers={"Accept": "text/html"})
    assert response.status == 415
    assert (await cairn.client.get("/api/capabilities", headers=CLI_HEADERS)).status == 200

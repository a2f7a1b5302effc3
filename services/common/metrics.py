"""Prometheus metrics: one holder of every metric family, and their exposition over HTTP.

Design. `Metrics` registers every Cairn family on the `CollectorRegistry` it is given, so a
test can build one on a private registry and count in isolation. A registry accepts a family
name once, and `cairn up` runs the gateway and every service in one process, so they must
share one `Metrics`: `default_metrics()` builds it once per process on `default_registry()`
(prometheus_client's process-wide `REGISTRY`, which also carries the process and GC
collectors). That accessor is the single documented module-level exception to "no
singletons": a process has exactly one default registry, and threading a registry through
every service's `start(settings, host=..., port=...)` would change six signatures for no
gain. Code that is handed a `Metrics` (the gRPC interceptor, the gateway app, `Updates`)
falls back to `default_metrics()` only when none is given.

Where metrics are served. Under `cairn up` the gateway's `GET /metrics` serves the shared
registry, so one scrape covers the whole system. `cairn serve <service>` is its own process
with its own registry; with `CAIRN_METRICS_PORT` set, `serve_service` also serves `/metrics`
on `CAIRN_GRPC_HOST:CAIRN_METRICS_PORT` (`serve_metrics`), so the setting must stay 0 where
several services share a process. `cairn serve gateway` serves its own `/metrics` route.

Cardinality stays bounded: gRPC methods are only those a server registered, HTTP routes are
operation ids from the route table (anything unmatched is "unmatched"), HTTP methods outside
the standard set are "other", and update kinds and statuses are fixed vocabularies.
"""

from __future__ import annotations

import functools
from typing import Any

import grpc
import prometheus_client
from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.exposition import choose_encoder

UNMATCHED_ROUTE = "unmatched"
OTHER_METHOD = "other"
_HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# Lock waits are usually sub-millisecond (an uncontended row lock) but can reach seconds
# (a busy SQLite file, a slow PostgreSQL lock, a takeover of an abandoned update).
_LOCK_WAIT_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)


class Metrics:
    """Every Cairn metric family, registered on one registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        # The labelled children of the per-call families, looked up once per label set
        # (bounded like the labels themselves): `labels()` takes a lock and checks every
        # label on each call, twice per request and twice per RPC on the update path.
        self._rpc_children: dict[tuple[str, grpc.StatusCode], tuple[Any, Any]] = {}
        self._http_children: dict[tuple[str | None, str, int], tuple[Any, Any]] = {}
        self.grpc_requests = Counter(
            "cairn_grpc_requests",
            "RPCs handled by a Cairn service, by final status code.",
            ["service", "method", "code"],
            registry=registry,
        )
        self.grpc_request_seconds = Histogram(
            "cairn_grpc_request_seconds",
            "Time a Cairn service took to answer an RPC.",
            ["service", "method"],
            registry=registry,
        )
        self.http_requests = Counter(
            "cairn_http_requests",
            "HTTP requests answered by the gateway, by route (operation id) and status.",
            ["route", "method", "status"],
            registry=registry,
        )
        self.http_request_seconds = Histogram(
            "cairn_http_request_seconds",
            "Time the gateway took to answer an HTTP request.",
            ["route", "method"],
            registry=registry,
        )
        # A started/finished pair instead of an active gauge: any replica may finish an
        # update another started, and sums of counters stay right across replicas and
        # restarts. Active updates = started - finished (kind != "preview" for locks held).
        self.updates_started = Counter(
            "cairn_updates_started",
            "Updates started (lease handed out), by kind; previews hold no stack lock.",
            ["kind"],
            registry=registry,
        )
        self.updates_finished = Counter(
            "cairn_updates_finished",
            "Updates finalised (completed, cancelled or expired), by kind and final status.",
            ["kind", "status"],
            registry=registry,
        )
        self.update_lock_conflicts = Counter(
            "cairn_update_lock_conflicts",
            "Update starts refused because another update holds the stack (HTTP 409).",
            registry=registry,
        )
        self.update_lock_wait_seconds = Histogram(
            "cairn_update_lock_wait_seconds",
            "Time a non-preview update start spent taking the stack lock, won or refused.",
            buckets=_LOCK_WAIT_BUCKETS,
            registry=registry,
        )
        self.checkpoint_bytes = Counter(
            "cairn_checkpoint_bytes",
            "Checkpoint bytes received, by kind (full, verbatim, delta, journal).",
            ["kind"],
            registry=registry,
        )
        self.audit_refusals_dropped = Counter(
            "cairn_audit_refusals_dropped",
            "Site-level audit entries of refused calls dropped by the rate limit.",
            registry=registry,
        )

    def observe_rpc(self, full_method: str, code: grpc.StatusCode, seconds: float) -> None:
        """Count and time one RPC; `full_method` is gRPC's `/package.Service/Method`."""
        children = self._rpc_children.get((full_method, code))
        if children is None:
            service, _, method = full_method.lstrip("/").rpartition("/")
            children = (
                self.grpc_requests.labels(service, method, code.name),
                self.grpc_request_seconds.labels(service, method),
            )
            self._rpc_children[(full_method, code)] = children
        children[0].inc()
        children[1].observe(seconds)

    def observe_http(self, route: str | None, method: str, status: int, seconds: float) -> None:
        """Count and time one HTTP request; `route` is the operation id, None when unmatched."""
        method_label = method if method in _HTTP_METHODS else OTHER_METHOD
        children = self._http_children.get((route, method_label, status))
        if children is None:
            route_label = route or UNMATCHED_ROUTE
            children = (
                self.http_requests.labels(route_label, method_label, str(status)),
                self.http_request_seconds.labels(route_label, method_label),
            )
            self._http_children[(route, method_label, status)] = children
        children[0].inc()
        children[1].observe(seconds)


def default_registry() -> CollectorRegistry:
    """prometheus_client's process-wide registry (the one documented global; see above)."""
    return prometheus_client.REGISTRY


@functools.cache
def default_metrics() -> Metrics:
    """This process's metric families on the default registry, registered exactly once."""
    return Metrics(default_registry())


METRICS = web.AppKey("metrics", Metrics)


def exposition(registry: CollectorRegistry, accept: str) -> web.Response:
    """The registry in the format the scraper asked for (Prometheus text by default)."""
    encode, content_type = choose_encoder(accept)
    return web.Response(body=encode(registry), headers={"Content-Type": content_type})


async def get_metrics(request: web.Request) -> web.Response:
    """`GET /metrics` on a standalone service's metrics port."""
    return exposition(request.app[METRICS].registry, request.headers.get("Accept", ""))


async def serve_metrics(metrics: Metrics, host: str, port: int) -> web.AppRunner:
    """Serve `GET /metrics` for one `cairn serve <service>` process; clean up the runner."""
    app = web.Application()
    app[METRICS] = metrics
    app.router.add_get("/metrics", get_metrics)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except BaseException:
        await runner.cleanup()
        raise
    return runner

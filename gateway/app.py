"""The aiohttp application factory."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from gateway.audit import AUDIT_RECORDER, AuditRecorder, recording
from gateway.audit_middleware import audit_middleware
from gateway.audit_policy import AUDIT_POLICY, AUDIT_REFUSAL_LIMITER, AuditPolicy, RefusalLimiter
from gateway.auth_failures import AuthFailures
from gateway.backends import Backends
from gateway.console.app import add_console
from gateway.context import AUTH_FAILURES, BACKENDS, OPENAPI_DOCUMENT, SETTINGS
from gateway.invitations import MAILER
from gateway.middleware import (
    accept_middleware,
    auth_failure_middleware,
    auth_middleware,
    error_middleware,
    metrics_middleware,
    no_store_middleware,
    request_id_middleware,
)
from gateway.openapi import cached_document
from gateway.queries import query_middleware
from gateway.routes import ROUTES, add_routes
from services.common.config import Settings
from services.common.mail import Mailer
from services.common.metrics import METRICS, Metrics, default_metrics


def create_app(
    settings: Settings, backends: Backends | None = None, metrics: Metrics | None = None
) -> web.Application:
    """Build the gateway; channels are opened on start-up unless `backends` is given.

    Requests are counted in `metrics`, by default the process's shared families (which the
    services of `cairn up` count into as well, so `/metrics` covers the whole system).
    """
    app = web.Application(
        # Metrics outermost: they see the final status of every request, errors included.
        middlewares=[
            metrics_middleware,
            request_id_middleware,
            # Outside the error middleware: it records every outcome, refusals included.
            audit_middleware,
            # Outside the error middleware: they see every answer, refusals included.
            auth_failure_middleware,
            no_store_middleware,
            error_middleware,
            accept_middleware,
            auth_middleware,
            # After authentication: outsiders learn nothing from a query's mistakes.
            query_middleware,
        ],
        # The limit aiohttp applies to uncompressed bodies; compressed ones are inflated by
        # gateway/bodies.py under the same bound.
        client_max_size=settings.max_body_bytes,
        # Keyword arguments of every connection handler, however the app is served: aiohttp
        # must not inflate bodies itself (it would, unbounded, even for refused requests).
        handler_args={"auto_decompress": False},
    )
    app[SETTINGS] = settings
    app[METRICS] = metrics or default_metrics()
    app[AUTH_FAILURES] = AuthFailures.from_settings(settings)
    app[MAILER] = Mailer(settings)
    app[AUDIT_POLICY] = AuditPolicy(ROUTES)
    app[AUDIT_RECORDER] = AuditRecorder()
    app[AUDIT_REFUSAL_LIMITER] = RefusalLimiter(
        settings.audit_site_refusals_per_address_per_minute,
        settings.audit_site_refusals_per_minute,
    )
    add_routes(app)
    app[OPENAPI_DOCUMENT] = cached_document()
    # The web console at `/`; the REST API stays under /api/.
    add_console(app)

    async def backends_ctx(app: web.Application) -> AsyncIterator[None]:
        owned = backends is None
        app[BACKENDS] = Backends.connect(settings) if backends is None else backends
        yield
        if owned:
            await app[BACKENDS].close()

    app.cleanup_ctx.append(backends_ctx)
    # After the backends: cleaned up before them, so queued entries are written on the way out.
    app.cleanup_ctx.append(recording)
    return app

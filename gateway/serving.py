"""How the gateway is served: one runner for `cairn up`, `cairn serve gateway`,
`python -m gateway` and the tests.

aiohttp answers requests it cannot parse (a header over 8,190 bytes, a control character in a
header, a bad request line) itself, before any middleware runs, with a text/plain body that
quotes the offending bytes and an error-level log line that does too: an Authorization header
would land in both. The runner's connections answer those in Pulumi's `{"code", "message"}`
shape instead, with fixed messages, and log only the kind of error.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from typing import Any

from aiohttp import web
from aiohttp.web_log import AccessLogger
from aiohttp.web_request import BaseRequest

from gateway.context import SETTINGS
from gateway.errors import GENERIC_SERVER_ERROR, error_response, reason
from gateway.middleware import UNAUTHORIZED
from services.common.logging import get_logger
from services.common.masking import mask_credentials

log = get_logger("cairn.gateway")

SHUTDOWN_TIMEOUT_SECONDS = 10.0  # as `cairn up` and `cairn serve gateway`
# What load balancers and Prometheus poll every few seconds: left out of the access log
# unless CAIRN_ACCESS_LOG=all.
PROBE_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
# aiohttp's parser errors quote the rejected line (`b'Authorization: token ...'`); only whether
# it is the Authorization header is read from it, never echoed.
_AUTHORIZATION_LINE = re.compile(r"""b['"]authorization\s*:""", re.IGNORECASE)
_PARSE_ERRORS = {
    "LineTooLong": "a request line or header is too long",
    "BadHttpMethod": "the request line is malformed",
    "BadStatusLine": "the request line is malformed",
    "InvalidURLError": "the request target is malformed",
    "InvalidHeader": "a header is malformed",
    "TransferEncodingError": "the request body framing is malformed",
    "ContentLengthError": "the request body framing is malformed",
}


def protocol_error_message(status: int, exc: BaseException | None) -> tuple[int, str]:
    """The status and public message for an error aiohttp's server raises itself."""
    if status >= 500:
        if status == 504:
            return status, "Gateway Timeout: the request took too long."
        return status, GENERIC_SERVER_ERROR
    if exc is not None and _AUTHORIZATION_LINE.search(str(exc)):
        return 401, UNAUTHORIZED
    detail = _PARSE_ERRORS.get(type(exc).__name__, "the request could not be parsed")
    return status, f"{reason(status)}: {detail}"


class _JsonErrorProtocol(web.RequestHandler):
    """aiohttp's connection handler, with its own error answers in Pulumi's shape."""

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if request.writer.output_size > 0:
            # As aiohttp does: a response has begun, so the connection is beyond saving.
            raise ConnectionError("an error occurred after the response started")
        status, public = protocol_error_message(status, exc)
        error = type(exc).__name__ if exc is not None else ""
        if status >= 500:
            # A bug outside the error middleware: the traceback (never locals) helps.
            log.error("http_server_error", status=status, error=error, exc_info=exc)
        else:
            # The exception's text quotes the request's bytes (headers, tokens): left out.
            log.info("http_request_unparsable", status=status, error=error)
        response = error_response(status, public)
        response.force_close()
        return response


class _GatewayServer(web.Server):
    """aiohttp's low-level server, making `_JsonErrorProtocol` connections."""

    def __call__(self) -> web.RequestHandler:
        # Mirrors `web.Server.__call__`, with the same keyword arguments (the app's
        # `handler_args` and the runner's) and only the class changed.
        return _JsonErrorProtocol(self, loop=self._loop, **self._kwargs)


class MaskedAccessLogger(AccessLogger):
    """aiohttp's access log with anything shaped like a credential masked in every value:
    an invitation link's code travels in a query string, which the request line shows."""

    def _format_line(
        self, request: BaseRequest, response: web.StreamResponse, time: float
    ) -> Iterable[tuple[str | tuple[str, str], str]]:
        return [
            (key, mask_credentials(value) if isinstance(value, str) else value)
            for key, value in super()._format_line(request, response, time)
        ]


class _ProbeQuietAccessLogger(MaskedAccessLogger):
    """The masked access log without health probes and metrics scrapes."""

    def log(self, request: BaseRequest, response: web.StreamResponse, time: float) -> None:
        if request.path not in PROBE_PATHS:
            super().log(request, response, time)


class GatewayRunner(web.AppRunner):
    """The `web.AppRunner` every way of serving the gateway uses.

    Its access log follows `CAIRN_ACCESS_LOG`: none by default (a rendered line per request
    costs more CPU than an update's journal write itself, and the metrics count every
    request), every request but health probes and metrics scrapes, or all of them; always
    with credential-shaped values masked.
    """

    def __init__(self, app: web.Application, **kwargs: Any) -> None:
        settings = app.get(SETTINGS)
        choice = "off" if settings is None else settings.access_log
        if choice == "off":
            kwargs["access_log"] = None
        else:
            kwargs.setdefault(
                "access_log_class",
                MaskedAccessLogger if choice == "all" else _ProbeQuietAccessLogger,
            )
        super().__init__(app, **kwargs)

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        return _GatewayServer(
            server.request_handler,
            request_factory=server.request_factory,
            handler_cancellation=server.handler_cancellation,
            loop=server._loop,
            **server._kwargs,
        )


@asynccontextmanager
async def serving(app: web.Application, host: str, port: int) -> AsyncIterator[GatewayRunner]:
    """Serve `app` on host:port until the block ends, then stop with a grace period."""
    runner = GatewayRunner(app, shutdown_timeout=SHUTDOWN_TIMEOUT_SECONDS)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
        yield runner
    finally:
        await runner.cleanup()

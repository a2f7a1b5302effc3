"""The gateway's HTTP server: what aiohttp answers by itself never echoes the request.

aiohttp answers a request it cannot parse (a control character in a header, a header line
too long, broken framing) before any middleware runs, with a text body quoting the offending
line: an `Authorization` header and its token included. Here that answer is Pulumi's error
body with a fixed message; the log line aiohttp writes goes through the logging setup, which
masks tokens.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

from gateway.errors import GENERIC_SERVER_ERROR, error_response

MALFORMED = "Bad Request: the request is malformed (request line, headers or framing)"


def error_message(status: int) -> str:
    """The fixed message of an error the HTTP server answers by itself."""
    if status >= 500:
        return GENERIC_SERVER_ERROR
    if status == HTTPStatus.BAD_REQUEST:
        return MALFORMED
    return f"{HTTPStatus(status).phrase}: the request could not be handled"


class _RequestHandler(RequestHandler):
    def handle_error(
        self,
        request: Any,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        # aiohttp's own handling logs the error and refuses when part of an answer was sent.
        super().handle_error(request, status, exc, message)
        response = error_response(status, error_message(status))
        response.force_close()
        return response


class _Server(web.Server):
    def __call__(self) -> RequestHandler:
        return _RequestHandler(self, loop=self._loop, **self._kwargs)


class GatewayRunner(web.AppRunner):
    """`web.AppRunner` whose connections answer unparsable requests without echoing them."""

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        # The application builds the server; only the connections it makes change.
        server.__class__ = _Server
        return server

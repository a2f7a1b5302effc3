"""The gateway's error vocabulary and Pulumi's error body `{"code", "message"}`."""

from __future__ import annotations

from http import HTTPStatus

import grpc
import orjson
from aiohttp import web

from services.common.errors import http_status, is_gone

GENERIC_SERVER_ERROR = "Internal Server Error: something went wrong; see the server log."
UNAVAILABLE_PREFIX = "Service Unavailable: "
# Sent with every 503 a backend's outage or exhaustion causes: when to try again.
RETRY_AFTER_SECONDS = 2


class ApiError(Exception):
    """An error the gateway itself decides (bad body, Accept header, size, auth header)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def bad_request(message: str) -> ApiError:
    return ApiError(400, f"Bad Request: {message}")


def error_response(status: int, message: str) -> web.Response:
    """Pulumi's error body; the CLI prints it as `[code] message`."""
    return web.Response(
        status=status,
        body=orjson.dumps({"code": status, "message": message}),
        content_type="application/json",
    )


def rpc_error_response(error: grpc.aio.AioRpcError) -> web.Response:
    """Map a service's status through the one table; 5xx details never leak."""
    status = http_status(error.code())
    if status >= 500:
        details = error.details() or ""
        if error.code() == grpc.StatusCode.UNAVAILABLE and details.startswith(UNAVAILABLE_PREFIX):
            # A service's own, deliberate message (e.g. the update lock service is down).
            message = details
        elif error.code() == grpc.StatusCode.UNAVAILABLE:
            message = "Service Unavailable: a backend service is unavailable; try again."
        elif error.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
            message = "Gateway Timeout: a backend service did not answer in time."
        else:
            message = GENERIC_SERVER_ERROR
        response = error_response(status, message)
        if error.code() == grpc.StatusCode.UNAVAILABLE:
            response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
        return response
    message = error.details() or reason(status)
    if is_gone(error.code(), message):
        status = 410
    return error_response(status, message)

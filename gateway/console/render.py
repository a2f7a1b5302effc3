"""Server-side rendering of console pages: the template environment, filters, error pages
and the security headers every console response carries."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlencode

import grpc
import jinja2
import orjson
from aiohttp import web

from gateway.console.csrf import form_token
from gateway.context import PRINCIPAL
from gateway.errors import reason, rpc_error_response
from protos.cairn.v1 import common_pb2

TEMPLATES = web.AppKey("console_templates", jinja2.Environment)

# Everything is served by the gateway itself; nothing inline, nothing from elsewhere.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; font-src 'self'; form-action 'self'; base-uri 'none'; "
    "frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}
ROLE_NAMES: dict[int, str] = {
    common_pb2.ROLE_VIEWER: "viewer",
    common_pb2.ROLE_MEMBER: "member",
    common_pb2.ROLE_ADMIN: "admin",
}


def when(seconds: int | float | None) -> str:
    """Unix seconds as UTC text; 0 or none reads as 'never'."""
    if not seconds:
        return "never"
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def iso(seconds: int | float | None) -> str:
    if not seconds:
        return ""
    return datetime.fromtimestamp(seconds, UTC).isoformat()


def duration(start: int, end: int) -> str:
    """`1h 2m 3s` between two Unix times; a running update counts up to now."""
    if not start:
        return "-"
    total = max(0, int((end or time.time()) - start))
    hours, rest = divmod(total, 3600)
    minutes, seconds = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes}m {seconds}s"
    if minutes:
        return f"{minutes}m {seconds}s"
    return f"{seconds}s"


def segment(value: str) -> str:
    """One path segment, quoted (names never hold '/', but stay safe if one did)."""
    return quote(value, safe="")


def stack_url(org: str, project: str, stack: str, suffix: str = "") -> str:
    return f"/orgs/{segment(org)}/{segment(project)}/{segment(stack)}{suffix}"


def query_url(path: str, **params: Any) -> str:
    present = {key: value for key, value in params.items() if value not in (None, "")}
    return f"{path}?{urlencode(present)}" if present else path


def role_name(role: int) -> str:
    return ROLE_NAMES.get(role, "none")


def templates() -> jinja2.Environment:
    """Autoescaping on for every template: user text (names, tags, messages) is data only."""
    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("gateway.console", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters.update(when=when, iso=iso, role_name=role_name)
    environment.globals.update(
        duration=duration, stack_url=stack_url, query_url=query_url, segment=segment
    )
    return environment


def render(
    request: web.Request, template: str, *, status: int = 200, **context: Any
) -> web.Response:
    principal = request.get(PRINCIPAL)
    page = request.app[TEMPLATES].get_template(template)
    text = page.render(
        principal=principal,
        csrf_token=form_token(request),
        request_path=request.path_qs,
        **context,
    )
    return web.Response(text=text, status=status, content_type="text/html", charset="utf-8")


def error_page(request: web.Request, status: int, message: str) -> web.Response:
    return render(request, "error.html", status=status, status_text=reason(status), message=message)


def rpc_error_page(request: web.Request, error: grpc.aio.AioRpcError) -> web.Response:
    """The status and public message the REST API would answer, as a page."""
    translated = rpc_error_response(error)
    body = orjson.loads(translated.body) if isinstance(translated.body, bytes) else {}
    return error_page(request, translated.status, str(body.get("message", "")))


def secure(response: web.StreamResponse) -> None:
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    response.headers.setdefault("Cache-Control", "no-store")

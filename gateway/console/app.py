"""Mounts the console on the gateway: its pages, sessions, templates and static files.

Every page runs inside `guarded`: it opens the session cookie, authorises the page's rule
through the API's own `authorize`, and turns failures into HTML pages (the API's statuses
and public messages) or a redirect to sign-in.
"""

from __future__ import annotations

import asyncio

import grpc
from aiohttp import web

from gateway.console.csrf import CSRF_NONCE, NEW_CSRF_NONCE, SESSIONS, bind_nonce
from gateway.console.handlers import (
    SESSION,
    STATIC,
    STOPPING,
    is_signed_out,
    see_other,
    static_files,
)
from gateway.console.render import TEMPLATES, error_page, query_url, rpc_error_page, secure
from gateway.console.render import templates as build_templates
from gateway.console.routes import PAGES, Guard, Page
from gateway.console.session import CSRF_COOKIE, SESSION_COOKIE, Sessions, clear_cookie, set_cookie
from gateway.context import SETTINGS
from gateway.errors import GENERIC_SERVER_ERROR, ApiError
from gateway.middleware import authorize
from gateway.route import Handler, Route
from services.common.logging import get_logger

log = get_logger("cairn.console")


def _sign_in_redirect(request: web.Request) -> web.Response:
    next_path = request.path_qs if request.method == "GET" else "/"
    return see_other(query_url("/signin", next=next_path))


async def _run(request: web.Request, page: Page) -> web.StreamResponse:
    if isinstance(page.requires, Route):
        session = request.get(SESSION)
        if session is None:
            return _sign_in_redirect(request)
        try:
            await authorize(request, page.requires, session.token)
        except grpc.aio.AioRpcError as error:
            if error.code() != grpc.StatusCode.UNAUTHENTICATED:
                raise
            # The token was revoked or expired: the session ends with it.
            response = _sign_in_redirect(request)
            clear_cookie(request, response, SESSION_COOKIE)
            return response
    elif page.requires == Guard.SESSION and request.get(SESSION) is None:
        return _sign_in_redirect(request)
    return await page.handler(request)


def guarded(page: Page) -> Handler:
    async def handle(request: web.Request) -> web.StreamResponse:
        cookie = request.cookies.get(SESSION_COOKIE)
        session = request.app[SESSIONS].open(cookie) if cookie else None
        if session is not None:
            request[SESSION] = session
        bind_nonce(request, session.csrf_nonce if session else None)
        try:
            needs_session = page.requires != Guard.PUBLIC
            if session is not None and needs_session and await is_signed_out(request, session):
                # Signed out (maybe elsewhere): the cookie is as good as forged.
                session = None
                del request[SESSION]
                bind_nonce(request, None)
            response = await _run(request, page)
        except grpc.aio.AioRpcError as error:
            response = rpc_error_page(request, error)
        except ApiError as error:
            response = error_page(request, error.status, error.message)
        except web.HTTPException as error:
            if error.status < 400:
                raise
            response = error_page(request, error.status, f"{error.reason}: {error.text or ''}")
        except (asyncio.CancelledError, ConnectionResetError):
            raise
        except Exception:
            log.exception("console_page_failed", path=request.path)
            response = error_page(request, 500, GENERIC_SERVER_ERROR)
        if response.prepared:
            return response
        if cookie and session is None:
            # Forged, damaged or expired: drop it.
            clear_cookie(request, response, SESSION_COOKIE)
        if request[NEW_CSRF_NONCE] and CSRF_COOKIE not in response.cookies:
            set_cookie(request, response, CSRF_COOKIE, request[CSRF_NONCE])
        secure(response)
        return response

    handle.__name__ = page.handler.__name__
    handle.__doc__ = page.handler.__doc__
    return handle


async def _open_live_streams(app: web.Application) -> None:
    app[STOPPING] = asyncio.Event()


async def _close_live_streams(app: web.Application) -> None:
    """Live timelines end at once on shutdown instead of holding it up."""
    app[STOPPING].set()


def add_console(app: web.Application) -> None:
    """Serve the console at `/` (call after the REST routes: its 404 page comes last)."""
    app[SESSIONS] = Sessions.from_settings(app[SETTINGS])
    app[TEMPLATES] = build_templates()
    app[STATIC] = static_files()
    app.on_startup.append(_open_live_streams)
    app.on_shutdown.append(_close_live_streams)
    for page in PAGES:
        app.router.add_route(page.method, page.path, guarded(page), name=page.name)

"""CSRF protection of the console's forms.

Every POST must carry `csrf_token`, an HMAC of the nonce bound to the browser (the session's,
or before sign-in the `cairn_csrf` cookie's) that only the gateway can compute; a request
another site's page makes fails that check. A cross-origin `Origin` or
`Sec-Fetch-Site: cross-site` is refused first, whatever the token says.
"""

from __future__ import annotations

from aiohttp import web

from gateway.bodies import read_form
from gateway.console.session import CSRF_COOKIE, Sessions, is_nonce, new_nonce
from gateway.errors import ApiError

SESSIONS = web.AppKey("console_sessions", Sessions)
# The nonce this request's forms are bound to, and whether it is new (a cookie to set).
CSRF_NONCE = web.RequestKey("console_csrf_nonce", str)
NEW_CSRF_NONCE = web.RequestKey("console_new_csrf_nonce", bool)
FIELD = "csrf_token"
REFUSED = "Forbidden: the form is stale or came from another site; reload the page and retry."


def bind_nonce(request: web.Request, session_nonce: str | None) -> None:
    """Choose the nonce of this request's forms: the session's, else the browser's cookie."""
    if session_nonce:
        request[CSRF_NONCE] = session_nonce
        request[NEW_CSRF_NONCE] = False
        return
    cookie = request.cookies.get(CSRF_COOKIE, "")
    if is_nonce(cookie):
        request[CSRF_NONCE] = cookie
        request[NEW_CSRF_NONCE] = False
    else:
        request[CSRF_NONCE] = new_nonce()
        request[NEW_CSRF_NONCE] = True


def form_token(request: web.Request) -> str:
    """The hidden `csrf_token` value for forms on this page."""
    return request.app[SESSIONS].csrf_token(request[CSRF_NONCE])


def _same_origin(request: web.Request) -> bool:
    origin = request.headers.get("Origin")
    if origin is not None and origin != f"{request.scheme}://{request.host}":
        return False
    return request.headers.get("Sec-Fetch-Site", "same-origin") in ("same-origin", "none")


async def checked_form(request: web.Request) -> dict[str, str]:
    """The posted form, once its CSRF token and origin check out; 403 otherwise."""
    if not _same_origin(request):
        raise ApiError(403, REFUSED)
    form = await read_form(request)
    supplied = form.get(FIELD)
    if request[NEW_CSRF_NONCE] or not isinstance(supplied, str):
        raise ApiError(403, REFUSED)
    if not request.app[SESSIONS].is_csrf_token(request[CSRF_NONCE], supplied):
        raise ApiError(403, REFUSED)
    return {key: value for key, value in form.items() if isinstance(value, str)}

"""Console single sign-on with OpenID Connect (`CAIRN_OIDC_ISSUER`, `CAIRN_OIDC_CLIENT_ID`,
`CAIRN_OIDC_CLIENT_SECRET`): the authorization-code flow with PKCE, state and nonce.

`/signin/oidc` draws the state, nonce and PKCE verifier, keeps them in a short-lived cookie
bound to the console's key, and sends the browser to the provider. `/signin/oidc/callback`
checks the state against that cookie, and the identity service redeems the code, validates
the ID token, provisions the user and issues the session's token; the session then starts
exactly as a token sign-in does. The flow cookie is SameSite=Lax: the provider's redirect back
is a cross-site navigation, which a Strict cookie would not survive.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from urllib.parse import urlencode

import grpc
import orjson
from aiohttp import web

from gateway.console.csrf import SESSIONS
from gateway.console.handlers import safe_next, see_other
from gateway.console.render import render
from gateway.console.session import CSRF_COOKIE, SESSION_COOKIE, set_cookie
from gateway.console.signin_options import provider_name
from gateway.context import BACKENDS, SETTINGS, call_options, public_url
from protos.cairn.v1 import oidc_pb2

FLOW_COOKIE = "cairn_oidc_flow"
FLOW_PATH = "/signin/oidc"
FLOW_SECONDS = 600
_REFUSALS = {
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.FAILED_PRECONDITION: 409,
}


def _b64(value: bytes) -> str:
    return base64.urlsafe_b64encode(value).rstrip(b"=").decode()


def _redirect_uri(request: web.Request) -> str:
    return f"{public_url(request)}{FLOW_PATH}/callback"


def _seal_flow(request: web.Request, flow: dict[str, object]) -> str:
    payload = _b64(orjson.dumps(flow))
    return f"{payload}.{request.app[SESSIONS].csrf_token('oidc-flow:' + payload)}"


def _open_flow(request: web.Request) -> dict[str, object] | None:
    value = request.cookies.get(FLOW_COOKIE, "")
    payload, _, mac = value.partition(".")
    if not payload or not request.app[SESSIONS].is_csrf_token("oidc-flow:" + payload, mac):
        return None
    try:
        flow = orjson.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (ValueError, orjson.JSONDecodeError):
        return None
    if not isinstance(flow, dict) or not isinstance(flow.get("e"), int) or flow["e"] < time.time():
        return None
    return flow


def _problem(request: web.Request, status: int, problem: str) -> web.Response:
    response = render(
        request,
        "signin.html",
        status=status,
        next="/",
        problem=problem,
        sso_name=provider_name(request.app[SETTINGS]),
    )
    response.del_cookie(FLOW_COOKIE, path=FLOW_PATH)
    return response


async def sign_in_with_oidc(request: web.Request) -> web.Response:
    """Send the browser to the provider, remembering state, nonce and PKCE verifier."""
    if not provider_name(request.app[SETTINGS]):
        raise web.HTTPNotFound()
    options = await request.app[BACKENDS].oidc.GetSignInOptions(
        oidc_pb2.GetSignInOptionsRequest(), **call_options(request)
    )
    state, nonce, verifier = (secrets.token_urlsafe(32) for _ in range(3))
    flow = {
        "s": state,
        "n": nonce,
        "v": verifier,
        "x": safe_next(request.query.get("next")),
        "e": int(time.time()) + FLOW_SECONDS,
    }
    query = urlencode(
        {
            "response_type": "code",
            "client_id": options.client_id,
            "redirect_uri": _redirect_uri(request),
            "scope": "openid email profile",
            "state": state,
            "nonce": nonce,
            "code_challenge": _b64(hashlib.sha256(verifier.encode()).digest()),
            "code_challenge_method": "S256",
        }
    )
    separator = "&" if "?" in options.authorization_endpoint else "?"
    response = web.Response(
        status=302, headers={"Location": f"{options.authorization_endpoint}{separator}{query}"}
    )
    response.set_cookie(
        FLOW_COOKIE,
        _seal_flow(request, flow),
        path=FLOW_PATH,
        max_age=FLOW_SECONDS,
        httponly=True,
        samesite="Lax",
        secure=request.secure,
    )
    return response


async def oidc_callback(request: web.Request) -> web.Response:
    """Check the state, let identity redeem the code, and start the console session."""
    if not provider_name(request.app[SETTINGS]):
        raise web.HTTPNotFound()
    flow = _open_flow(request)
    state = request.query.get("state", "")
    if flow is None or not hmac.compare_digest(str(flow.get("s", "")), state):
        return _problem(
            request, 400, "The sign-in could not be completed (its state does not match); retry."
        )
    if "error" in request.query:
        error = request.query["error"]
        shown = error if error.isidentifier() and len(error) <= 64 else "error"
        return _problem(request, 401, f"The provider refused the sign-in ({shown}).")
    try:
        signed_in = await request.app[BACKENDS].oidc.CompleteSignIn(
            oidc_pb2.CompleteSignInRequest(
                code=request.query.get("code", ""),
                code_verifier=str(flow["v"]),
                redirect_uri=_redirect_uri(request),
                nonce=str(flow["n"]),
            ),
            **call_options(request),
        )
    except grpc.aio.AioRpcError as error:
        status = _REFUSALS.get(error.code())
        if status is None:
            raise
        return _problem(request, status, error.details() or "The sign-in was refused.")
    sessions = request.app[SESSIONS]
    response = see_other(safe_next(str(flow.get("x", "/"))))
    set_cookie(request, response, SESSION_COOKIE, sessions.seal(sessions.start(signed_in.token)))
    response.del_cookie(CSRF_COOKIE, path="/")
    response.del_cookie(FLOW_COOKIE, path=FLOW_PATH)
    return response

"""Pages about people: an organization's members and invitations (org admins invite by login
or email, see each new link once, and cancel), the site's users (site admins create, disable
and enable them), and the public page that redeems an invitation link.

Every page is authorised by the rule of the REST route it mirrors and calls the same RPCs;
changes are recorded in the audit log under the REST route's event.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import grpc
import orjson
from aiohttp import web

from gateway import audit_events as events
from gateway.audit_middleware import record_console_call
from gateway.console.csrf import SESSIONS, checked_form
from gateway.console.render import render
from gateway.console.session import CSRF_COOKIE, SESSION_COOKIE, clear_cookie, set_cookie
from gateway.context import BACKENDS, PRINCIPAL, call_options
from gateway.errors import ApiError, rpc_error_response
from gateway.invitations import invite_link, login_command, send_invitations
from gateway.views import ROLES_BY_LABEL
from protos.cairn.v1 import common_pb2, identity_pb2

MAX_FIELD_CHARS = 400
USERS_PAGE_SIZE = 100
# Link errors show as pages; these keep the form, with the message, so the person can retry.
_RETRYABLE = frozenset({grpc.StatusCode.ALREADY_EXISTS, grpc.StatusCode.INVALID_ARGUMENT})
INVITE_ROLES = ("member", "admin", "viewer")


def see_other(location: str) -> web.Response:
    return web.Response(status=303, headers={"Location": location})


def _field(form: dict[str, str], name: str) -> str:
    return form.get(name, "").strip()[:MAX_FIELD_CHARS]


def _public_message(error: grpc.aio.AioRpcError) -> tuple[int, str]:
    """The status and public message the REST API would answer."""
    response = rpc_error_response(error)
    body = orjson.loads(response.body) if isinstance(response.body, bytes) else {}
    return response.status, str(body.get("message", ""))


# -- an organization's people --------------------------------------------------------------


@dataclass(frozen=True)
class NewLink:
    """A link just created, shown this once."""

    email: str
    url: str


async def _people_page(
    request: web.Request,
    *,
    status: int = 200,
    problem: str = "",
    new_links: tuple[NewLink, ...] = (),
    invited_logins: tuple[str, ...] = (),
) -> web.Response:
    org = request.match_info["orgName"]
    backends = request.app[BACKENDS]
    members, invites = await asyncio.gather(
        backends.identity.ListMembers(
            identity_pb2.ListMembersRequest(organization=org), **call_options(request)
        ),
        backends.identity.ListInvites(
            identity_pb2.ListInvitesRequest(organization=org), **call_options(request)
        ),
    )
    return render(
        request,
        "people.html",
        status=status,
        org=org,
        members=sorted(members.members, key=lambda m: m.user.login),
        invites=list(invites.invites),
        roles=INVITE_ROLES,
        problem=problem,
        new_links=new_links,
        invited_logins=invited_logins,
        now=time.time(),
    )


async def people(request: web.Request) -> web.Response:
    """`/orgs/{org}/people`: members, pending invitations and the invite form
    (`GET /api/orgs/{orgName}/invites`, org admins)."""
    return await _people_page(request)


async def invite(request: web.Request) -> web.Response:
    """Invite a registered user (login or email) or an email address without an account
    (`POST /api/orgs/{orgName}/invites/batch`); a new link is shown this once."""
    form = await checked_form(request)
    recipient = _field(form, "recipient")
    role_label = _field(form, "role") or "member"
    if not recipient or role_label not in INVITE_ROLES:
        return await _people_page(
            request, status=400, problem="Enter a login or an email address, and a role."
        )
    try:
        reply = await request.app[BACKENDS].identity.CreateInvites(
            identity_pb2.CreateInvitesRequest(
                organization=request.match_info["orgName"],
                targets=[
                    identity_pb2.InviteTarget(recipient=recipient, role=ROLES_BY_LABEL[role_label])
                ],
                invited_by=request[PRINCIPAL].login,
            ),
            **call_options(request),
        )
    except grpc.aio.AioRpcError as error:
        status, message = _public_message(error)
        if status >= 500:
            raise
        record_console_call(request, events.INVITE_CREATE, status)
        return await _people_page(request, status=status, problem=message)
    record_console_call(request, events.INVITE_CREATE, 200)
    links = tuple(
        NewLink(email=i.email, url=invite_link(request, i.link_secret))
        for i in reply.invites
        if i.link_secret
    )
    await send_invitations(
        request, [(i, link.url) for i, link in zip(reply.invites, links, strict=False)]
    )
    logins = tuple(i.user.login for i in reply.invites if not i.link_secret)
    return await _people_page(request, new_links=links, invited_logins=logins)


async def cancel_invite(request: web.Request) -> web.Response:
    """Withdraw a pending invitation (`DELETE /api/orgs/{orgName}/invites/{inviteID}`)."""
    form = await checked_form(request)
    org = request.match_info["orgName"]
    try:
        await request.app[BACKENDS].identity.CancelInvite(
            identity_pb2.CancelInviteRequest(organization=org, invite_id=_field(form, "invite")),
            **call_options(request),
        )
    except grpc.aio.AioRpcError as error:
        record_console_call(request, events.INVITE_CANCEL, rpc_error_response(error).status)
        raise
    record_console_call(request, events.INVITE_CANCEL, 204)
    return see_other(f"/orgs/{org}/people")


# -- the site's users ----------------------------------------------------------------------

_STATES = {
    "": identity_pb2.USER_STATE_UNSPECIFIED,
    "enabled": identity_pb2.USER_STATE_ENABLED,
    "disabled": identity_pb2.USER_STATE_DISABLED,
}


async def _users_page(
    request: web.Request,
    *,
    status: int = 200,
    problem: str = "",
    created: identity_pb2.RegisterUserResponse | None = None,
) -> web.Response:
    query = request.query.get("query", "").strip()[:MAX_FIELD_CHARS]
    state = request.query.get("state", "")
    if state not in _STATES:
        raise ApiError(400, "Bad Request: 'state' must be enabled or disabled")
    after = request.query.get("after", "")[:MAX_FIELD_CHARS]
    reply = await request.app[BACKENDS].identity.ListUsers(
        identity_pb2.ListUsersRequest(
            query=query,
            state=_STATES[state],
            page_size=USERS_PAGE_SIZE,
            continuation_token=after,
        ),
        **call_options(request),
    )
    return render(
        request,
        "users.html",
        status=status,
        users=list(reply.users),
        next_after=reply.continuation_token,
        query=query,
        state=state,
        problem=problem,
        created=created,
        login_command=login_command(request),
    )


async def users(request: web.Request) -> web.Response:
    """`/users`: the site's users, filtered by login or email and state (site admins,
    `GET /api/admin/users`)."""
    return await _users_page(request)


async def create_user(request: web.Request) -> web.Response:
    """Create a user, with their first access token shown this once when asked
    (`POST /api/admin/users`)."""
    form = await checked_form(request)
    login = _field(form, "login")
    try:
        created = await request.app[BACKENDS].identity.RegisterUser(
            identity_pb2.RegisterUserRequest(
                login=login,
                name=_field(form, "name"),
                email=_field(form, "email"),
                issue_token=form.get("issue_token") == "on",
            ),
            **call_options(request),
        )
    except grpc.aio.AioRpcError as error:
        status, message = _public_message(error)
        if status >= 500:
            raise
        record_console_call(request, events.USER_CREATE, status, login)
        return await _users_page(request, status=status, problem=message)
    record_console_call(request, events.USER_CREATE, 201, login)
    return await _users_page(request, created=created)


async def disable_user(request: web.Request) -> web.Response:
    """`POST /api/admin/users/{login}/disable`: every token and session of theirs ends."""
    return await _set_disabled(request, is_disabled=True)


async def enable_user(request: web.Request) -> web.Response:
    """`POST /api/admin/users/{login}/enable`."""
    return await _set_disabled(request, is_disabled=False)


async def _set_disabled(request: web.Request, *, is_disabled: bool) -> web.Response:
    await checked_form(request)
    kind = events.USER_DISABLE if is_disabled else events.USER_ENABLE
    try:
        await request.app[BACKENDS].identity.SetUserDisabled(
            identity_pb2.SetUserDisabledRequest(
                login=request.match_info["login"], disabled=is_disabled
            ),
            **call_options(request),
        )
    except grpc.aio.AioRpcError as error:
        status, message = _public_message(error)
        record_console_call(request, kind, status)
        if status >= 500:
            raise
        return await _users_page(request, status=status, problem=message)
    record_console_call(request, kind, 200)
    return see_other("/users")


async def reissue_token(request: web.Request) -> web.Response:
    """Enable the user (if disabled) with a new first token, shown this once
    (`POST /api/admin/users/{login}/enable` with `issueToken`)."""
    await checked_form(request)
    login = request.match_info["login"]
    try:
        reply = await request.app[BACKENDS].identity.SetUserDisabled(
            identity_pb2.SetUserDisabledRequest(login=login, disabled=False, issue_token=True),
            **call_options(request),
        )
    except grpc.aio.AioRpcError as error:
        record_console_call(request, events.USER_ENABLE, rpc_error_response(error).status)
        raise
    record_console_call(request, events.USER_ENABLE, 200)
    created = identity_pb2.RegisterUserResponse(
        user=reply.user, token=reply.token, token_id=reply.token_id
    )
    return await _users_page(request, created=created)


# -- joining through an invitation link ----------------------------------------------------


async def _link(request: web.Request, code: str) -> identity_pb2.InviteLink:
    link: identity_pb2.InviteLink = await request.app[BACKENDS].identity.GetInviteLink(
        identity_pb2.GetInviteLinkRequest(secret=code), **call_options(request)
    )
    return link


def _join_form(
    request: web.Request,
    link: identity_pb2.InviteLink,
    code: str,
    *,
    status: int = 200,
    problem: str = "",
    login: str = "",
    name: str = "",
) -> web.Response:
    return render(
        request,
        "join.html",
        status=status,
        link=link,
        role=_role_label(link.role),
        code=code,
        problem=problem,
        login=login,
        name=name,
    )


def _role_label(role: common_pb2.Role.ValueType) -> str:
    return {v: k for k, v in ROLES_BY_LABEL.items()}.get(role, "member")


async def join_form(request: web.Request) -> web.Response:
    """`/join?code=…`: the organization and role an invitation link offers, and the form
    to choose a login (no session needed)."""
    code = request.query.get("code", "")[:MAX_FIELD_CHARS]
    if not code:
        raise ApiError(404, "Not Found: this invitation link is not valid (wrong, or cancelled)")
    return _join_form(request, await _link(request, code), code)


async def join(request: web.Request) -> web.Response:
    """Redeem the link (`POST /api/invites/accept`): the new user's first access token is
    shown this once, and the browser is signed in with it."""
    form = await checked_form(request)
    code = form.get("code", "")[:MAX_FIELD_CHARS]
    login = _field(form, "login")
    name = _field(form, "name")
    link = await _link(request, code)
    try:
        joined = await request.app[BACKENDS].identity.RedeemInviteLink(
            identity_pb2.RedeemInviteLinkRequest(secret=code, login=login, name=name),
            **call_options(request),
        )
    except grpc.aio.AioRpcError as error:
        status, message = _public_message(error)
        record_console_call(request, events.INVITE_LINK_ACCEPT, status, login)
        if error.code() not in _RETRYABLE:
            raise
        return _join_form(
            request, link, code, status=status, problem=message, login=login, name=name
        )
    record_console_call(request, events.INVITE_LINK_ACCEPT, 201, login)
    response = render(
        request,
        "joined.html",
        status=201,
        login=joined.user.login,
        organization=joined.membership.organization,
        role=_role_label(joined.membership.role),
        token=joined.token,
        login_command=login_command(request),
    )
    sessions = request.app[SESSIONS]
    set_cookie(request, response, SESSION_COOKIE, sessions.seal(sessions.start(joined.token)))
    clear_cookie(request, response, CSRF_COOKIE)
    return response

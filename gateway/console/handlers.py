"""Console pages: organizations, stacks, a stack, its history, an update (live while it
runs), a resource, agent pools and the copilot; sign-in and sign-out.

Each page is authorised before it runs exactly as the REST route it mirrors (see
`gateway/console/routes.py`), then reads the same services the API reads.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any

import grpc
import orjson
from aiohttp import web

from gateway.console.admin import is_admin, organization_people
from gateway.console.csrf import SESSIONS, checked_form
from gateway.console.deployment import (
    Deployment,
    DeploymentError,
    parse_deployment,
    pretty,
    urn_name,
)
from gateway.console.issuers import organization_issuers
from gateway.console.markdown import markdown_html
from gateway.console.render import duration, error_page, render, secure
from gateway.console.session import (
    CSRF_COOKIE,
    SESSION_COOKIE,
    Session,
    clear_cookie,
    set_cookie,
)
from gateway.console.signin_options import provider_name
from gateway.console.timeline import ERROR, WARNING, changes_by_op, entries
from gateway.context import (
    BACKENDS,
    PRINCIPAL,
    SETTINGS,
    STACK,
    TOKEN,
    call_options,
    public_url,
)
from gateway.errors import ApiError
from gateway.middleware import authorize
from gateway.routes import ROUTES_BY_OPERATION
from gateway.views import deployment_links, readable_stacks
from protos.cairn.v1 import (
    agent_pools_pb2,
    console_pb2,
    copilot_pb2,
    schedules_pb2,
    stacks_pb2,
    updates_pb2,
)

SESSION = web.RequestKey("console_session", Session)
# Set when the gateway shuts down: live streams end.
STOPPING = web.AppKey("console_stopping", asyncio.Event)

STACKS_PAGE_SIZE = 500
MAX_STACK_PAGES = 10
SHOWN_STACKS = 100
HISTORY_PAGE_SIZE = 20
RECENT_UPDATES = 5
EVENTS_PAGE_SIZE = 1000
MAX_EVENT_PAGES = 20
LIVE_POLL_SECONDS = 0.5
# A live stream ends after this long; the browser's EventSource reconnects where it stopped.
LIVE_MAX_SECONDS = 300.0
MAX_QUERY_CHARS = 4000
RUNNING_RESULTS = frozenset({"in-progress", "not-started"})
_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,100}$")
STATIC_TYPES = {".css": "text/css", ".js": "text/javascript", ".svg": "image/svg+xml"}


def safe_next(value: str | None) -> str:
    """A local path to return to after sign-in; anything else (other sites) becomes '/'."""
    if not value or not value.startswith("/") or value.startswith(("//", "/\\")):
        return "/"
    if any(ord(char) < 0x20 or char == "\\" for char in value):
        return "/"
    return value


def see_other(location: str) -> web.Response:
    return web.Response(status=303, headers={"Location": location})


def _version(request: web.Request) -> int:
    version = int(request.match_info["version"])
    if version < 1:
        raise ApiError(404, "Not Found: versions start at 1")
    return version


def _text_query(request: web.Request, name: str) -> str:
    return request.query.get(name, "").strip()[:200]


# -- sign-in, sign-out, static files, unknown paths -------------------------------------------


async def sign_in_form(request: web.Request) -> web.Response:
    return render(
        request,
        "signin.html",
        next=safe_next(request.query.get("next")),
        problem="",
        sso_name=provider_name(request.app[SETTINGS]),
    )


async def sign_in(request: web.Request) -> web.Response:
    """Check the token as `GET /api/user` would, then keep it sealed in the session cookie."""
    form = await checked_form(request)
    token = form.get("token", "").strip()
    next_path = safe_next(form.get("next"))
    problem = ""
    if not token:
        problem = "Enter an access token."
    else:
        try:
            await authorize(request, ROUTES_BY_OPERATION["get_current_user"], token)
        except grpc.aio.AioRpcError as error:
            if error.code() != grpc.StatusCode.UNAUTHENTICATED:
                raise
            problem = "That access token is not valid."
    if problem:
        return render(
            request,
            "signin.html",
            status=401,
            next=next_path,
            problem=problem,
            sso_name=provider_name(request.app[SETTINGS]),
        )
    sessions = request.app[SESSIONS]
    response = see_other(next_path)
    set_cookie(request, response, SESSION_COOKIE, sessions.seal(sessions.start(token)))
    clear_cookie(request, response, CSRF_COOKIE)
    return response


async def sign_out(request: web.Request) -> web.Response:
    """End the session on every gateway, then drop its cookie (a new sign-in draws a new
    CSRF nonce). When the revocation cannot be recorded the cookie stays, and the page says so."""
    session = request.get(SESSION)
    if session is None:
        return see_other("/signin")
    await checked_form(request)
    await request.app[BACKENDS].console_sessions.RevokeSession(
        console_pb2.RevokeSessionRequest(
            session_id=session.session_id, expires_at=session.expires_at
        ),
        **call_options(request),
    )
    response = see_other("/signin")
    clear_cookie(request, response, SESSION_COOKIE)
    return response


async def is_signed_out(request: web.Request, session: Session) -> bool:
    """Whether the session was signed out (from any browser, on any gateway replica)."""
    reply = await request.app[BACKENDS].console_sessions.CheckSession(
        console_pb2.CheckSessionRequest(session_id=session.session_id), **call_options(request)
    )
    return reply.is_revoked


@dataclass(frozen=True)
class StaticFile:
    body: bytes
    content_type: str


def static_files() -> dict[str, StaticFile]:
    """The console's stylesheet, script and images, read once from the package."""
    found: dict[str, StaticFile] = {}
    folder = resources.files("gateway.console").joinpath("static")
    for item in folder.iterdir():
        suffix = "." + item.name.rsplit(".", 1)[-1] if "." in item.name else ""
        if item.is_file() and suffix in STATIC_TYPES:
            found[item.name] = StaticFile(item.read_bytes(), STATIC_TYPES[suffix])
    return found


STATIC = web.AppKey("console_static", dict[str, StaticFile])


async def static(request: web.Request) -> web.Response:
    found = request.app[STATIC].get(request.match_info["name"])
    if found is None:
        raise ApiError(404, "Not Found: no such file")
    response = web.Response(body=found.body, content_type=found.content_type)
    response.headers["Cache-Control"] = "public, max-age=3600"
    return response


async def not_found(request: web.Request) -> web.Response:
    return error_page(request, 404, f"Not Found: no page at {request.path}")


# -- organizations and stacks ------------------------------------------------------------------


async def organizations(request: web.Request) -> web.Response:
    """The caller's organizations (`GET /api/user`'s memberships)."""
    memberships = sorted(request[PRINCIPAL].memberships, key=lambda m: m.organization)
    return render(request, "organizations.html", memberships=memberships)


@dataclass(frozen=True)
class StackRow:
    stack: stacks_pb2.Stack
    state: updates_pb2.StackState
    last_result: str

    @property
    def search_text(self) -> str:
        ref = self.stack.ref
        tags = " ".join(f"{k}={v}" for k, v in self.stack.tags.items())
        return f"{ref.project}/{ref.stack} {tags}".lower()


async def _last_result(request: web.Request, stack_id: str) -> str:
    """The result of a stack's newest update; '' when it never had one."""
    try:
        info = await request.app[BACKENDS].updates.GetUpdate(
            updates_pb2.GetUpdateRequest(stack_id=stack_id, version=0), **call_options(request)
        )
    except grpc.aio.AioRpcError as error:
        if error.code() == grpc.StatusCode.NOT_FOUND:
            return ""
        raise
    return info.result


async def stacks(request: web.Request) -> web.Response:
    """An organization's stacks, filtered by project, tag (`name` or `name=value`) and name.

    Listed the way `GET /api/user/stacks?organization=` lists them: only organizations the
    caller belongs to are visible.
    """
    org = request.match_info["orgName"]
    project = _text_query(request, "project")
    tag = _text_query(request, "tag")
    name = _text_query(request, "name")
    tag_name, has_value, tag_value = tag.partition("=")
    backends = request.app[BACKENDS]
    visible = [m.organization for m in request[PRINCIPAL].memberships]
    found: list[stacks_pb2.Stack] = []
    token = ""
    is_truncated = False
    for page in range(MAX_STACK_PAGES):
        reply = await backends.stacks.ListStacks(
            stacks_pb2.ListStacksRequest(
                visible_organizations=visible,
                organization=org,
                project=project,
                tag_name=tag_name.strip(),
                tag_value=tag_value.strip() if has_value else None,
                continuation_token=token,
                page_size=STACKS_PAGE_SIZE,
            ),
            **call_options(request),
        )
        found.extend(reply.stacks)
        token = reply.continuation_token
        if not token:
            break
        is_truncated = page == MAX_STACK_PAGES - 1
    found = await readable_stacks(request, found)
    needle = name.lower()
    matching = [s for s in found if needle in f"{s.ref.project}/{s.ref.stack}".lower()]
    shown = matching[:SHOWN_STACKS]
    states: dict[str, updates_pb2.StackState] = {}
    if shown:
        reply_states = await backends.updates.GetStackStates(
            updates_pb2.GetStackStatesRequest(stack_ids=[s.id for s in shown]),
            **call_options(request),
        )
        states = {state.stack_id: state for state in reply_states.states}
    results = await asyncio.gather(
        *(
            _last_result(request, s.id)
            if states.get(s.id, updates_pb2.StackState()).version
            else _no_result()
            for s in shown
        )
    )
    rows = [
        StackRow(stack=s, state=states.get(s.id, updates_pb2.StackState()), last_result=result)
        for s, result in zip(shown, results, strict=True)
    ]
    is_org_admin = is_admin(request)
    return render(
        request,
        "stacks.html",
        org=org,
        rows=rows,
        total=len(matching),
        is_truncated=is_truncated or len(matching) > len(shown),
        filters={"project": project, "tag": tag, "name": name},
        is_admin=is_org_admin,
        people=await organization_people(request, org) if is_org_admin else None,
        issuers=await organization_issuers(request, org) if is_org_admin else None,
    )


async def _no_result() -> str:
    return ""


# -- a stack, its history, an update -----------------------------------------------------------


async def _deployment(request: web.Request, version: int = 0) -> tuple[Deployment, str]:
    """The stack's deployment (0: the current one) and a problem reading it, if any."""
    reply = await request.app[BACKENDS].updates.ExportDeployment(
        updates_pb2.ExportDeploymentRequest(stack_id=request[STACK].id, version=version),
        **call_options(request),
    )
    try:
        return parse_deployment(reply.untyped_deployment), ""
    except DeploymentError as error:
        return Deployment(), str(error)


async def _automation(request: web.Request) -> schedules_pb2.StackDeploymentsMetadata | None:
    """The stack's drift status and paused deployments; None while agent_pools is away (the
    stack's page is still shown, without them)."""
    current = request[STACK]
    try:
        reply: schedules_pb2.StackDeploymentsMetadata = await request.app[
            BACKENDS
        ].schedules.GetStackDeploymentsMetadata(
            schedules_pb2.StackScope(
                stack_id=current.id,
                organization=current.ref.organization,
                project=current.ref.project,
                stack=current.ref.stack,
            ),
            **call_options(request),
        )
    except grpc.aio.AioRpcError as error:
        if error.code() not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
            raise
        return None
    return reply


async def stack(request: web.Request) -> web.Response:
    """Tags, outputs (secrets masked), resources by type, recent updates (`GET S`, export)."""
    current = request[STACK]
    backends = request.app[BACKENDS]
    options = call_options(request)
    states, history, (deployment, problem), automation = await asyncio.gather(
        backends.updates.GetStackStates(
            updates_pb2.GetStackStatesRequest(stack_ids=[current.id]), **options
        ),
        backends.updates.ListUpdates(
            updates_pb2.ListUpdatesRequest(stack_id=current.id, page_size=RECENT_UPDATES, page=1),
            **options,
        ),
        _deployment(request),
        _automation(request),
    )
    query = _text_query(request, "q")
    state = states.states[0] if states.states else updates_pb2.StackState()
    running = [u for u in history.updates if u.result in RUNNING_RESULTS]
    return render(
        request,
        "stack.html",
        stack=current,
        state=state,
        outputs={key: pretty(value) for key, value in deployment.stack_outputs.items()},
        groups=deployment.groups(query),
        resource_total=len(deployment.resources),
        query=query,
        problem=problem,
        updates=history.updates,
        update_total=history.total,
        running=running[0] if running else None,
        automation=automation,
    )


async def updates(request: web.Request) -> web.Response:
    """The stack's update history, newest first (`GET S/updates`)."""
    try:
        page = max(1, int(request.query.get("page", "1")))
    except ValueError:
        page = 1
    current = request[STACK]
    reply = await request.app[BACKENDS].updates.ListUpdates(
        updates_pb2.ListUpdatesRequest(stack_id=current.id, page_size=HISTORY_PAGE_SIZE, page=page),
        **call_options(request),
    )
    pages = max(1, -(-reply.total // HISTORY_PAGE_SIZE))
    return render(
        request,
        "updates.html",
        stack=current,
        updates=reply.updates,
        page=page,
        pages=pages,
        total=reply.total,
    )


async def update(request: web.Request) -> web.Response:
    """Result, duration, changes by kind and the engine events' timeline of one update."""
    current = request[STACK]
    backends = request.app[BACKENDS]
    info = await backends.updates.GetUpdate(
        updates_pb2.GetUpdateRequest(stack_id=current.id, version=_version(request)),
        **call_options(request),
    )
    raw_events: list[bytes] = []
    token = ""
    for _ in range(MAX_EVENT_PAGES):
        reply = await backends.updates.ListEngineEvents(
            updates_pb2.ListEngineEventsRequest(
                stack_id=current.id,
                update_id=info.update_id,
                continuation_token=token,
                page_size=EVENTS_PAGE_SIZE,
            ),
            **call_options(request),
        )
        raw_events.extend(event.data for event in reply.events)
        if reply.continuation_token:
            token = reply.continuation_token
        if not reply.continuation_token or len(reply.events) < EVENTS_PAGE_SIZE:
            break
    timeline = entries(raw_events)
    diagnostics = [
        e for e in timeline if e.severity in (ERROR, WARNING) and e.kind != "resourcePreEvent"
    ]
    is_running = info.result in RUNNING_RESULTS
    links = await deployment_links(request, [info])
    return render(
        request,
        "update.html",
        stack=current,
        info=info,
        deployment=links.get(info.update_id),
        timeline=timeline,
        diagnostics=diagnostics,
        changes=changes_by_op(timeline),
        resource_changes=dict(sorted(info.resource_changes.items())),
        is_running=is_running,
        live_after=token,
    )


def _event(name: str, data: Any, event_id: str = "") -> bytes:
    head = f"id: {event_id}\n" if event_id else ""
    return f"{head}event: {name}\ndata: ".encode() + orjson.dumps(data) + b"\n\n"


def _status(info: updates_pb2.UpdateInfo) -> dict[str, Any]:
    return {
        "result": info.result,
        "duration": duration(info.start_time, info.end_time),
        "resourceChanges": dict(info.resource_changes),
        "isRunning": info.result in RUNNING_RESULTS,
    }


async def update_live(request: web.Request) -> web.StreamResponse:
    """Server-sent events of a running update: new timeline entries, its status, its end.

    Resumes after `Last-Event-ID` (or `?after=`), the next event sequence to send.
    """
    current = request[STACK]
    backends = request.app[BACKENDS]
    version = _version(request)
    token = request.headers.get("Last-Event-ID") or request.query.get("after", "")
    if token and (not token.isdigit() or len(token) > 18):
        raise ApiError(400, "Bad Request: 'after' must be an event sequence number")
    info = await backends.updates.GetUpdate(
        updates_pb2.GetUpdateRequest(stack_id=current.id, version=version),
        **call_options(request),
    )
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "X-Accel-Buffering": "no"}
    )
    secure(response)
    await response.prepare(request)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + LIVE_MAX_SECONDS
    last_status: dict[str, Any] | None = None
    stopping = request.app[STOPPING]
    with contextlib.suppress(ConnectionResetError):
        while loop.time() < deadline and not stopping.is_set():
            try:
                reply = await backends.updates.ListEngineEvents(
                    updates_pb2.ListEngineEventsRequest(
                        stack_id=current.id,
                        update_id=info.update_id,
                        continuation_token=token,
                        page_size=EVENTS_PAGE_SIZE,
                    ),
                    **call_options(request),
                )
                info = await backends.updates.GetUpdate(
                    updates_pb2.GetUpdateRequest(stack_id=current.id, version=version),
                    **call_options(request),
                )
            except grpc.aio.AioRpcError as error:
                await response.write(_event("failure", {"message": error.details() or ""}))
                break
            for item in entries(event.data for event in reply.events):
                await response.write(_event("entry", item.as_json(), str(item.sequence + 1)))
            if reply.continuation_token:
                token = reply.continuation_token
            status = _status(info)
            if status != last_status:
                await response.write(_event("status", status))
                last_status = status
            if not reply.continuation_token:
                await response.write(_event("end", status))
                break
            if len(reply.events) < EVENTS_PAGE_SIZE:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stopping.wait(), LIVE_POLL_SECONDS)
    return response


async def resource(request: web.Request) -> web.Response:
    """One resource of the current deployment (or `?version=`): inputs, outputs, relations."""
    urn = request.query.get("urn", "")
    if not urn:
        raise ApiError(400, "Bad Request: name a resource with ?urn=")
    try:
        version = max(0, int(request.query.get("version", "0")))
    except ValueError:
        raise ApiError(400, "Bad Request: 'version' must be a number") from None
    deployment, problem = await _deployment(request, version)
    found = deployment.find(urn)
    if found is None:
        message = problem or f"Not Found: no resource '{urn_name(urn)}' in this stack"
        raise ApiError(404, message)
    parent = deployment.find(found.parent) if found.parent else None
    provider = deployment.find(found.provider_urn) if found.provider_urn else None
    return render(
        request,
        "resource.html",
        stack=request[STACK],
        resource=found,
        parent=parent,
        provider=provider,
        dependencies=[(urn, deployment.find(urn)) for urn in found.dependencies],
        children=deployment.children(found.urn),
        dependents=deployment.dependents(found.urn),
        inputs={key: pretty(value) for key, value in found.inputs.items()},
        outputs={key: pretty(value) for key, value in found.outputs.items()},
        version=version,
    )


# -- agent pools and the copilot ---------------------------------------------------------------


async def agent_pools(request: web.Request) -> web.Response:
    """The organization's agent pools and their agents (`GET /api/orgs/{org}/agent-pools`)."""
    org = request.match_info["orgName"]
    backends = request.app[BACKENDS]
    listed = await backends.agent_pools.ListPools(
        agent_pools_pb2.ListPoolsRequest(organization=org), **call_options(request)
    )
    details = await asyncio.gather(
        *(
            backends.agent_pools.GetPool(
                agent_pools_pb2.GetPoolRequest(organization=org, pool_id=pool.id),
                **call_options(request),
            )
            for pool in listed.pools
        )
    )
    return render(request, "agent_pools.html", org=org, pools=details, now=time.time())


@dataclass(frozen=True)
class ChatContext:
    """What a question is about: an organization, maybe a stack, maybe one of its updates."""

    organization: str = ""
    project: str = ""
    stack: str = ""
    version: int = 0

    def url(self, console_url: str) -> str:
        """The context as the copilot reads it: a console URL in the hosted console's layout."""
        if not (self.organization and self.project and self.stack):
            return ""
        path = f"{console_url}/{self.organization}/{self.project}/{self.stack}"
        return f"{path}/updates/{self.version}" if self.version else path


def _chat_context(values: Mapping[str, str], orgs: list[str]) -> ChatContext:
    """Context from a query or form; names the copilot could not read are dropped."""
    organization = values.get("org", "")
    if organization not in orgs:
        return ChatContext(organization=orgs[0] if orgs else "")
    project, stack_name = values.get("project", ""), values.get("stack", "")
    if not (_NAME.match(project) and _NAME.match(stack_name)):
        return ChatContext(organization=organization)
    version = values.get("version", "")
    return ChatContext(
        organization=organization,
        project=project,
        stack=stack_name,
        version=int(version) if version.isdigit() and len(version) < 10 else 0,
    )


async def copilot(request: web.Request) -> web.Response:
    """The chat panel; `?org=&project=&stack=&version=` says what the question is about."""
    orgs = sorted(m.organization for m in request[PRINCIPAL].memberships)
    return render(
        request,
        "copilot.html",
        orgs=orgs,
        context=_chat_context(request.query, orgs),
        conversation_id="",
        messages=[],
    )


def _chat_message(message: copilot_pb2.ChatMessage) -> dict[str, Any]:
    """A message as the page shows it: answers as safe Markdown, programs as code."""
    shown: dict[str, Any] = {"role": message.role, "kind": message.kind, "text": message.text}
    if message.kind == "response" and message.role == "assistant":
        shown["html"] = markdown_html(message.text)
    elif message.kind == "program":
        try:
            program = orjson.loads(message.program or b"{}")
        except orjson.JSONDecodeError:
            program = {}
        if not isinstance(program, dict):
            program = {}
        plan = program.get("plan")
        instructions = plan.get("instructions", "") if isinstance(plan, dict) else ""
        shown["html"] = markdown_html(str(instructions))
        shown["code"] = str(program.get("code", ""))
        shown["language"] = str(program.get("language", ""))
    return shown


async def copilot_chat(request: web.Request) -> web.Response:
    """Ask the copilot (the RPC behind `POST /api/ai/chat/preview`); show the conversation."""
    form = await checked_form(request)
    query = form.get("query", "").strip()
    if not query or len(query) > MAX_QUERY_CHARS:
        raise ApiError(400, f"Bad Request: ask a question of 1 to {MAX_QUERY_CHARS} characters")
    orgs = sorted(m.organization for m in request[PRINCIPAL].memberships)
    context = _chat_context(form, orgs)
    console_url = public_url(request)
    reply = await request.app[BACKENDS].copilot.Chat(
        copilot_pb2.ChatRequest(
            query=query,
            organization=context.organization,
            url=context.url(console_url),
            conversation_id=form.get("conversation_id", "")[:200],
            visible_organizations=orgs,
            console_url=console_url,
            client="console",
            token=request[TOKEN],
        ),
        **call_options(request),
    )
    messages = [_chat_message(m) for m in reply.messages]
    return render(
        request,
        "copilot.html",
        orgs=orgs,
        context=context,
        conversation_id=reply.conversation_id,
        messages=messages,
    )

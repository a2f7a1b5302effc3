"""Pages and sections for organization admins: the audit log (with its CSV/JSON export) and the
organization page's read-only "Members & teams".

The audit pages are authorised by the REST audit routes' own rules (org admins only), and
read the same AuditService RPCs those routes call.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from aiohttp import web

from gateway.audit import flush_recent
from gateway.audit_policy import AUDIT_POLICY
from gateway.audit_records import EXPORT_FORMATS, MICROS, actor_kind, export_response
from gateway.console.render import render
from gateway.context import BACKENDS, ROLE, call_options
from gateway.errors import ApiError
from gateway.views import organization_stacks
from protos.cairn.v1 import audit_pb2, common_pb2, identity_pb2

AUDIT_PAGE_SIZE = 50
MAX_AUDIT_PAGE_SIZE = 200
MAX_TOKEN_CHARS = 1000
SHOWN_MEMBERS = 100
PERMISSION_NAMES: dict[int, str] = {
    identity_pb2.STACK_PERMISSION_READ: "read",
    identity_pb2.STACK_PERMISSION_WRITE: "write",
    identity_pb2.STACK_PERMISSION_ADMIN: "admin",
}


def is_admin(request: web.Request) -> bool:
    """Whether the caller is an admin of the page's organization (as `authorize` found)."""
    return request.get(ROLE) == common_pb2.ROLE_ADMIN


# -- the audit log ------------------------------------------------------------------------------


@dataclass(frozen=True)
class AuditQuery:
    """The page's filters as typed: a day range (UTC, both inclusive), a login, an event."""

    since: date | None = None
    until: date | None = None
    user: str = ""
    event: str = ""

    def audit_filter(self, organization: str) -> audit_pb2.AuditFilter:
        first, last = self.since, self.until
        if first and last and first > last:
            first, last = last, first
        return audit_pb2.AuditFilter(
            organization=organization,
            since_micros=_day_micros(first) if first else 0,
            until_micros=_day_micros(last + timedelta(days=1)) if last else 0,
            user_login=self.user,
            event=self.event,
        )

    def params(self) -> dict[str, str]:
        """The filters as query parameters, for links that keep them."""
        return {
            "from": self.since.isoformat() if self.since else "",
            "to": self.until.isoformat() if self.until else "",
            "user": self.user,
            "event": self.event,
        }

    @property
    def is_filtered(self) -> bool:
        return any(self.params().values())


def _day_micros(day: date) -> int:
    return int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()) * MICROS


def _day(request: web.Request, name: str) -> date | None:
    value = request.query.get(name, "").strip()
    if not value:
        return None
    try:
        if len(value) > 10:
            raise ValueError(value)
        return date.fromisoformat(value)
    except ValueError:
        raise ApiError(400, f"Bad Request: '{name}' must be a date like 2024-05-31") from None


def audit_query(request: web.Request) -> AuditQuery:
    """The filters of an audit page or export; 400 for a malformed date or unknown event."""
    event = request.query.get("event", "").strip()
    if event and event not in request.app[AUDIT_POLICY].names():
        raise ApiError(400, f"Bad Request: unknown event type '{event[:100]}'")
    return AuditQuery(
        since=_day(request, "from"),
        until=_day(request, "to"),
        user=request.query.get("user", "").strip()[:200],
        event=event,
    )


def _page_size(request: web.Request) -> int:
    value = request.query.get("size", "")
    if not value:
        return AUDIT_PAGE_SIZE
    if not value.isdigit() or not 1 <= int(value) <= MAX_AUDIT_PAGE_SIZE:
        raise ApiError(400, f"Bad Request: 'size' must be 1 to {MAX_AUDIT_PAGE_SIZE}")
    return int(value)


@dataclass(frozen=True)
class AuditRow:
    """One entry as the page shows it."""

    entry: audit_pb2.AuditEvent

    @property
    def seconds(self) -> float:
        return self.entry.time_micros / MICROS

    @property
    def actor(self) -> str:
        entry = self.entry
        if entry.actor_kind == audit_pb2.AUDIT_ACTOR_KIND_USER:
            return entry.actor_login or entry.actor_name
        return actor_kind(entry)

    @property
    def actor_name(self) -> str:
        """The user's display name when it says more than the login."""
        entry = self.entry
        is_user = entry.actor_kind == audit_pb2.AUDIT_ACTOR_KIND_USER
        return entry.actor_name if is_user and entry.actor_name != entry.actor_login else ""

    @property
    def token(self) -> str:
        """The access token used: its name, else its id."""
        return self.entry.token_name or self.entry.token_id

    @property
    def summary(self) -> str:
        """The description without the target, which has a column of its own."""
        entry = self.entry
        if entry.target:
            return entry.description.replace(f": {entry.target}", "", 1)
        return entry.description

    @property
    def is_refused(self) -> bool:
        return self.entry.status >= 400


async def audit_log(request: web.Request) -> web.Response:
    """An organization's audit log, newest first, filtered and paged
    (`GET /api/orgs/{orgName}/auditlogs`)."""
    org = request.match_info["orgName"]
    query = audit_query(request)
    size = _page_size(request)
    after = request.query.get("after", "")[:MAX_TOKEN_CHARS]
    backends = request.app[BACKENDS]
    await flush_recent(request)
    reply, members = await asyncio.gather(
        backends.audit.ListAuditEvents(
            audit_pb2.ListAuditEventsRequest(
                filter=query.audit_filter(org), continuation_token=after, page_size=size
            ),
            **call_options(request),
        ),
        backends.identity.ListMembers(
            identity_pb2.ListMembersRequest(organization=org), **call_options(request)
        ),
    )
    return render(
        request,
        "audit.html",
        org=org,
        query=query,
        rows=[AuditRow(entry) for entry in reply.events],
        size=size if size != AUDIT_PAGE_SIZE else None,
        is_first_page=not after,
        next_token=reply.continuation_token,
        event_types=request.app[AUDIT_POLICY].catalogue,
        logins=sorted(member.user.login for member in members.members),
        formats=EXPORT_FORMATS,
    )


async def audit_export(request: web.Request) -> web.Response:
    """`/orgs/{org}/audit.csv` or `.json`: the filtered entries as a file
    (`GET /api/orgs/{orgName}/auditlogs/export`, with the page's filters)."""
    org = request.match_info["orgName"]
    audit_filter = audit_query(request).audit_filter(org)
    return await export_response(request, audit_filter, request.match_info["format"])


# -- members and teams --------------------------------------------------------------------------


@dataclass(frozen=True)
class TeamRow:
    team: identity_pb2.Team
    # (project/stack, permission name) of each stack grant that still names a stack.
    grants: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class People:
    """An organization's members with their roles, and its teams with their stack grants."""

    members: tuple[identity_pb2.Member, ...]
    member_total: int
    teams: tuple[TeamRow, ...]


async def organization_people(request: web.Request, org: str) -> People:
    """Members and teams as `GET …/members` and `GET …/teams` list them."""
    backends = request.app[BACKENDS]
    members, teams = await asyncio.gather(
        backends.identity.ListMembers(
            identity_pb2.ListMembersRequest(organization=org), **call_options(request)
        ),
        backends.identity.ListTeams(
            identity_pb2.ListTeamsRequest(organization=org), **call_options(request)
        ),
    )
    names: dict[str, str] = {}
    if any(team.stacks for team in teams.teams):
        names = {
            stack.id: f"{stack.ref.project}/{stack.ref.stack}"
            for stack in await organization_stacks(request, org)
        }
    rows = tuple(
        TeamRow(
            team=team,
            grants=tuple(
                sorted(
                    (names[grant.stack_id], PERMISSION_NAMES.get(grant.permission, "none"))
                    for grant in team.stacks
                    if grant.stack_id in names
                )
            ),
        )
        for team in sorted(teams.teams, key=lambda t: t.name)
    )
    ordered = sorted(members.members, key=lambda m: m.user.login)
    return People(members=tuple(ordered[:SHOWN_MEMBERS]), member_total=len(ordered), teams=rows)

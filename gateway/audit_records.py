"""The audit record as clients read it: one mapping from the `AuditEvent` message (the one
definition of an entry, protos/cairn/v1/audit.proto) to Pulumi's JSON `AuditLogEvent` and one
to the CSV export's row, and the export attachment. The route handlers and the console both
answer through these."""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from aiohttp import web

from gateway.audit import flush_recent
from gateway.context import BACKENDS, call_options
from protos.cairn.v1 import audit_pb2

MICROS = 1_000_000
# An export without a time range covers the last 30 days.
DEFAULT_EXPORT_DAYS = 30
EXPORT_FORMATS = ("csv", "json")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")

ACTOR_KINDS: dict[audit_pb2.AuditActorKind.ValueType, str] = {
    audit_pb2.AUDIT_ACTOR_KIND_USER: "user",
    audit_pb2.AUDIT_ACTOR_KIND_UPDATE_TOKEN: "update token",
    audit_pb2.AUDIT_ACTOR_KIND_AGENT_POOL: "agent pool",
    audit_pb2.AUDIT_ACTOR_KIND_ANONYMOUS: "anonymous",
}


def actor_kind(event: audit_pb2.AuditEvent) -> str:
    return ACTOR_KINDS.get(event.actor_kind, "anonymous")


def _iso_time(event: audit_pb2.AuditEvent) -> str:
    moment = datetime.fromtimestamp(event.time_micros / MICROS, tz=UTC)
    return moment.isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class Member:
    """One member of the record as clients read it: its JSON member and CSV column name."""

    name: str
    value: Callable[[audit_pb2.AuditEvent], object]
    is_in_json: bool = True


# THE record as clients read it, in CSV column order. JSON shapes the user and the token
# itself (the SDK's nested `user`; token members only when a token was used).
MEMBERS: tuple[Member, ...] = (
    Member("time", _iso_time, is_in_json=False),
    Member("timestamp", lambda e: e.time_micros // MICROS),
    Member("event", lambda e: e.event),
    Member("description", lambda e: e.description),
    Member("organization", lambda e: e.organization),
    Member("target", lambda e: e.target),
    Member("status", lambda e: e.status),
    Member("actorKind", actor_kind),
    Member("user", lambda e: e.actor_login, is_in_json=False),
    Member("userName", lambda e: e.actor_name, is_in_json=False),
    Member("tokenID", lambda e: e.token_id, is_in_json=False),
    Member("tokenName", lambda e: e.token_name, is_in_json=False),
    Member("sourceIP", lambda e: e.source_ip),
    Member("userAgent", lambda e: e.user_agent),
    Member("method", lambda e: e.method),
    Member("path", lambda e: e.path),
    Member("requestID", lambda e: e.request_id),
    Member("authFailure", lambda e: e.is_auth_failure),
)


def event_json(event: audit_pb2.AuditEvent) -> dict[str, Any]:
    """One entry as the SDK's `AuditLogEvent`, plus what Cairn records beyond it."""
    is_user = event.actor_kind == audit_pb2.AUDIT_ACTOR_KIND_USER
    payload: dict[str, Any] = {
        member.name: member.value(event) for member in MEMBERS if member.is_in_json
    }
    payload.update(
        {
            "user": {
                "name": event.actor_name if is_user else "",
                "githubLogin": event.actor_login,
                "avatarUrl": "",
            },
            "reqOrgAdmin": event.is_org_admin_required,
            "reqStackAdmin": False,
            "id": event.id,
        }
    )
    if event.token_id:
        payload["tokenID"] = event.token_id
        payload["tokenName"] = event.token_name
    if not is_user:
        payload["actorName"] = event.actor_name
    return payload


def _csv_cell(value: object) -> object:
    if isinstance(value, bool):
        return "true" if value else "false"
    # Spreadsheets run cells starting with these as formulas; user agents are caller-chosen.
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def events_csv(events: Iterable[audit_pb2.AuditEvent]) -> str:
    """The CSV export: a header row, then one row per entry."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(member.name for member in MEMBERS)
    for event in events:
        writer.writerow([_csv_cell(member.value(event)) for member in MEMBERS])
    return out.getvalue()


async def export_response(
    request: web.Request, audit_filter: audit_pb2.AuditFilter, audit_format: str
) -> web.Response:
    """The entries of a filter as a CSV or JSON attachment (the console's export too).

    An open end of the time window becomes now, an open start 30 days before its end.
    """
    if not audit_filter.until_micros:
        audit_filter.until_micros = int(time.time() + 1) * MICROS
    if not audit_filter.since_micros:
        audit_filter.since_micros = (
            audit_filter.until_micros - DEFAULT_EXPORT_DAYS * 86_400 * MICROS
        )
    await flush_recent(request)
    reply = await request.app[BACKENDS].audit.ExportAuditEvents(
        audit_pb2.ExportAuditEventsRequest(filter=audit_filter), **call_options(request)
    )
    events = list(reply.events)
    if audit_format == "csv":
        body = events_csv(events).encode()
        media = "text/csv"
    else:
        body = orjson.dumps({"auditLogEvents": [event_json(e) for e in events]})
        media = "application/json"
    return web.Response(
        body=body,
        content_type=_answer_type(request, media),
        charset="utf-8",
        headers={"Content-Disposition": f'attachment; filename="auditlogs.{audit_format}"'},
    )


def _answer_type(request: web.Request, media: str) -> str:
    """The format's own type, or text/plain for clients that accept only text (the SDK)."""
    accepted = {
        item.split(";", 1)[0].strip().lower()
        for item in request.headers.get("Accept", "").split(",")
    }
    if accepted & {media, "*/*", media.split("/")[0] + "/*"}:
        return media
    if "text/plain" in accepted:
        return "text/plain"
    return media

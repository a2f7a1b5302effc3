"""The audit log: Pulumi Cloud's Audit Logs API (list, export, event types) and the operator's
instance-wide export. Entries are read-only: no route changes or deletes one."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from gateway.audit import flush_recent
from gateway.audit_policy import AUDIT_POLICY
from gateway.audit_records import EXPORT_FORMATS, MICROS, event_json, export_response
from gateway.context import BACKENDS, PRINCIPAL, call_options
from gateway.convert import int_query, json_response
from gateway.errors import ApiError, bad_request
from protos.cairn.v1 import audit_pb2


def _seconds_query(request: web.Request, name: str) -> int | None:
    if not request.query.get(name):
        return None
    value = int_query(request, name, 0)
    if value < 0:
        raise bad_request(f"'{name}' must be a Unix time in seconds")
    return value


def _window(request: web.Request) -> tuple[int, int]:
    """(since, until) in microseconds, 0 for an open end, from `startTime` and `endTime`.

    Either alone is an upper bound (the API's V1 reading: entries at or before it); given
    both, the entries between them, in whichever order they come. Bounds are whole seconds,
    both inclusive.
    """
    start = _seconds_query(request, "startTime")
    end = _seconds_query(request, "endTime")
    bounds = [b for b in (start, end) if b is not None]
    if not bounds:
        return 0, 0
    until = (max(bounds) + 1) * MICROS
    since = min(bounds) * MICROS if len(bounds) == 2 else 0
    return since, until


def _filter(request: web.Request, organization: str) -> audit_pb2.AuditFilter:
    since, until = _window(request)
    event = request.query.get("eventFilter", "")
    if event and event not in request.app[AUDIT_POLICY].names():
        raise bad_request(
            f"unknown event type '{event[:100]}'; see GET /api/orgs/{{orgName}}/auditlogs/"
            "event-types"
        )
    return audit_pb2.AuditFilter(
        organization=organization,
        since_micros=since,
        until_micros=until,
        user_login=request.query.get("userFilter", ""),
        event=event,
    )


async def list_audit_log_events_handler_v1(request: web.Request) -> web.Response:
    """`GET /api/orgs/{orgName}/auditlogs` (REST doc: Audit Logs, List Audit Log Events)."""
    if request.query.get("format", "json") != "json":
        raise bad_request("this route answers JSON only; use /auditlogs/export for CSV")
    audit_filter = _filter(request, request.match_info["orgName"])
    await flush_recent(request)
    reply = await request.app[BACKENDS].audit.ListAuditEvents(
        audit_pb2.ListAuditEventsRequest(
            filter=audit_filter,
            continuation_token=request.query.get("continuationToken", ""),
            page_size=int_query(request, "pageSize", 0),
        ),
        **call_options(request),
    )
    payload: dict[str, Any] = {"auditLogEvents": [event_json(e) for e in reply.events]}
    if reply.continuation_token:
        payload["continuationToken"] = reply.continuation_token
    return json_response(payload)


async def export_audit_log_events_handler_v1(request: web.Request) -> web.Response:
    """`GET /api/orgs/{orgName}/auditlogs/export?format=csv|json` (REST doc: Audit Logs,
    Export Audit Log Events), bounded by a time window."""
    return await _export(request, request.match_info["orgName"])


async def export_instance_audit_log_events(request: web.Request) -> web.Response:
    """`GET /api/admin/auditlogs/export` (extension): every organization's entries and the
    site-level ones, for site admins only; `siteLevel=true` keeps only the site-level ones
    (refused calls nobody was verified for, the agent protocol, bootstrap)."""
    if not request[PRINCIPAL].is_site_admin:
        raise ApiError(403, "Forbidden: the instance-wide audit export is for site admins")
    return await _export(request, "", is_site_level=_flag(request, "siteLevel"))


async def list_audit_log_event_types(request: web.Request) -> web.Response:
    """`GET /api/orgs/{orgName}/auditlogs/event-types`: the events this server records."""
    policy = request.app[AUDIT_POLICY]
    return json_response(
        {
            "eventTypes": [
                {
                    "event": kind.name,
                    "displayName": kind.display_name,
                    "description": kind.description,
                    "requiresOrgAdmin": kind.name in policy.admin_events,
                    "requiresStackAdmin": False,
                    "authenticationFailure": False,
                    "deprecated": False,
                }
                for kind in policy.catalogue
            ]
        }
    )


def _flag(request: web.Request, name: str) -> bool:
    value = request.query.get(name, "false").lower()
    if value not in ("true", "false"):
        raise bad_request(f"'{name}' must be true or false")
    return value == "true"


async def _export(
    request: web.Request, organization: str, *, is_site_level: bool = False
) -> web.Response:
    audit_format = request.query.get("format", "csv").lower()
    if audit_format not in EXPORT_FORMATS:
        raise bad_request("'format' must be csv or json")
    audit_filter = _filter(request, organization)
    audit_filter.is_site_level = is_site_level
    return await export_response(request, audit_filter, audit_format)

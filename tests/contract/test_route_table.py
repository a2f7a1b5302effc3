"""The route table carries everything per route: for every route, its access rule, its audit
event (or an explicit "not audited" on a mutating route) and its schemas.

A new route fails here until its entry in gateway/routes.py says who may call it and what the
audit trail records, and gateway/schemas describes what it takes and answers.
"""

from __future__ import annotations

import pytest

from gateway.audit_events import EVENT_TYPES, MUTATING_METHODS, NOT_AUDITED, AuditEventType
from gateway.openapi import operations
from gateway.route import Access, Route
from gateway.routes import ROUTES, request_schema
from gateway.schemas import load_schemas
from protos.cairn.v1 import common_pb2, identity_pb2
from services.common.call_access import TOKEN_ACCESS

BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


def _id(route: Route) -> str:
    return f"{route.method} {route.path}"


@pytest.mark.parametrize("route", ROUTES, ids=_id)
def test_every_route_has_its_access_rule(route: Route) -> None:
    """An organization route names the role it needs, a stack route the permission; no
    other route carries a role or permission the middleware would not check."""
    has_role = route.role != common_pb2.ROLE_UNSPECIFIED
    has_permission = route.permission != identity_pb2.STACK_PERMISSION_NONE
    assert has_role == (route.access is Access.ORG), route.operation_id
    assert has_permission == (route.access is Access.STACK), route.operation_id
    if route.create_organization:
        assert route.access is Access.ORG, route.operation_id
    if route.manages_access:
        # Personal access tokens only: a rule about tokens, so the route takes one.
        assert route.access in (Access.USER, Access.ORG, Access.STACK), route.operation_id


@pytest.mark.parametrize("route", ROUTES, ids=_id)
def test_every_mutating_route_names_its_audit_event_or_says_not_audited(route: Route) -> None:
    if route.method in MUTATING_METHODS:
        # The audit trail records mutating calls under /api/ only.
        assert route.path.startswith("/api/"), route.operation_id
        assert isinstance(route.audit, AuditEventType) or route.audit is NOT_AUDITED, (
            f"{route.operation_id}: set audit= to an event of gateway/audit_events.py "
            "or to NOT_AUDITED"
        )
    else:
        # Reads are never recorded: an event here would be a table that lies.
        assert route.audit is None, route.operation_id


def test_every_audit_event_a_route_names_is_in_the_catalogue() -> None:
    """The event-types route lists the catalogue: a route's event must be one of it."""
    catalogue = {kind.name: kind for kind in EVENT_TYPES}
    assert len(catalogue) == len(EVENT_TYPES), "an event name is listed twice"
    for route in ROUTES:
        if isinstance(route.audit, AuditEventType):
            assert catalogue.get(route.audit.name) is route.audit, route.operation_id


def test_service_methods_record_events_of_the_catalogue() -> None:
    """Access-token calls to service methods are recorded under their REST twin's event."""
    catalogue = {kind.name for kind in EVENT_TYPES}
    named = {access.audit_event for access in TOKEN_ACCESS.values() if access.audit_event}
    assert named <= catalogue, sorted(named - catalogue)


def test_operation_ids_are_unique() -> None:
    ids = [route.operation_id for route in ROUTES]
    assert len(ids) == len(set(ids))


@pytest.mark.parametrize("route", ROUTES, ids=_id)
def test_every_route_has_its_schemas(route: Route) -> None:
    """What gateway/openapi.py builds the route's operations from: responses for every
    concrete path, a request body for what sends one, and a closed schema for strict ones."""
    schemas = load_schemas()
    concrete = list(operations([route]))
    assert concrete, route.operation_id
    for operation in concrete:
        schema = schemas.operations.get(operation.operation_id)
        assert schema is not None, f"add schemas for {operation.operation_id} (gateway/schemas)"
        assert schema.responses, operation.operation_id
        if route.method not in BODY_METHODS:
            assert schema.request is None, operation.operation_id
    if route.is_body_strict:
        assert route.method in BODY_METHODS, route.operation_id
        strict = request_schema(route, schemas)
        assert strict is not None, route.operation_id

"""Which calls the audit trail records, as what, and how many refusals it keeps.

Every mutating `/api/` call (POST, PUT, PATCH, DELETE), whatever its outcome, is recorded as
the event its route names (`Route.audit` in gateway/routes.py), except routes marked
NOT_AUDITED; a call that matched no route (404, 405) is still an attempt, recorded under the
fallback event. The hot update-token and agent calls that are otherwise not recorded leave a
site-level entry when refused for their credential or path (401, 404).

Every site-level entry of a refused call is rate-limited per client address and in all
(`RefusalLimiter`), the rest counted and dropped.
"""

from __future__ import annotations

from collections.abc import Sequence

from aiohttp import web

from gateway.audit_events import (
    EVENT_TYPES,
    FALLBACK_EVENT,
    MUTATING_METHODS,
    NOT_AUDITED,
    REFUSED_HOT_CALL_EVENT,
    AuditEventType,
)
from gateway.route import Access, Route
from services.common.clock import Clock, SystemClock
from services.common.logging import get_logger

log = get_logger("cairn.audit")


class AuditPolicy:
    """Which event a route's call records, built once from the route table."""

    def __init__(self, routes: Sequence[Route]) -> None:
        self._routes = {route.operation_id: route for route in routes}
        self._events: dict[str, AuditEventType] = {}
        for op, route in self._routes.items():
            if route.method not in MUTATING_METHODS:
                continue
            if isinstance(route.audit, AuditEventType):
                self._events[op] = route.audit
            elif route.audit is None:
                # Unnamed (tests/contract/test_route_table.py refuses that): still recorded.
                self._events[op] = FALLBACK_EVENT
        served = {kind.name for kind in self._events.values()}
        self._events.update(
            {
                op: REFUSED_HOT_CALL_EVENT
                for op, route in self._routes.items()
                if route.method in MUTATING_METHODS
                and route.audit is NOT_AUDITED
                and route.access in (Access.UPDATE, Access.AGENT)
            }
        )
        # Unmatched paths and methods are recorded under the fallback, so it is always served.
        self.catalogue: tuple[AuditEventType, ...] = (
            *(kind for kind in EVENT_TYPES if kind.name in served),
            FALLBACK_EVENT,
        )
        self.admin_events = frozenset(
            self._events[op].name
            for op, route in self._routes.items()
            if op in self._events and route.requires_org_admin
        )

    def route(self, operation_id: str) -> Route | None:
        return self._routes.get(operation_id)

    def event_for(self, request: web.Request) -> AuditEventType | None:
        """The event this call records, or None when it is not audited."""
        if request.method not in MUTATING_METHODS or not request.path.startswith("/api/"):
            return None
        operation = request.match_info.route.name
        if operation is None or operation not in self._routes:
            # No such route, or a method the path does not take: still an attempt.
            return FALLBACK_EVENT
        return self._events.get(operation)

    def names(self) -> frozenset[str]:
        return frozenset(kind.name for kind in self.catalogue)


class RefusalLimiter:
    """Bounds the site-level entries of refused, unverified calls: at most `per_address` per
    client address and `total` in all per minute (fixed windows); the rest are counted and
    dropped, and each window that dropped some is logged once when the next one begins.

    Memory stays bounded: an address is remembered only when one of its entries is kept, so
    a window never remembers more than `total` addresses.
    """

    WINDOW_SECONDS = 60.0

    def __init__(self, per_address: int, total: int, clock: Clock | None = None) -> None:
        self._per_address = per_address
        self._total = total
        self._clock = clock or SystemClock()
        self._window_start = self._clock.now()
        self._counts: dict[str, int] = {}
        self._kept = 0
        self._window_dropped = 0
        self.dropped = 0

    def allow(self, address: str) -> bool:
        """Whether one more refusal from `address` may be recorded now."""
        now = self._clock.now()
        if not self._window_start <= now < self._window_start + self.WINDOW_SECONDS:
            self._next_window(now)
        kept = self._counts.get(address, 0)
        if kept >= self._per_address or self._kept >= self._total:
            self._window_dropped += 1
            self.dropped += 1
            return False
        self._counts[address] = kept + 1
        self._kept += 1
        return True

    def _next_window(self, now: float) -> None:
        if self._window_dropped:
            log.warning(
                "audit_refusals_dropped",
                entries=self._window_dropped,
                kept=self._kept,
                window_seconds=self.WINDOW_SECONDS,
            )
        self._window_start = now
        self._counts.clear()
        self._kept = 0
        self._window_dropped = 0


AUDIT_POLICY = web.AppKey("audit_policy", AuditPolicy)
AUDIT_REFUSAL_LIMITER = web.AppKey("audit_refusal_limiter", RefusalLimiter)

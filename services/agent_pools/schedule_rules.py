"""Schedules, drift runs and pauses: frozen records and the pure rules.

Cron expressions are the standard five fields, evaluated in UTC. A schedule's next firing
after a wait (the service was down, the schedule paused) is the first due time after now:
missed ticks collapse into the one firing that happens at once, never one per missed tick.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from croniter import CroniterBadDateError, croniter

from services.agent_pools.domain import BY_DRIFT_DETECTION, BY_SCHEDULE, BY_TTL, StackName
from services.common.errors import InvalidArgument

DEPLOYMENT = "deployment"
DRIFT = "drift"
TTL = "ttl"
KINDS = (DEPLOYMENT, DRIFT, TTL)
# Kinds a stack may hold only one schedule of.
SINGLE_KINDS = (DRIFT, TTL)

DETECT_DRIFT = "detect-drift"
REMEDIATE_DRIFT = "remediate-drift"
DESTROY = "destroy"

CLAIMED = "claimed"
FIRING_SUCCEEDED = "succeeded"
FIRING_FAILED = "failed"

MAX_CRON_LENGTH = 255
# Due schedules handled per scheduler round and replica; the rest wait for the next round.
DUE_BATCH = 50
FOLLOW_UP_BATCH = 50
# A firing claimed this long ago and still not queued was left by a stopped replica.
STALE_CLAIM_SECONDS = 120.0
MAX_HISTORY = 100

# What `pulumi refresh --preview-only --expect-no-changes` prints when it found changes.
EXPECTED_NO_CHANGES = "no changes were expected"
# A summary line of the preview: "~ 2 to update", "- 1 to delete", "+-1 to replace".
_CHANGE_LINE = re.compile(r"^\s*(?:[-+~]{1,2}\s*)?(\d+) to (create|update|delete|replace)\b")
_CRON_FIELD = re.compile(r"^[0-9A-Za-z*/,\-?]+$")


@dataclass(frozen=True)
class ScheduleSpec:
    """What a caller asks for; checked by `validate_spec`."""

    kind: str
    cron: str = ""
    once_at: float | None = None
    request: Mapping[str, Any] = field(default_factory=dict)
    auto_remediate: bool = False
    delete_after_destroy: bool = False


@dataclass(frozen=True)
class ScheduleRecord:
    id: str
    stack: StackName
    kind: str
    cron: str | None
    once_at: float | None
    next_at: float | None
    paused: bool
    definition: Mapping[str, Any]
    requested_by: str
    requested_by_user_id: str
    created_at: float
    modified_at: float
    last_executed_at: float | None


@dataclass(frozen=True)
class FiringRecord:
    id: str
    schedule_id: str
    stack_id: str
    kind: str
    due_at: float
    executed_at: float
    deployment_id: str | None
    version: int
    result: str
    message: str


@dataclass(frozen=True)
class DriftRunRecord:
    id: str
    stack_id: str
    schedule_id: str
    deployment_id: str
    auto_remediate: bool
    created_at: float
    finished_at: float | None
    drift_detected: bool | None
    resource_changes: Mapping[str, int]
    remediation_deployment_id: str | None


@dataclass(frozen=True)
class DriftOutcome:
    drift_detected: bool
    resource_changes: Mapping[str, int]


def validate_cron(expression: str) -> str:
    """A standard five-field cron expression (UTC); InvalidArgument otherwise."""
    text = expression.strip()
    fields = text.split()
    if (
        not text
        or len(text) > MAX_CRON_LENGTH
        or len(fields) != 5
        or not all(_CRON_FIELD.match(part) for part in fields)
        or not croniter.is_valid(text)
    ):
        raise InvalidArgument(
            f"Bad Request: '{expression}' is not a cron expression of five fields "
            "(minute hour day-of-month month day-of-week, UTC)"
        )
    try:
        croniter(text).get_next(float)
    except CroniterBadDateError:
        # Valid field by field, yet naming no day that exists (`0 0 30 2 *`).
        raise InvalidArgument(f"Bad Request: '{expression}' never fires") from None
    return " ".join(fields)


def next_cron_time(expression: str, after: float) -> float:
    """The first time strictly after `after` the expression names (Unix seconds)."""
    start = datetime.fromtimestamp(after, tz=UTC)
    return float(croniter(expression, start).get_next(float))


def validate_spec(spec: ScheduleSpec, now: float) -> ScheduleSpec:
    """The spec with a normalised cron; InvalidArgument for what cannot be scheduled."""
    if spec.kind not in KINDS:
        raise InvalidArgument(f"Bad Request: unknown schedule kind '{spec.kind}'")
    if spec.kind == DRIFT and not spec.cron:
        raise InvalidArgument("Bad Request: 'scheduleCron' is required")
    if spec.kind == TTL and spec.once_at is None:
        raise InvalidArgument("Bad Request: 'timestamp' is required")
    if spec.cron and spec.once_at is not None:
        raise InvalidArgument("Bad Request: give either 'scheduleCron' or 'scheduleOnce', not both")
    if not spec.cron and spec.once_at is None:
        raise InvalidArgument("Bad Request: 'scheduleCron' or 'scheduleOnce' is required")
    if spec.once_at is not None and spec.once_at <= now:
        raise InvalidArgument("Bad Request: the scheduled time must be in the future")
    cron = validate_cron(spec.cron) if spec.cron else ""
    return ScheduleSpec(
        kind=spec.kind,
        cron=cron,
        once_at=spec.once_at,
        request=spec.request,
        auto_remediate=spec.auto_remediate,
        delete_after_destroy=spec.delete_after_destroy,
    )


def first_due(cron: str, once_at: float | None, now: float) -> float | None:
    """When a schedule made (or resumed) at `now` fires first."""
    if cron:
        return next_cron_time(cron, now)
    return once_at


def following_due(schedule: ScheduleRecord, now: float) -> float | None:
    """The due time after a firing at `now`: the next cron time after now (missed ticks are
    not fired one by one), None for a one-time schedule (it is done)."""
    if schedule.cron:
        return next_cron_time(schedule.cron, now)
    return None


def split_request(request: Mapping[str, Any]) -> tuple[str, dict[str, Any], bool]:
    """A stored deployment request as (operation, overrides, inherit settings)."""
    operation = request.get("operation")
    overrides = {k: v for k, v in request.items() if k not in ("operation", "inheritSettings")}
    inherit = request.get("inheritSettings", True)
    return (
        operation if isinstance(operation, str) and operation else "update",
        overrides,
        inherit if isinstance(inherit, bool) else True,
    )


def definition_of(spec: ScheduleSpec, sealed_request: Mapping[str, Any]) -> dict[str, Any]:
    """What a schedule keeps about what it runs."""
    if spec.kind == DRIFT:
        return {
            "request": {"operation": DETECT_DRIFT, "inheritSettings": True},
            "autoRemediate": spec.auto_remediate,
        }
    if spec.kind == TTL:
        return {
            "request": {"operation": DESTROY, "inheritSettings": True},
            "deleteAfterDestroy": spec.delete_after_destroy,
        }
    return {"request": dict(sealed_request)}


def operation_of(schedule: ScheduleRecord) -> tuple[str, dict[str, Any], bool]:
    """The deployment a firing queues: (operation, overrides, inherit settings)."""
    request = schedule.definition.get("request")
    return split_request(request if isinstance(request, dict) else {})


def initiator_of(kind: str) -> str:
    """What a firing of a schedule of this kind names as its deployment's initiator."""
    return {DRIFT: BY_DRIFT_DETECTION, TTL: BY_TTL}.get(kind, BY_SCHEDULE)


def drift_outcome(status: str, lines: Sequence[str]) -> DriftOutcome | None:
    """What a finished drift detection found: drift when the refresh preview failed because
    it found changes (the CLI's `--expect-no-changes` message, or a summary naming changes),
    none when it succeeded; None when it failed for another reason."""
    changes: dict[str, int] = {}
    expected_none = False
    for line in lines:
        if EXPECTED_NO_CHANGES in line:
            expected_none = True
        match = _CHANGE_LINE.match(line)
        if match is not None and int(match.group(1)) > 0:
            changes[match.group(2)] = changes.get(match.group(2), 0) + int(match.group(1))
    if status == "succeeded":
        return DriftOutcome(False, {})
    if expected_none or changes:
        return DriftOutcome(True, changes)
    return None

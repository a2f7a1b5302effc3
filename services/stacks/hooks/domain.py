"""Webhooks: frozen records and the pure rules (validation, event kinds, filter matching)."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from services.common.errors import InvalidArgument

RAW = "raw"
SLACK = "slack"
MS_TEAMS = "ms_teams"
FORMATS = (RAW, SLACK, MS_TEAMS)

UPDATE_KINDS = ("update", "preview", "refresh", "destroy")
UPDATE_RESULTS = ("started", "succeeded", "failed", "cancelled")
# Filter names as Pulumi's CLI (`pulumi org webhook new`) lists them, by group; organization
# hooks may use every group, stack hooks the first three (their `stacks` group lacks
# stack_created and stack_deleted).
PULUMI_GROUPS: Mapping[str, tuple[str, ...]] = {
    "stacks": (
        "stack_created",
        "stack_deleted",
        "update_succeeded",
        "update_failed",
        "preview_succeeded",
        "preview_failed",
        "destroy_succeeded",
        "destroy_failed",
        "refresh_succeeded",
        "refresh_failed",
        "import_succeeded",
        "import_failed",
    ),
    "deployments": (
        "deployment_queued",
        "deployment_started",
        "deployment_succeeded",
        "deployment_failed",
        "drift_detected",
        "drift_detection_succeeded",
        "drift_detection_failed",
        "drift_remediation_succeeded",
        "drift_remediation_failed",
        "deployment_file_ingestion_failed",
    ),
    "policies": ("policy_violation_mandatory", "policy_violation_advisory"),
    "environments": (
        "environment_created",
        "environment_deleted",
        "environment_revision_created",
        "environment_revision_retracted",
        "environment_revision_tag_created",
        "environment_revision_tag_deleted",
        "environment_revision_tag_updated",
        "environment_tag_created",
        "environment_tag_deleted",
        "environment_tag_updated",
        "imported_environment_changed",
    ),
    "change_requests": (
        "change_request_created",
        "change_request_updated",
        "change_request_approved",
        "change_request_unapproved",
        "change_request_closed",
        "change_request_applied",
        "change_request_submitted",
    ),
}
STACK_ACTIONS = ("created", "deleted", "renamed", "transferred")
STACK_EVENTS = tuple(f"stack_{action}" for action in STACK_ACTIONS)
UPDATE_EVENTS = tuple(f"{kind}_{result}" for kind in UPDATE_KINDS for result in UPDATE_RESULTS)
# Cairn's events beyond Pulumi's: update starts and cancellations, renames and transfers.
# They belong to the `stacks` group too.
CAIRN_EVENTS = tuple(
    event for event in STACK_EVENTS + UPDATE_EVENTS if event not in PULUMI_GROUPS["stacks"]
)
# Groups of events, by name.
GROUPS: Mapping[str, tuple[str, ...]] = {
    **PULUMI_GROUPS,
    "stacks": PULUMI_GROUPS["stacks"] + CAIRN_EVENTS,
}
# The filter names a hook may subscribe to; no filter and no group means every event.
EVENTS = tuple(dict.fromkeys(event for events in GROUPS.values() for event in events))
PING = "ping"

# The `Pulumi-Webhook-Kind` header of each event.
KIND_STACK = "stack"
KIND_UPDATE = "stack_update"
KIND_PREVIEW = "stack_preview"
KIND_DEPLOYMENT = "deployment"
KIND_DRIFT = "drift_detection"

MAX_NAME_LENGTH = 100
MAX_DISPLAY_NAME_LENGTH = 255
MAX_URL_LENGTH = 2048
MAX_SECRET_LENGTH = 1024
# Recorded attempts kept per hook, newest first.
MAX_DELIVERIES = 200
# Bytes of a receiver's answer kept with the attempt.
MAX_RESPONSE_EXCERPT = 4096
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclass(frozen=True)
class HookScope:
    """An organization's hooks (no project, no stack) or one stack's."""

    organization: str
    project: str = ""
    stack: str = ""

    @property
    def is_stack(self) -> bool:
        return bool(self.project or self.stack)


@dataclass(frozen=True)
class HookSpec:
    name: str
    display_name: str
    payload_url: str
    active: bool
    format: str
    filters: tuple[str, ...]
    groups: tuple[str, ...]
    # None leaves the stored secret as it is; "" clears it.
    secret: str | None


@dataclass(frozen=True)
class HookRecord:
    id: str
    organization: str
    # Empty for an organization's hook.
    stack_id: str
    name: str
    display_name: str
    payload_url: str
    active: bool
    format: str
    filters: tuple[str, ...]
    groups: tuple[str, ...]
    secret_ciphertext: bytes | None
    # When it was registered, Unix microseconds.
    created_at_us: int = 0

    @property
    def has_secret(self) -> bool:
        return self.secret_ciphertext is not None


@dataclass(frozen=True)
class Delivery:
    """One attempt to deliver an event to a hook."""

    id: str
    hook_id: str
    kind: str
    event: str
    payload: str
    timestamp: int
    duration_ms: int
    request_url: str
    request_headers: str
    response_code: int
    response_headers: str
    response_body: str

    @property
    def is_success(self) -> bool:
        return 200 <= self.response_code < 300


@dataclass(frozen=True)
class UpdateOutcome:
    update_id: str
    kind: str
    result: str
    version: int
    resource_changes: Mapping[str, int] = field(default_factory=dict)
    duration_seconds: int = 0


@dataclass(frozen=True)
class DeploymentOutcome:
    deployment_id: str
    version: int
    operation: str
    status: str


@dataclass(frozen=True)
class DriftOutcome:
    """What a drift detection run found."""

    drift_run_id: str
    drift_detected: bool
    resource_changes: Mapping[str, int]
    deployment_id: str
    deployment_version: int
    remediation_deployment_id: str = ""


@dataclass(frozen=True)
class StackNames:
    organization: str
    project: str
    stack: str


@dataclass(frozen=True)
class HookEvent:
    """Something that happened to a stack; `names` is filled in before rendering."""

    stack_id: str
    event: str
    user_login: str
    names: StackNames | None = None
    update: UpdateOutcome | None = None
    deployment: DeploymentOutcome | None = None
    drift: DriftOutcome | None = None
    # Unix seconds; 0 when unknown.
    timestamp: int = 0
    # Unix microseconds, on the publishing service's clock; 0 when unknown.
    occurred_at_us: int = 0

    def reaches(self, hook: HookRecord) -> bool:
        """Whether `hook` existed when this happened: a hook registered after an event (its
        delivery may come later) does not receive it. With no recorded time, every hook does."""
        return not self.occurred_at_us or hook.created_at_us <= self.occurred_at_us


def kind_of(event: str) -> str:
    """The `Pulumi-Webhook-Kind` of an event filter name."""
    if event == PING:
        return PING
    if event.startswith("stack_"):
        return KIND_STACK
    if event.startswith("preview_"):
        return KIND_PREVIEW
    if event.startswith("deployment_"):
        return KIND_DEPLOYMENT
    if event.startswith("drift_"):
        return KIND_DRIFT
    return KIND_UPDATE


def update_event(kind: str, result: str) -> str:
    return f"{kind}_{result}"


def matches(hook: HookRecord, event: str) -> bool:
    """Whether an active hook wants an event: every event without filters or groups."""
    if not hook.active:
        return False
    if not hook.filters and not hook.groups:
        return True
    if event in hook.filters:
        return True
    return any(event in GROUPS.get(group, ()) for group in hook.groups)


def validate_payload_url(url: str) -> str:
    if not url:
        raise InvalidArgument("Bad Request: payloadUrl is required")
    if len(url) > MAX_URL_LENGTH:
        raise InvalidArgument("Bad Request: payloadUrl is too long")
    try:
        parts = urlsplit(url)
    except ValueError:
        raise InvalidArgument("Bad Request: payloadUrl is not a valid URL") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidArgument("Bad Request: payloadUrl must be an http(s) URL")
    return url


def _known(values: Sequence[str], allowed: Sequence[str], what: str) -> tuple[str, ...]:
    for value in values:
        if value not in allowed:
            raise InvalidArgument(f"Bad Request: unknown webhook {what} '{value[:64]}'")
    return tuple(dict.fromkeys(values))


def validate_spec(spec: HookSpec) -> HookSpec:
    """The spec as stored (format defaulted, filters deduplicated) or InvalidArgument."""
    if not spec.display_name.strip():
        raise InvalidArgument("Bad Request: displayName is required")
    if len(spec.display_name) > MAX_DISPLAY_NAME_LENGTH:
        raise InvalidArgument("Bad Request: displayName is too long")
    validate_name(spec.name)
    if spec.secret is not None and len(spec.secret) > MAX_SECRET_LENGTH:
        raise InvalidArgument("Bad Request: secret is too long")
    hook_format = spec.format or RAW
    if hook_format not in FORMATS:
        raise InvalidArgument(
            f"Bad Request: format must be one of {', '.join(FORMATS)}, not '{hook_format[:32]}'"
        )
    return HookSpec(
        name=spec.name,
        display_name=spec.display_name,
        payload_url=validate_payload_url(spec.payload_url),
        active=spec.active,
        format=hook_format,
        filters=_known(spec.filters, EVENTS, "filter"),
        groups=_known(spec.groups, tuple(GROUPS), "group"),
        secret=spec.secret,
    )


def validate_name(name: str) -> str:
    if not name or len(name) > MAX_NAME_LENGTH or not NAME_PATTERN.match(name):
        raise InvalidArgument(f"Bad Request: invalid webhook name '{name[:MAX_NAME_LENGTH]}'")
    return name

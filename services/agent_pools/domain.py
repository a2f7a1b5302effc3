"""Frozen records of the agent_pools service and its pure rules."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from services.common import limits
from services.common.errors import FailedPrecondition, InvalidArgument, Unauthenticated

# Agents heartbeat this often; an agent silent for OFFLINE_AFTER_SECONDS is offline.
HEARTBEAT_SECONDS = 10
OFFLINE_AFTER_SECONDS = 60
# A running job whose agent has not heartbeated for this long is given up: requeued while
# it has attempts left, failed after that. Never lost, never "running" forever.
JOB_LEASE_SECONDS = 60
MAX_ATTEMPTS = 2

ONLINE = "online"
OFFLINE = "offline"

OPERATIONS: tuple[str, ...] = (
    "update",
    "preview",
    "refresh",
    "destroy",
    # Drift detection (a refresh preview expecting no changes) and its remediation.
    "detect-drift",
    "remediate-drift",
)
# What queued a deployment: a caller of the REST API, or the scheduler for a schedule's
# firing, a drift detection, the remediation of a detected drift, or a stack's time to live.
BY_API = "api"
BY_SCHEDULE = "schedule"
BY_DRIFT_DETECTION = "drift-detection"
BY_DRIFT_REMEDIATION = "drift-remediation"
BY_TTL = "ttl"
INITIATORS: tuple[str, ...] = (
    BY_API,
    BY_SCHEDULE,
    BY_DRIFT_DETECTION,
    BY_DRIFT_REMEDIATION,
    BY_TTL,
)
NOT_STARTED = "not-started"
ACCEPTED = "accepted"
RUNNING = "running"
FAILED = "failed"
SUCCEEDED = "succeeded"
FINISHED: frozenset[str] = frozenset({FAILED, SUCCEEDED})

MAX_NAME_LENGTH = limits.MAX_POOL_NAME_LENGTH
MAX_DESCRIPTION_LENGTH = limits.MAX_POOL_DESCRIPTION_LENGTH
MAX_LOG_LINE_LENGTH = 16 * 1024
MAX_LOG_LINES_PER_CALL = 1000
DEFAULT_PAGE_SIZE = 25
MAX_PAGE_SIZE = limits.MAX_DEPLOYMENT_PAGE_SIZE
DEFAULT_LOG_COUNT = 500
MAX_LOG_COUNT = 5000
# A job's access token: the settings' own PULUMI_ACCESS_TOKEN wins over a minted one.
ACCESS_TOKEN_VARIABLE = "PULUMI_ACCESS_TOKEN"
# How many ended deployments' tokens one sweep revokes at most.
TOKEN_SWEEP_BATCH = 100


@dataclass(frozen=True)
class PoolRecord:
    id: str
    organization: str
    name: str
    description: str
    created_at: float
    last_seen_at: float = 0.0
    last_deployment_at: float = 0.0
    is_default: bool = False
    is_online: bool = False


@dataclass(frozen=True)
class AgentRecord:
    id: str
    pool_id: str
    version: str
    platform: str
    hostname: str
    ip: str
    pid: str
    last_seen_at: float

    def is_online(self, now: float) -> bool:
        return now - self.last_seen_at < OFFLINE_AFTER_SECONDS


@dataclass(frozen=True)
class AgentMetadata:
    version: str
    platform: str
    hostname: str
    ip: str
    pid: str


@dataclass(frozen=True)
class StackName:
    stack_id: str
    organization: str
    project: str
    stack: str


@dataclass(frozen=True)
class DeploymentRecord:
    id: str
    stack: StackName
    version: int
    operation: str
    status: str
    pool_id: str
    agent_id: str | None
    requested_by: str
    settings: Mapping[str, Any]
    created_at: float
    modified_at: float
    started_at: float | None
    finished_at: float | None
    attempts: int
    is_cancel_requested: bool
    message: str
    # Empty when an organization or team token queued it.
    requested_by_user_id: str = ""
    # Ids of the access tokens minted for its job's runs, oldest first.
    job_token_ids: tuple[str, ...] = ()
    # What queued it (INITIATORS).
    initiator: str = BY_API
    # Queued and held there: its stack's or its organization's deployments are paused.
    paused: bool = False


# Token ids one lookup of deployments by their job tokens may name.
MAX_TOKEN_LOOKUP = 1000


@dataclass(frozen=True)
class DeploymentLink:
    """The deployment whose job was given an access token."""

    token_id: str
    deployment_id: str
    version: int


@dataclass(frozen=True)
class MintedToken:
    """An access token made for one job; `token` exists only in memory and the claim reply."""

    token_id: str
    token: str = field(repr=False)


@dataclass(frozen=True)
class ClaimedJob:
    """What an agent is handed: the deployment, its settings in the clear, maybe a token."""

    deployment: DeploymentRecord
    settings: Mapping[str, Any]
    access_token: str = field(default="", repr=False)
    # The settings' secret values in the clear, for the agent to mask in its logs.
    secret_values: tuple[str, ...] = field(default=(), repr=False)


@dataclass(frozen=True)
class TokenToRevoke:
    """A job's token whose deployment ended (or is gone) and that still works."""

    deployment_id: str
    user_login: str
    token_id: str


@dataclass(frozen=True)
class LogLine:
    index: int
    timestamp: float
    text: str


@dataclass(frozen=True)
class DeploymentPage:
    deployments: tuple[DeploymentRecord, ...]
    total: int


@dataclass(frozen=True)
class StoredSettings:
    settings: Mapping[str, Any] = field(default_factory=dict)
    agent_pool_id: str | None = None
    exists: bool = False


def validate_pool_fields(name: str | None, description: str | None) -> None:
    if name is not None and not (1 <= len(name.strip()) <= MAX_NAME_LENGTH):
        raise InvalidArgument(f"Bad Request: a pool name must be 1 to {MAX_NAME_LENGTH} characters")
    if description is not None and len(description) > MAX_DESCRIPTION_LENGTH:
        raise InvalidArgument(
            f"Bad Request: a pool description may be at most {MAX_DESCRIPTION_LENGTH} characters"
        )


def check_pool_deletion(settings_using_it: int, *, force: bool) -> None:
    """A pool that deployment settings name is deleted only when forced."""
    if settings_using_it and not force:
        raise InvalidArgument("Bad Request: Agent pool is in use")


def check_cancellable(status: str) -> None:
    if status in FINISHED:
        raise FailedPrecondition("Conflict: the deployment has already finished")


def check_agent_of_pool(agent_pool_id: str | None, pool_id: str) -> None:
    """An agent acts only in the pool it registered with; an unknown one registers again."""
    if agent_pool_id is None or agent_pool_id != pool_id:
        raise Unauthenticated("Unauthorized: unknown agent for this pool; register again")


def check_own_job(job_agent_id: str | None, status: str, agent_id: str) -> None:
    """An agent reports only on a job it is running."""
    if job_agent_id != agent_id or status not in (ACCEPTED, RUNNING):
        raise FailedPrecondition("Conflict: this deployment is not running on this agent")


def validate_operation(operation: str) -> str:
    if operation not in OPERATIONS:
        raise InvalidArgument(
            f"Bad Request: unknown operation '{operation}' (use {', '.join(OPERATIONS)})"
        )
    return operation


def validate_finish_status(status: str) -> str:
    if status not in FINISHED:
        raise InvalidArgument("Bad Request: a deployment finishes as succeeded or failed")
    return status


def page_window(page: int, page_size: int) -> tuple[int, int]:
    """(limit, offset) of a 1-based page; 0 means the defaults."""
    size = page_size or DEFAULT_PAGE_SIZE
    number = page or 1
    if not 1 <= size <= MAX_PAGE_SIZE:
        raise InvalidArgument(f"Bad Request: pageSize must be between 1 and {MAX_PAGE_SIZE}")
    if number < 1:
        raise InvalidArgument("Bad Request: page must be 1 or more")
    return size, (number - 1) * size


def log_count(count: int) -> int:
    size = count or DEFAULT_LOG_COUNT
    if not 1 <= size <= MAX_LOG_COUNT:
        raise InvalidArgument(f"Bad Request: count must be between 1 and {MAX_LOG_COUNT}")
    return size


def check_log_line_count(lines: Sequence[str]) -> None:
    if len(lines) > MAX_LOG_LINES_PER_CALL:
        raise InvalidArgument(f"Bad Request: at most {MAX_LOG_LINES_PER_CALL} log lines per call")


def check_log_lines(lines: list[str]) -> list[str]:
    """The lines cut to the longest stored (after masking: a cut must not split a value)."""
    check_log_line_count(lines)
    return [line[:MAX_LOG_LINE_LENGTH] for line in lines]


# Stored instead of what an agent sent while the job's secret values could not be read.
WITHHELD_MESSAGE = "[withheld: the job's secret values could not be read to mask this]"


def withheld_message(message: str) -> str:
    """What is stored for a finish message that could not be masked."""
    return WITHHELD_MESSAGE if message else ""


def withheld_lines(count: int) -> list[str]:
    """What is stored for `count` lines that could not be masked: nothing of their text."""
    if count == 0:
        return []
    return [f"[{count} log line(s) withheld: the job's secret values could not be read]"]


def secret_ciphertexts(settings: Any) -> list[str]:
    """The ciphertext of every secret value in stored settings, in document order."""
    if is_secret_value(settings):
        ciphertext = settings.get("ciphertext")
        return [ciphertext] if isinstance(ciphertext, str) and ciphertext else []
    if isinstance(settings, dict):
        return [found for value in settings.values() for found in secret_ciphertexts(value)]
    if isinstance(settings, list):
        return [found for value in settings for found in secret_ciphertexts(value)]
    return []


def merge_settings(target: Mapping[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    """Objects merge recursively and anything else replaces; null leaves a member as it is.

    The official SDK sends every field it knows, unset ones as null, so null cannot mean
    "remove" here (replacing the settings or deleting them does that).
    """
    merged = dict(target)
    for key, value in patch.items():
        if value is None:
            continue
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge_settings(merged[key], value)
        elif isinstance(value, dict):
            merged[key] = merge_settings({}, value)
        else:
            merged[key] = value
    return merged


def is_secret_value(value: Any) -> bool:
    """The SDK's SecretValue shape: some of plaintext, secret and ciphertext."""
    return (
        isinstance(value, dict)
        and bool(value)
        and set(value) <= {"plaintext", "secret", "ciphertext"}
        and any(isinstance(value.get(key), str) for key in ("plaintext", "secret", "ciphertext"))
    )


def settings_pool_id(settings: Mapping[str, Any]) -> str | None:
    """The agent pool a settings object names (`agentPoolID`), if any."""
    value = settings.get("agentPoolID")
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise InvalidArgument("Bad Request: 'agentPoolID' must be a string")
    return value


def needs_access_token(deployment: DeploymentRecord, environment: Mapping[str, Any] | None) -> bool:
    """Whether a claimed job gets a token of its requester: a user queued it and the
    settings do not set PULUMI_ACCESS_TOKEN themselves."""
    if not deployment.requested_by_user_id or not deployment.requested_by:
        return False
    return not (environment or {}).get(ACCESS_TOKEN_VARIABLE)


def token_description(deployment_id: str) -> str:
    return f"deployment {deployment_id}"


def token_expiry(now: float, ttl_seconds: float) -> int:
    """Unix seconds at which a job's token stops working, whatever happens to the job."""
    return int(now + ttl_seconds)

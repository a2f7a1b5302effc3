"""Frozen records the updates service passes between its layers, and its pure rules."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import orjson

from services.common import limits
from services.common.auth import hash_token
from services.common.errors import (
    DomainError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    OutOfRange,
    PermissionDenied,
    Unauthenticated,
)

# The CLI assumes a lease lasts five minutes from the moment it got the token (protocol §6).
LEASE_SECONDS = 300
MAX_RENEW_SECONDS = 300

# Kinds an update can be created with (the path segment), and kinds recorded otherwise.
CREATE_KINDS: tuple[str, ...] = ("update", "preview", "refresh", "destroy")
IMPORT_KIND = "import"
RENAME_KIND = "rename"

NOT_STARTED = "not-started"
RUNNING = "running"
SUCCEEDED = "succeeded"
FAILED = "failed"
CANCELLED = "cancelled"
ENDED: frozenset[str] = frozenset({SUCCEEDED, FAILED, CANCELLED})
COMPLETE_STATUSES: frozenset[str] = frozenset({SUCCEEDED, FAILED, CANCELLED})

DEFAULT_HISTORY_PAGE_SIZE = 10
MAX_HISTORY_PAGE_SIZE = limits.MAX_HISTORY_PAGE_SIZE
DEFAULT_EVENTS_PAGE_SIZE = 500
MAX_EVENTS_PAGE_SIZE = 5000

# `page=0` of the activity feed and preview lists returns everything, up to this many entries.
MAX_FEED_ITEMS = limits.MAX_FEED_ITEMS
# Engine events read for one update's summary; events past this bound are not summarised.
MAX_SUMMARY_EVENTS = 100_000
# Stacks returned by one downstream-references lookup.
MAX_REFERENCING_STACKS = 1000
# Token ids and stacks one lookup of updates by their tokens may name, and updates it returns.
MAX_TOKEN_LOOKUP = 1000

CONFLICT_MESSAGE = "Conflict: Another update is currently in progress."


@dataclass(frozen=True)
class StackPath:
    """A stack's organization/project/stack names, as a REST path spells them."""

    organization: str = ""
    project: str = ""
    stack: str = ""


@dataclass(frozen=True)
class NewUpdate:
    stack_id: str
    kind: str
    is_dry_run: bool
    program: bytes
    config: bytes
    message: str
    environment: Mapping[str, str]
    requested_by: str
    # The path the update is created under; its update-token calls must name the same one.
    stack_path: StackPath = StackPath()
    # The id of the access token it is created with ('' for Cairn's own calls).
    requested_by_token: str = ""


@dataclass(frozen=True)
class UpdateRecord:
    """An update as stored; times are Unix seconds."""

    id: str
    stack_id: str
    kind: str
    is_dry_run: bool
    status: str
    is_finalised: bool
    config: bytes
    message: str
    environment: Mapping[str, str]
    requested_by: str
    version: int
    base_version: int
    created_at: float
    started_at: float | None
    ended_at: float | None
    lease_expires_at: float | None
    lease_token_hash: str | None
    journal_version: int
    checkpoint_sequence: int
    materialised_sequence: int
    journal_entry_count: int
    resource_changes: Mapping[str, int] = field(default_factory=dict)
    resource_count: int | None = None
    stack_path: StackPath = StackPath()
    requested_by_token: str = ""

    @property
    def is_preview(self) -> bool:
        return self.is_dry_run or self.kind == "preview"

    @property
    def has_checkpoint(self) -> bool:
        return self.checkpoint_sequence > 0

    @property
    def has_journal(self) -> bool:
        return self.journal_entry_count > 0


@dataclass(frozen=True)
class Lease:
    token: str
    expires_at: float


@dataclass(frozen=True)
class LeaseRef:
    """What an update-token call claims: this update, under this stack path, with this lease."""

    update_id: str
    token: str
    stack_path: StackPath

    @property
    def token_hash(self) -> str:
        return hash_token(self.token)


@dataclass(frozen=True)
class StartedUpdate:
    version: int
    lease: Lease
    journal_version: int


@dataclass(frozen=True)
class StackState:
    stack_id: str
    version: int = 0
    active_update: UpdateRecord | None = None
    last_update_at: float | None = None
    resource_count: int = 0


@dataclass(frozen=True)
class FinalState:
    """What an ended update leaves behind: the stack's deployment text at that version."""

    compressed: bytes
    size: int
    sha256: str
    resource_count: int
    # The StackReference names the state reads; None: the same as the version it came from.
    references: tuple[str, ...] | None = None
    # The blob holding `compressed` (its SHA-256), once it is in the blob store.
    blob_digest: str | None = None


@dataclass(frozen=True)
class StatusEvent:
    index: int
    kind: str
    fields: bytes


@dataclass(frozen=True)
class EngineEvent:
    sequence: int
    timestamp: int
    kind: str
    data: bytes


@dataclass(frozen=True)
class StackReference:
    """A StackReference name that a stack's newest version (`version`) reads."""

    stack_id: str
    version: int
    name: str


@dataclass(frozen=True)
class HistoryPage:
    updates: tuple[UpdateRecord, ...]
    total: int


def validate_kind(kind: str) -> str:
    if kind not in CREATE_KINDS:
        raise InvalidArgument(f"Bad Request: unknown update kind '{kind}'")
    return kind


def validate_complete_status(status: str) -> str:
    if status not in COMPLETE_STATUSES:
        raise InvalidArgument(f"Bad Request: unrecognized status '{status}'")
    return status


def validate_renew_duration(seconds: int) -> int:
    if not 0 <= seconds <= MAX_RENEW_SECONDS:
        raise OutOfRange(
            f"Bad Request: Renewal duration must be between 0 and {MAX_RENEW_SECONDS} seconds"
        )
    return seconds


def check_token_lookup(token_ids: Sequence[str], stack_ids: Sequence[str]) -> None:
    """A lookup of updates by token names at least one stack and at most 1000 of each."""
    if not stack_ids:
        raise InvalidArgument("Bad Request: name at least one stack")
    if len(token_ids) > MAX_TOKEN_LOOKUP or len(stack_ids) > MAX_TOKEN_LOOKUP:
        raise InvalidArgument(f"Bad Request: at most {MAX_TOKEN_LOOKUP} tokens and stacks")


def history_page(page_size: int, page: int) -> tuple[int, int]:
    """(limit, offset) for a 1-based history page; 0 means the defaults."""
    size = page_size or DEFAULT_HISTORY_PAGE_SIZE
    number = page or 1
    if not 1 <= size <= MAX_HISTORY_PAGE_SIZE:
        raise InvalidArgument(
            f"Bad Request: pageSize must be between 1 and {MAX_HISTORY_PAGE_SIZE}"
        )
    if number < 1:
        raise InvalidArgument("Bad Request: page must be 1 or more")
    return size, (number - 1) * size


def feed_page(page: int, page_size: int) -> tuple[int, int]:
    """(limit, offset) for the activity feed and preview lists: page 0 is everything (bounded;
    a `pageSize` sent along is checked, then has nothing to size), pages from 1 hold
    `page_size` entries each (0: the default size)."""
    if page < 0:
        raise InvalidArgument("Bad Request: Invalid 'page' value. Must be >= 0.")
    if page_size < 0:
        raise InvalidArgument("Bad Request: Invalid 'pageSize' value. Must be >= 0.")
    if page_size > MAX_FEED_ITEMS:
        raise InvalidArgument(
            f"Bad Request: Invalid 'pageSize' value. Must be at most {MAX_FEED_ITEMS}."
        )
    if page == 0:
        return MAX_FEED_ITEMS, 0
    size = page_size or DEFAULT_HISTORY_PAGE_SIZE
    return size, (page - 1) * size


def events_page_size(requested: int) -> int:
    size = requested or DEFAULT_EVENTS_PAGE_SIZE
    if not 1 <= size <= MAX_EVENTS_PAGE_SIZE:
        raise InvalidArgument(
            f"Bad Request: page size must be between 1 and {MAX_EVENTS_PAGE_SIZE}"
        )
    return size


# A filtered read of engine events looks at most this many stored events per request; the
# continuation token then resumes the scan (a page may come back short, never wrong).
MAX_FILTERED_EVENT_SCAN = 20_000
MAX_EVENT_TYPE_FILTERS = 32
# Where each engine event's payload names its resource (seed 000's EngineEvent members).
_EVENT_URN_PATHS: Mapping[str, tuple[tuple[str, ...], ...]] = {
    "resourcePreEvent": (("metadata", "urn"),),
    "resOutputsEvent": (("metadata", "urn"),),
    "resOpFailedEvent": (("metadata", "urn"),),
    "diagnosticEvent": (("urn",),),
    "policyEvent": (("resourceUrn",),),
    "policyRemediationEvent": (("resourceUrn",),),
    "startDebuggingEvent": (),
}


@dataclass(frozen=True)
class EventFilter:
    """Which engine events a reader wants: payload types (empty: all) and one resource."""

    kinds: tuple[str, ...] = ()
    urn: str = ""

    @property
    def is_empty(self) -> bool:
        return not self.kinds and not self.urn


ALL_EVENTS = EventFilter()


def event_filter(kinds: Sequence[str], urn: str) -> EventFilter:
    """Validated filter: types are payload member names (`resourcePreEvent`), also accepted
    without the `Event` suffix (`resourcePre`)."""
    names: list[str] = []
    for kind in kinds:
        if not kind or len(kind) > 64 or not kind.isalnum():
            raise InvalidArgument(f"Bad Request: invalid engine event type {kind[:64]!r}")
        name = kind if kind.endswith("Event") else kind + "Event"
        if name not in names:
            names.append(name)
    if len(names) > MAX_EVENT_TYPE_FILTERS:
        raise InvalidArgument(
            f"Bad Request: at most {MAX_EVENT_TYPE_FILTERS} engine event types may be given"
        )
    if len(urn) > 4096:
        raise InvalidArgument("Bad Request: the urn filter is too long")
    return EventFilter(tuple(names), urn)


def event_names_urn(kind: str, payload: Mapping[str, object], urn: str) -> bool:
    """Whether a decoded engine event (`{kind: {...}}`) is about resource `urn`."""
    body = payload.get(kind)
    for path in _EVENT_URN_PATHS.get(kind, ()):
        value: object = body
        for key in path:
            value = value.get(key) if isinstance(value, Mapping) else None
        if value == urn:
            return True
    return False


@dataclass(frozen=True)
class Timeline:
    """An update and the previews run ahead of it: those of its group of work, the rest."""

    update: UpdateRecord
    collated: tuple[UpdateRecord, ...]
    other_previews: tuple[UpdateRecord, ...]


def normalised_config(raw: bytes) -> bytes:
    """An update's config as every reader can parse it: each value an object with `string`
    (text), `secret` and `object` (booleans), as the CLI sends them and the SDK requires.
    Members a client left out get their zero value; anything else it added is dropped."""
    try:
        config = orjson.loads(raw) if raw else {}
    except orjson.JSONDecodeError:
        return b"{}"
    if not isinstance(config, dict):
        return b"{}"
    return orjson.dumps({str(key): _config_value(value) for key, value in config.items()})


def _config_value(value: object) -> dict[str, object]:
    if not isinstance(value, Mapping):
        value = {"string": value}
    text = value.get("string")
    is_object = bool(value.get("object", False))
    if text is None:
        text = ""
    elif not isinstance(text, str):
        is_object = is_object or isinstance(text, dict | list)
        text = orjson.dumps(text).decode()
    return {"string": text, "secret": bool(value.get("secret", False)), "object": is_object}


# The environment keys the Pulumi CLI records about where an operation ran.
GIT_HEAD = "git.head"
CI_PR_NUMBER = "ci.pr.number"
CI_PR_HEAD_SHA = "ci.pr.headSHA"
VCS_REPOSITORY = ("vcs.kind", "vcs.owner", "vcs.repo")


def collates_with(update: Mapping[str, str], preview: Mapping[str, str]) -> bool:
    """Whether a preview belongs to the same group of work as an update (seed 000's collated
    set, "e.g. a GitHub PR"): the same commit, or the same pull request of the same
    repository, or the pull request whose head commit the update ran."""
    head = update.get(GIT_HEAD)
    if head and head in (preview.get(GIT_HEAD), preview.get(CI_PR_HEAD_SHA)):
        return True
    number = update.get(CI_PR_NUMBER)
    same_repository = all(update.get(key) == preview.get(key) for key in VCS_REPOSITORY)
    return bool(number) and number == preview.get(CI_PR_NUMBER) and same_repository


def parse_index_token(token: str) -> int:
    """Continuation tokens are the next index to return, as decimal text; '' starts over."""
    if not token:
        return 0
    if not token.isdigit() or len(token) > 19:
        raise InvalidArgument("Bad Request: Invalid continuation token.")
    return int(token)


def history_result(update: UpdateRecord) -> str:
    """History's result vocabulary: the SDK knows no 'cancelled', so that reads as failed."""
    if update.status == NOT_STARTED:
        return "not-started"
    if update.status == RUNNING:
        return "in-progress"
    if update.status == SUCCEEDED:
        return "succeeded"
    return "failed"


def status_text(update: UpdateRecord) -> str:
    """`GET …/update/{id}` status words (note the space in 'not started')."""
    return "not started" if update.status == NOT_STARTED else update.status


def lease_is_valid(update: UpdateRecord, now: float) -> bool:
    return (
        update.status == RUNNING
        and update.lease_expires_at is not None
        and update.lease_expires_at > now
    )


class LeaseExpired(FailedPrecondition):
    """The lease ran out before this call; renewing it is refused with 403 instead."""


def update_not_found() -> NotFound:
    return NotFound("Not Found: Update")


def not_started() -> FailedPrecondition:
    return FailedPrecondition("Conflict: The Update has not started")


def ended_error(status: str) -> FailedPrecondition:
    if status == CANCELLED:
        return FailedPrecondition("Conflict: The Update has been cancelled")
    return FailedPrecondition("Conflict: The Update has already completed")


def claim_refusal(update: UpdateRecord | None, lease: LeaseRef) -> DomainError | None:
    """Why an update-token call may not act for this update at all, or None.

    The one binding rule, checked on the row every fenced write already reads: the update
    must exist under the stack path the call was addressed to (else 404, whether or not it
    exists elsewhere), and the token must be its lease (else 401).
    """
    if update is None or update.stack_path != lease.stack_path:
        return update_not_found()
    if update.lease_token_hash != lease.token_hash:
        return Unauthenticated("Unauthorized: the update token is not valid for this update")
    return None


def lease_refusal(update: UpdateRecord | None, lease: LeaseRef, now: float) -> DomainError | None:
    """Why an update-token write is refused (wrong update, stack or token; lease not
    current), or None when the lease is current."""
    refused = claim_refusal(update, lease)
    if refused is not None or update is None:
        return refused
    if lease_is_valid(update, now):
        return None
    if update.status == NOT_STARTED:
        return not_started()
    if update.status in ENDED:
        return ended_error(update.status)
    return LeaseExpired("Conflict: The Update has already timed out")


def journal_refusal(update: UpdateRecord | None, lease: LeaseRef, now: float) -> DomainError | None:
    """Why journal entries may not be appended under this lease (see `lease_refusal`; a
    preview's; journaling not negotiated when the update started), or None."""
    refused = lease_refusal(update, lease, now)
    if refused is not None or update is None:
        return refused
    if update.is_preview:
        return preview_write_refused()
    if update.journal_version != 1:
        return FailedPrecondition(
            "Conflict: journal entries need journalVersion 1, negotiated when the update started"
        )
    return None


def start_refusal(status: str) -> DomainError | None:
    """Why an update in this status may not start, or None."""
    if status != NOT_STARTED:
        return FailedPrecondition("Conflict: The Update has already started")
    return None


def holder_refusal(holder: UpdateRecord, now: float) -> DomainError | None:
    """409 while the update holding the stack has a current lease; None when it lapsed (the
    caller ends it and takes the stack)."""
    if lease_is_valid(holder, now):
        return FailedPrecondition(CONFLICT_MESSAGE)
    return None


def end_refusal(
    update: UpdateRecord, status: str, lease: LeaseRef | None, now: float
) -> DomainError | None:
    """Why the update may not end with `status` now, or None.

    With a lease this is `complete`, which must hold a current lease and may be repeated with
    the same status (None for an update it already ended so); without one it is `cancel`,
    which works whatever the lease says.
    """
    if lease is not None:
        refused = claim_refusal(update, lease)
        if refused is not None:
            return refused
    if update.status in ENDED:
        if lease is not None and update.status == status:
            return None
        return ended_error(update.status)
    if update.status == NOT_STARTED:
        return not_started()
    if lease is not None:
        return lease_refusal(update, lease, now)
    return None


def preview_write_refused() -> PermissionDenied:
    return PermissionDenied(
        "Forbidden: Updating the checkpoint is not permitted for preview operations."
    )

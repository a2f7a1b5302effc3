"""Frozen records of the audit log and its pure rules: bounds, paging tokens, retention."""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, replace
from typing import Any

from services.common.errors import InvalidArgument

MICROS_PER_SECOND = 1_000_000
MICROS_PER_DAY = 86_400 * MICROS_PER_SECOND

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000
# An export covers at most one quarter and carries at most this many entries, so one call
# can never pull the whole table into memory.
MAX_EXPORT_WINDOW_DAYS = 92
MAX_EXPORT_EVENTS = 100_000

# Column widths; longer values are cut, never refused: recording must not fail on them.
FIELD_LIMITS: dict[str, int] = {
    "organization": 100,
    "event": 64,
    "target": 512,
    "description": 1024,
    "actor_login": 100,
    "actor_name": 255,
    "token_id": 64,
    "token_name": 255,
    "source_ip": 64,
    "user_agent": 512,
    "method": 16,
    "path": 2048,
    "request_id": 128,
}


class ActorKind(enum.Enum):
    """Who made a call; the value is what is stored."""

    USER = "user"
    UPDATE_TOKEN = "update token"
    AGENT_POOL = "agent pool"
    ANONYMOUS = "anonymous"


@dataclass(frozen=True)
class AuditEntry:
    """One recorded call; `id` is empty until stored."""

    time_micros: int
    organization: str
    event: str
    target: str
    description: str
    actor_kind: ActorKind
    actor_login: str
    actor_name: str
    token_id: str
    token_name: str
    source_ip: str
    user_agent: str
    status: int
    method: str
    path: str
    request_id: str
    is_org_admin_required: bool
    is_auth_failure: bool
    id: str = ""


@dataclass(frozen=True)
class AuditQuery:
    """Which entries to read; an empty organization means every organization, unless
    `is_site_level` asks for only the entries recorded under none."""

    organization: str = ""
    since_micros: int = 0
    until_micros: int = 0
    user_login: str = ""
    event: str = ""
    is_site_level: bool = False


@dataclass(frozen=True)
class AuditPage:
    entries: tuple[AuditEntry, ...]
    continuation_token: str


def _clean(value: str, limit: int) -> str:
    # NUL cannot be stored in PostgreSQL text; the rest is kept as received, cut to size.
    return value.replace("\x00", "")[:limit]


def bounded_entry(entry: AuditEntry) -> AuditEntry:
    """The entry with every text field storable: NUL removed, cut to its column width."""
    cleaned: dict[str, Any] = {
        name: _clean(getattr(entry, name), limit) for name, limit in FIELD_LIMITS.items()
    }
    cleaned["status"] = entry.status if 0 <= entry.status <= 999 else 0
    return replace(entry, **cleaned)


def validate_query(query: AuditQuery) -> AuditQuery:
    if query.is_site_level and query.organization:
        raise InvalidArgument(
            "Bad Request: site-level entries belong to no organization; do not name one"
        )
    if query.since_micros < 0 or query.until_micros < 0:
        raise InvalidArgument("Bad Request: times must not be negative")
    if query.since_micros and query.until_micros and query.since_micros > query.until_micros:
        raise InvalidArgument("Bad Request: the start of the time range is after its end")
    return query


def validate_export(query: AuditQuery) -> AuditQuery:
    """An export needs a closed time window no wider than MAX_EXPORT_WINDOW_DAYS."""
    validate_query(query)
    if not query.since_micros or not query.until_micros:
        raise InvalidArgument("Bad Request: an export needs both ends of its time window")
    if query.until_micros - query.since_micros > MAX_EXPORT_WINDOW_DAYS * MICROS_PER_DAY:
        raise InvalidArgument(
            f"Bad Request: an export covers at most {MAX_EXPORT_WINDOW_DAYS} days; "
            "narrow the time window"
        )
    return query


def too_many_to_export() -> InvalidArgument:
    return InvalidArgument(
        f"Bad Request: more than {MAX_EXPORT_EVENTS} entries in the time window; narrow it"
    )


def page_size(requested: int) -> int:
    if requested < 0:
        raise InvalidArgument("Bad Request: the page size must not be negative")
    if requested == 0:
        return DEFAULT_PAGE_SIZE
    return min(requested, MAX_PAGE_SIZE)


def continuation_token(time_micros: int, last_id: int) -> str:
    """Paging resumes after the last entry shown (entries are listed newest first)."""
    return f"{time_micros}.{last_id}"


_TOKEN = re.compile(r"(\d{1,19})\.(\d{1,19})")


def parse_continuation_token(token: str) -> tuple[int, int] | None:
    """The (time, id) of the last entry shown, or None for the first page."""
    if not token:
        return None
    found = _TOKEN.fullmatch(token) if token.isascii() else None
    if found is None:
        raise InvalidArgument("Bad Request: invalid continuation token")
    return int(found.group(1)), int(found.group(2))


def retention_cutoff(now_seconds: float, retention_days: int) -> int | None:
    """Entries recorded before this moment (micros) are pruned; None keeps everything."""
    if retention_days <= 0:
        return None
    return int(now_seconds * MICROS_PER_SECOND) - retention_days * MICROS_PER_DAY

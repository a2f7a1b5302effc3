"""Frozen records the stacks service passes between its layers, and its pure rules."""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from services.common import limits
from services.common.errors import InvalidArgument, NotFound

NAME_PATTERN = re.compile(limits.STACK_NAME)
TAG_NAME_PATTERN = re.compile(limits.TAG_NAME)
MAX_NAME_LENGTH = limits.MAX_STACK_NAME_LENGTH
MAX_TAG_VALUE_LENGTH = limits.MAX_TAG_VALUE_LENGTH
MAX_TAGS = 100

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = limits.MAX_STACK_PAGE_SIZE
# A token is three names of at most 100 ASCII characters; anything far longer is not ours.
MAX_TOKEN_LENGTH = 1024
_TOKEN_ALPHABET = re.compile(r"[A-Za-z0-9_-]*")


@dataclass(frozen=True, order=True)
class StackPath:
    """A stack's current name; ordering follows the listing order."""

    organization: str
    project: str
    stack: str

    def __str__(self) -> str:
        return f"{self.organization}/{self.project}/{self.stack}"


@dataclass(frozen=True)
class StackConfig:
    """ESC-backed ("remote") configuration; ordinary stacks have none."""

    environment: str
    secrets_provider: str = ""
    encrypted_key: str = ""
    encryption_salt: str = ""


@dataclass(frozen=True)
class NotificationSettings:
    """Whether update failures and successes are notified; both off for a new stack."""

    notify_update_failure: bool = False
    notify_update_success: bool = False
    # Whether they were ever set; until then webhooks get every update outcome.
    configured: bool = False

    def notifies(self, result: str) -> bool:
        """Whether an update with this result goes to the stack's and its organization's
        webhooks (other results and other events always do)."""
        if not self.configured:
            return True
        if result == "succeeded":
            return self.notify_update_success
        if result == "failed":
            return self.notify_update_failure
        return True


@dataclass(frozen=True)
class NewStack:
    path: StackPath
    tags: Mapping[str, str] = field(default_factory=dict)
    config: StackConfig | None = None
    teams: tuple[str, ...] = ()
    # The creator's login; empty when the caller is not a user (internal calls).
    owner_login: str = ""


@dataclass(frozen=True)
class StackRecord:
    """A stored stack; `id` is stable across renames."""

    id: str
    path: StackPath
    tags: Mapping[str, str]
    config: StackConfig | None
    teams: tuple[str, ...]
    created_at: datetime
    updated_at: datetime
    owner_login: str
    notifications: NotificationSettings


@dataclass(frozen=True)
class DeletedStack:
    """A deleted stack that can still be restored under its stable id."""

    id: str
    path: StackPath
    deleted_at: datetime
    deleted_by: str


def restore_cutoff(now: float, retention_days: float) -> float:
    """Tombstones deleted at or before this time (Unix seconds) are out of their window."""
    return now - retention_days * 86400


@dataclass(frozen=True)
class StackQuery:
    """One page of a stack listing: visibility, exact filters and the keyset position."""

    visible_organizations: frozenset[str]
    organization: str = ""
    project: str = ""
    tag_name: str = ""
    tag_value: str | None = None
    after: StackPath | None = None
    page_size: int = DEFAULT_PAGE_SIZE
    # Empty: any stack; otherwise only these stable ids.
    stack_ids: frozenset[str] = frozenset()


@dataclass(frozen=True)
class ReferenceRecord:
    """A StackReference held by a stack's newest state, as the updates service found it."""

    stack_id: str
    version: int
    # The name as the program wrote it: `org/project/stack`, `org/stack` or `stack`.
    name: str


@dataclass(frozen=True)
class DownstreamReference:
    """A stack whose state reads another one, and the version of that state."""

    path: StackPath
    version: int


@dataclass(frozen=True)
class StartedUpdate:
    """What the updates service answers a start with: the version, the lease, the journal."""

    version: int
    token: str
    token_expiration: int
    journal_version: int


@dataclass(frozen=True)
class StackPage:
    stacks: Sequence[StackRecord]
    # Empty on the last page.
    continuation_token: str = ""


def validate_name(kind: str, value: str) -> str:
    """Check an organization, project or stack name the way the CLI restricts them."""
    if not NAME_PATTERN.fullmatch(value):
        if not value or len(value) > MAX_NAME_LENGTH:
            reason = f"names must be 1 to {MAX_NAME_LENGTH} characters long"
        else:
            reason = "names may only contain alphanumerics, hyphens, underscores, or periods"
        raise InvalidArgument(f"Bad Request: invalid {kind} name '{value}': {reason}")
    if value in limits.RESERVED_STACK_NAMES:
        raise InvalidArgument(f"Bad Request: invalid {kind} name '{value}': reserved name")
    return value


def validate_path(path: StackPath) -> StackPath:
    validate_name("organization", path.organization)
    validate_name("project", path.project)
    validate_name("stack", path.stack)
    return path


def validate_tags(tags: Mapping[str, str]) -> Mapping[str, str]:
    """Check a complete tag set: names, value lengths and how many there are."""
    if len(tags) > MAX_TAGS:
        raise InvalidArgument(f"Bad Request: a stack may have at most {MAX_TAGS} tags")
    for name in sorted(tags):
        if not TAG_NAME_PATTERN.fullmatch(name):
            raise InvalidArgument(
                f"Bad Request: invalid tag name '{name}': tag names must be 1 to 40 "
                "alphanumerics, hyphens, underscores, periods, or colons"
            )
        if len(tags[name]) > MAX_TAG_VALUE_LENGTH:
            raise InvalidArgument(
                f"Bad Request: invalid value for tag '{name}': "
                f"values may be at most {MAX_TAG_VALUE_LENGTH} characters long"
            )
    return tags


def validate_new_stack(stack: NewStack) -> NewStack:
    validate_path(stack.path)
    validate_tags(stack.tags)
    if stack.config is not None and not stack.config.environment:
        raise InvalidArgument("Bad Request: stack config needs an environment")
    return stack


def rename_target(current: StackPath, new_project: str, new_name: str) -> StackPath:
    """Where a rename leads; empty parts stay as they are and the organization never changes."""
    target = StackPath(
        organization=current.organization,
        project=new_project or current.project,
        stack=new_name or current.stack,
    )
    if target == current:
        raise InvalidArgument("Bad Request: No rename to apply.")
    return validate_path(target)


def transfer_target(current: StackPath, destination: str) -> StackPath:
    """Where a transfer leads: the same project and name in another organization."""
    validate_name("organization", destination)
    if destination == current.organization:
        raise InvalidArgument(f"Bad Request: the stack is already in organization '{destination}'")
    return StackPath(organization=destination, project=current.project, stack=current.stack)


def validate_owner_login(login: str) -> str:
    if not login:
        raise InvalidArgument("Bad Request: the new owner's login ('githubLogin') is required")
    return validate_name("user", login)


def resolve_page_size(requested: int) -> int:
    """0 means the default; anything else must lie in 1..MAX_PAGE_SIZE."""
    if requested == 0:
        return DEFAULT_PAGE_SIZE
    if not 1 <= requested <= MAX_PAGE_SIZE:
        raise InvalidArgument(f"Bad Request: page size must be between 1 and {MAX_PAGE_SIZE}")
    return requested


def encode_continuation_token(last: StackPath) -> str:
    """URL-safe base64 without padding, so the CLI can append it to a URL unescaped."""
    payload = json.dumps(
        [last.organization, last.project, last.stack], separators=(",", ":"), ensure_ascii=True
    )
    return base64.urlsafe_b64encode(payload.encode("ascii")).rstrip(b"=").decode("ascii")


def decode_continuation_token(token: str) -> StackPath:
    """The last stack of the previous page; InvalidArgument for anything we did not issue."""
    invalid = InvalidArgument("Bad Request: invalid continuation token")
    if len(token) > MAX_TOKEN_LENGTH or not _TOKEN_ALPHABET.fullmatch(token):
        raise invalid
    try:
        raw = base64.b64decode(token + "=" * (-len(token) % 4), altchars=b"-_", validate=True)
        value = json.loads(raw.decode("ascii"))
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise invalid from None
    if (
        not isinstance(value, list)
        or len(value) != 3
        or not all(isinstance(part, str) for part in value)
    ):
        raise invalid
    organization, project, stack = value
    return StackPath(organization=organization, project=project, stack=stack)


def stack_query(
    *,
    visible_organizations: Iterable[str],
    organization: str,
    project: str,
    tag_name: str,
    tag_value: str | None,
    continuation_token: str,
    page_size: int,
    stack_ids: Iterable[str] = (),
) -> StackQuery:
    """Check a listing request and turn it into a query for one page."""
    if tag_value is not None and not tag_name:
        raise InvalidArgument("Bad Request: a tag value filter needs a tag name")
    return StackQuery(
        visible_organizations=frozenset(visible_organizations),
        organization=organization,
        project=project,
        tag_name=tag_name,
        tag_value=tag_value,
        after=decode_continuation_token(continuation_token) if continuation_token else None,
        page_size=resolve_page_size(page_size),
        stack_ids=frozenset(stack_ids),
    )


# The seed names what annotations are for (compliance tracking, custom metadata and
# integration data) and no other kinds; any other kind names no annotation at all.
ANNOTATION_KINDS = ("compliance", "custom", "integration")
SOURCE_PATTERN = re.compile(limits.ANNOTATION_SOURCE)
MAX_ANNOTATION_BYTES = 1 << 20
# Older versions beyond this many are forgotten when a new one is written.
MAX_ANNOTATION_VERSIONS = 100


@dataclass(frozen=True)
class Annotation:
    kind: str
    source: str
    version: int
    content: bytes
    modified_by: str
    modified_at: datetime


@dataclass(frozen=True)
class AnnotationQuery:
    kind: str
    # Empty: written by any source.
    source: str = ""
    # 0: the latest.
    version: int = 0


@dataclass(frozen=True)
class NewAnnotation:
    kind: str
    source: str
    content: bytes
    modified_by: str
    # The version the writer last read (0: none yet); None skips the check.
    expected_version: int | None = None


def annotation_not_found(kind: str) -> NotFound:
    return NotFound(f"Not Found: Annotation '{kind}' not found")


def validate_annotation_kind(kind: str) -> str:
    if kind not in ANNOTATION_KINDS:
        raise NotFound(
            f"Not Found: unknown annotation kind '{kind[:MAX_NAME_LENGTH]}'; "
            f"known kinds: {', '.join(ANNOTATION_KINDS)}"
        )
    return kind


def validate_annotation_source(source: str) -> str:
    if source and not SOURCE_PATTERN.fullmatch(source):
        raise InvalidArgument(
            "Bad Request: an annotation source is 1 to 100 alphanumerics or '_.:/@-' characters"
        )
    return source


def annotation_query(kind: str, source: str, version: int) -> AnnotationQuery:
    if version < 0:
        raise InvalidArgument("Bad Request: an annotation version is a positive integer")
    return AnnotationQuery(
        kind=validate_annotation_kind(kind),
        source=validate_annotation_source(source),
        version=version,
    )


def validate_new_annotation(annotation: NewAnnotation) -> NewAnnotation:
    """Check kind, source, expected version and that the content is one JSON value."""
    validate_annotation_kind(annotation.kind)
    validate_annotation_source(annotation.source)
    if annotation.expected_version is not None and annotation.expected_version < 0:
        raise InvalidArgument("Bad Request: an annotation version is a positive integer")
    if len(annotation.content) > MAX_ANNOTATION_BYTES:
        raise InvalidArgument(
            f"Bad Request: an annotation may be at most {MAX_ANNOTATION_BYTES} bytes of JSON"
        )
    try:
        json.loads(annotation.content)
    except (ValueError, RecursionError):
        raise InvalidArgument("Bad Request: an annotation must be a JSON value") from None
    return annotation

"""Frozen records of the copilot service and its pure rules."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from services.common import limits
from services.common.errors import InvalidArgument, NotFound

USER = "user"
ASSISTANT = "assistant"
RESPONSE = "response"
TRACE = "trace"
STATUS = "status"
PROGRAM = "program"

MAX_QUERY_LENGTH = limits.MAX_COPILOT_QUERY_LENGTH
# The hosted console's URL, which seed 004 requires `url` to start with.
HOSTED_CONSOLE_URL = "https://app.pulumi.com"

_NAME = r"[A-Za-z0-9_.-]+"
_UPDATE_PATH = re.compile(rf"^/({_NAME})/({_NAME})/({_NAME})/updates/(\d+)/?$")
_STACK_PATH = re.compile(rf"^/({_NAME})/({_NAME})/({_NAME})/?$")
_PROJECT_PATH = re.compile(rf"^/({_NAME})/({_NAME})/?$")


@dataclass(frozen=True)
class Message:
    role: str
    kind: str
    text: str = ""
    program: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class Focus:
    """What the conversation is about after a turn, for the follow-up questions."""

    intent: str = ""
    project: str = ""
    stack: str = ""  # project/stack
    version: int = 0
    role: str = ""
    # The last program asked for: resource, cloud, language, and the Helm chart if any.
    program: tuple[str, ...] | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "intent": self.intent,
            "project": self.project,
            "stack": self.stack,
            "version": self.version,
            "role": self.role,
            "program": list(self.program) if self.program else None,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> Focus:
        if not isinstance(data, Mapping):
            return cls()
        program = data.get("program")
        chosen = None
        if isinstance(program, list) and len(program) in (3, 4):
            chosen = tuple(str(part) for part in program)
        return cls(
            intent=str(data.get("intent", "")),
            project=str(data.get("project", "")),
            stack=str(data.get("stack", "")),
            version=int(data.get("version", 0) or 0),
            role=str(data.get("role", "")),
            program=chosen,
        )


@dataclass(frozen=True)
class Conversation:
    id: str
    organization: str
    user_id: str
    messages: tuple[Message, ...] = ()
    focus: Focus = field(default_factory=Focus)


@dataclass(frozen=True)
class Context:
    """What the `url` points at (any part may be empty)."""

    organization: str = ""
    project: str = ""
    stack: str = ""
    version: int = 0


@dataclass(frozen=True)
class Asker:
    """Who asks, and what they may see."""

    user_id: str
    login: str
    organization: str
    visible_organizations: frozenset[str] = field(default_factory=frozenset)
    client: str = "api"
    # The caller's credential, only for filtering stacks to the readable ones.
    token: str = field(default="", repr=False)


def validate_query(query: str) -> str:
    text = query.strip()
    if not text:
        raise InvalidArgument("Bad Request: 'query' is required")
    if len(text) > MAX_QUERY_LENGTH:
        raise InvalidArgument(f"Bad Request: 'query' may be at most {MAX_QUERY_LENGTH} characters")
    return text


def check_organization(organization: str, visible: frozenset[str]) -> str:
    """The organization must be one of the caller's (others look the same as missing ones)."""
    if not organization:
        raise InvalidArgument("Bad Request: 'state.client.cloudContext.orgId' is required")
    if organization not in visible:
        raise NotFound(f"Not Found: organization '{organization}'")
    return organization


def parse_context(url: str, prefixes: Sequence[str]) -> Context:
    """Check `url` against the accepted console prefixes and read what it points at."""
    if not url:
        return Context()
    prefix = next((p for p in prefixes if p and _starts_with(url, p)), None)
    if prefix is None:
        accepted = ", ".join(p for p in prefixes if p)
        raise InvalidArgument(f"Bad Request: 'url' must start with the console URL ({accepted})")
    path = urlsplit(url).path
    base_path = urlsplit(prefix).path.rstrip("/")
    if base_path and path.startswith(base_path):
        path = path[len(base_path) :]
    if match := _UPDATE_PATH.match(path):
        return Context(match[1], match[2], match[3], int(match[4]))
    if match := _STACK_PATH.match(path):
        return Context(match[1], match[2], match[3])
    if match := _PROJECT_PATH.match(path):
        return Context(match[1], match[2])
    segments = [segment for segment in path.split("/") if segment]
    return Context(organization=segments[0] if segments else "")


def _starts_with(url: str, prefix: str) -> bool:
    """`prefix` followed by the end, a slash, a query or a fragment (not `…com.evil`)."""
    base = prefix.rstrip("/")
    return url == base or any(url.startswith(base + sep) for sep in ("/", "?", "#"))


def trace_text(asker: Asker) -> str:
    return (
        f"Conversation with user '{asker.login}' in org '{asker.organization}' "
        f"from {asker.client} (rest-api-v2)"
    )


@dataclass(frozen=True)
class Answer:
    """What a skill answers: its text, and the program when it generated one."""

    skill: str
    text: str
    program: Mapping[str, Any] | None = None
    # May a model rephrase the text? (Never for generated code.)
    is_rephrasable: bool = True
    # What a follow-up question may refer to; None keeps the conversation's focus.
    focus: Focus | None = None


@dataclass(frozen=True)
class DirectSkill:
    """The SDK's direct skill calls: explain an update's or a preview's text output."""

    is_preview: bool
    output: str

    @property
    def question(self) -> str:
        return "Explain this preview." if self.is_preview else "Summarize this update."

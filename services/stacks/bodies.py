"""The stack-creation body (`POST /api/stacks/{org}/{project}`, protocol §2.2), decoded once.

The gateway forwards the body's bytes; one pass checks its shape, parses the small members and
keeps the exact bytes of an initial `state`, which only the updates service parses (it owns
deployments). Messages are those the REST API has always answered with.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import orjson

from services.common.errors import InvalidArgument
from services.common.rawjson import decode_members
from services.stacks.domain import StackConfig

# A `\\uD800`-`\\uDFFF` escape: Python's scanner accepts a lone surrogate, the API never did.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
_MEMBERS = ("stackName", "tags", "teams", "config", "state")
# Only its bytes are kept: the updates service parses and checks the deployment.
_STATE = "state"


@dataclass(frozen=True)
class StackCreation:
    """What a creation body asks for; `initial_state` is the exact bytes of `state`."""

    stack_name: str
    tags: dict[str, str]
    teams: tuple[str, ...]
    config: StackConfig | None
    initial_state: bytes | None


def stack_creation(body: bytes) -> StackCreation:
    """`{stackName, tags, teams, config, state}`."""
    if not body.strip():
        raise _bad("a JSON request body is required")
    try:
        members = decode_members(body, _MEMBERS, unbuilt=(_STATE,))
    except (ValueError, RecursionError):
        raise _unreadable(body) from None
    if _SURROGATE_ESCAPE.search(body) and (refusal := _strict_refusal(body)) is not None:
        raise refusal  # a lone surrogate: what a strict parser refuses (checked only then)
    values = {name: value for name, (value, _) in members.items()}
    stack_name = _string(values, "stackName")
    if not stack_name:
        raise _bad("'stackName' is required")
    tags = values.get("tags")
    if tags is not None and (
        not isinstance(tags, dict) or not all(isinstance(v, str) for v in tags.values())
    ):
        raise _bad("'tags' must be an object of string values")
    teams = values.get("teams")
    if teams is not None and (
        not isinstance(teams, list) or not all(isinstance(v, str) for v in teams)
    ):
        raise _bad("'teams' must be an array of strings")
    config = _config(values.get("config"))
    state = members[_STATE][1] if _STATE in members else None
    if state == b"null":
        state = None
    if state is not None and not state.startswith(b"{"):
        raise _bad("'state' must be an untyped deployment object")
    return StackCreation(stack_name, dict(tags or {}), tuple(teams or ()), config, state)


def _config(value: Any) -> StackConfig | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise _bad("'config' must be an object")
    config = StackConfig(
        environment=_string(value, "environment"),
        secrets_provider=_string(value, "secretsProvider"),
        encrypted_key=_string(value, "encryptedKey"),
        encryption_salt=_string(value, "encryptionSalt"),
    )
    if not config.environment:
        raise _bad("'config.environment' is required")
    return config


def _string(values: dict[str, Any], name: str) -> str:
    value = values.get(name)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise _bad(f"'{name}' must be a string")
    return value


def _strict_refusal(body: bytes) -> InvalidArgument | None:
    """A strict parser's refusal of the body, if it refuses it."""
    try:
        orjson.loads(body)
    except orjson.JSONDecodeError as error:
        return _bad(f"the request body is not valid JSON ({error.msg})")
    return None


def _unreadable(body: bytes) -> InvalidArgument:
    """Why a body failed, in the words of a strict parser (the error path only)."""
    refusal = _strict_refusal(body)
    if refusal is not None:
        return refusal
    if not isinstance(orjson.loads(body), dict):
        return _bad("the request body must be a JSON object")
    return _bad("the request body is not a JSON object this server can read")


def _bad(message: str) -> InvalidArgument:
    return InvalidArgument(f"Bad Request: {message}")

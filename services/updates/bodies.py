"""Checkpoint request bodies (protocol §4.3) as the CLI sends them, decoded once, here.

The gateway forwards the body's bytes; each decoder makes one pass that checks the body's
shape and yields both the parsed members a write needs and the exact bytes it stores and
hashes. Messages are those the REST API has always answered with.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from services.common.errors import InvalidArgument
from services.common.rawjson import decode_members
from services.updates.checkpoints import parse_json
from services.updates.delta import TextEdit, parse_edits

INT64_BITS = 64
DEFAULT_CHECKPOINT_VERSION = 3

# A `\\uD800`-`\\uDFFF` escape: Python's scanner accepts a lone surrogate, the API never did.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class DeltaWrite:
    """A `checkpointdelta` body: sorted edits, their exact bytes, the hash, the sequence."""

    edits: tuple[TextEdit, ...]
    raw_edits: bytes
    checkpoint_hash: str
    sequence: int


@dataclass(frozen=True)
class TextWrite:
    """A full or verbatim checkpoint: the text to store and the structure it parses to.

    `parsed` is None only when there is no text (a full checkpoint without a deployment).
    """

    text: bytes
    parsed: Mapping[str, Any] | None
    sequence: int = 0
    is_invalid: bool = False


def delta_write(body: bytes) -> DeltaWrite:
    """`PATCH U/checkpointdelta`: `{checkpointHash, deploymentDelta, sequenceNumber}`."""
    members = _members(body, ("checkpointHash", "deploymentDelta", "sequenceNumber"))
    checkpoint_hash = _string(members, "checkpointHash")
    if not checkpoint_hash:
        raise _bad("'checkpointHash' is required")
    items, raw_edits = _exact(members, "deploymentDelta", list)
    sequence = _int(members, "sequenceNumber", 0)
    return DeltaWrite(parse_edits(items), raw_edits, checked_hash(checkpoint_hash), sequence)


def delta_fields(raw_edits: bytes, checkpoint_hash: str, sequence: int) -> DeltaWrite:
    """The same write from typed gRPC fields (the edits' bytes are parsed here, once)."""
    return DeltaWrite(parse_edits(raw_edits), raw_edits, checked_hash(checkpoint_hash), sequence)


def checked_hash(checkpoint_hash: str) -> str:
    """The expected SHA-256 in lowercase hex: the one check of the hash's form."""
    expected = checkpoint_hash.lower()
    if not _SHA256_HEX.fullmatch(expected):
        raise InvalidArgument("Bad Request: checkpointHash must be 64 hexadecimal characters")
    return expected


def text_fields(text: bytes, is_invalid: bool, sequence: int = 0) -> TextWrite:
    """A full or verbatim write from typed gRPC fields (the text is parsed here, once)."""
    if not text or is_invalid:
        return TextWrite(text, None, sequence, is_invalid)
    return TextWrite(text, parse_json(text, "the checkpoint"), sequence, is_invalid)


def verbatim_write(body: bytes) -> TextWrite:
    """`PATCH U/checkpointverbatim`: `{version, untypedDeployment, sequenceNumber}`."""
    members = _members(body, ("untypedDeployment", "sequenceNumber"))
    parsed, text = _exact(members, "untypedDeployment", dict)
    return TextWrite(text, parsed, sequence=_int(members, "sequenceNumber", 0))


def checkpoint_write(body: bytes) -> TextWrite:
    """`PATCH U/checkpoint`: `{isInvalid, version, features, deployment}`, the deployment's
    exact bytes wrapped in an UntypedDeployment text."""
    members = _members(body, ("isInvalid", "version", "features", "deployment"))
    is_invalid = _value(members, "isInvalid") is True
    if _value(members, "deployment") is None:
        return TextWrite(b"", None, is_invalid=is_invalid)
    deployment, raw_deployment = _exact(members, "deployment", dict)
    features = _value(members, "features") or []
    if not isinstance(features, list) or not all(isinstance(f, str) for f in features):
        raise _bad("'features' must be a list of strings")
    head: dict[str, Any] = {"version": _int(members, "version", DEFAULT_CHECKPOINT_VERSION)}
    if features:
        head["features"] = features
    text = orjson.dumps(head)[:-1] + b',"deployment":' + raw_deployment + b"}"
    return TextWrite(text, {**head, "deployment": deployment}, is_invalid=is_invalid)


# -- one pass over the body ------------------------------------------------------------------

Members = dict[str, tuple[Any, bytes]]


def _members(body: bytes, keys: tuple[str, ...]) -> Members:
    if not body.strip():
        raise _bad("a JSON request body is required")
    try:
        members = decode_members(body, keys)
    except (ValueError, RecursionError):
        raise _unreadable(body) from None
    if _SURROGATE_ESCAPE.search(body):
        _strictly_valid(body)  # only then: a lone surrogate is what a strict parser refuses
    return members


def _strictly_valid(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as error:
        raise _bad(f"the request body is not valid JSON ({error.msg})") from None


def _unreadable(body: bytes) -> InvalidArgument:
    """Why a body failed, in the words of a strict parser (the error path only)."""
    value = _strictly_valid(body)
    if not isinstance(value, dict):
        return _bad("the request body must be a JSON object")
    return _bad("the request body is not a JSON object this server can read")


def _value(members: Members, name: str) -> Any:
    member = members.get(name)
    return None if member is None else member[0]


def _exact(members: Members, name: str, kind: type) -> tuple[Any, bytes]:
    """A required object or array member: its value and its exact bytes."""
    member = members.get(name)
    if member is None or not isinstance(member[0], kind):
        raise _bad(f"'{name}' must be a JSON {'object' if kind is dict else 'array'}")
    return member


def _string(members: Members, name: str) -> str:
    value = _value(members, name)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise _bad(f"'{name}' must be a string")
    return value


def _int(members: Members, name: str, default: int) -> int:
    value = _value(members, name)
    if value is None:
        return default
    if not isinstance(value, int) or isinstance(value, bool):
        raise _bad(f"'{name}' must be an integer")
    bound = 1 << (INT64_BITS - 1)
    if not -bound <= value < bound:
        raise _bad(f"'{name}' is out of range")
    return value


def _bad(message: str) -> InvalidArgument:
    return InvalidArgument(f"Bad Request: {message}")

"""Persistence request bodies (protocol §4) as the CLI sends them, decoded once, here.

The gateway forwards the body's bytes; each decoder makes one pass that checks the body's
shape and yields both the parsed members a write needs and the exact bytes it stores and
hashes. Messages are those the REST API has always answered with.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from services.common.errors import InvalidArgument
from services.common.rawjson import decode_members
from services.updates.checkpoints import parse_json
from services.updates.delta import TextEdit, parse_edits
from services.updates.domain import EngineEvent

INT64_BITS = 64
SUMMARY_EVENT = "summaryEvent"
# The stored kind of an engine event is the name of its payload member, cut to this length.
MAX_KIND_LENGTH = 64
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


@dataclass(frozen=True)
class EventBatch:
    """Engine events to store, and the resource changes a summary event among them reports."""

    events: tuple[EngineEvent, ...]
    resource_changes: Mapping[str, int] | None


def journal_entries(body: bytes) -> list[Mapping[str, Any]]:
    """`PATCH U/journalentries`: `{entries: [...]}`, each entry parsed (checked by `journal`)."""
    entries = _object(body).get("entries") or []
    if not isinstance(entries, list):
        raise _bad("'entries' must be a list")
    for entry in entries:
        if not isinstance(entry, dict):
            raise _bad("every journal entry must be an object")
        sequence = entry.get("sequenceID")
        if isinstance(sequence, int) and not _fits(sequence):
            raise _bad("'sequenceID' is out of range")
    return entries


def journal_fields(entries: Sequence[bytes]) -> list[Mapping[str, Any]]:
    """Journal entries from typed gRPC fields, each parsed once."""
    return [parse_json(data, "a journal entry") for data in entries]


def event_batch(body: bytes) -> EventBatch:
    """`POST U/events/batch`: `{events: [...]}`."""
    events = _object(body).get("events") or []
    if not isinstance(events, list):
        raise _bad("'events' must be a list")
    return _batch(events)


def single_event(body: bytes) -> EventBatch:
    """`POST U/events` (legacy): the body is one event."""
    return _batch([_object(body)])


def event_fields(events: Sequence[EngineEvent]) -> EventBatch:
    """Events from typed gRPC fields; only a summary event's JSON is parsed (for its changes)."""
    summaries = [
        parse_json(event.data, "an engine event") for event in events if event.kind == SUMMARY_EVENT
    ]
    return EventBatch(tuple(events), _resource_changes(summaries))


def _batch(events: list[Any]) -> EventBatch:
    decoded = tuple(_engine_event(event) for event in events)
    summaries = [
        event for event, stored in zip(events, decoded, strict=True) if stored.kind == SUMMARY_EVENT
    ]
    return EventBatch(decoded, _resource_changes(summaries))


def _engine_event(event: Any) -> EngineEvent:
    if not isinstance(event, dict):
        raise _bad("every engine event must be an object")
    sequence = event.get("sequence")
    if (
        not isinstance(sequence, int)
        or isinstance(sequence, bool)
        or sequence < 0
        or not _fits(sequence)
    ):
        raise _bad("every engine event needs a 'sequence' of 0 or more")
    timestamp = _int_value(event.get("timestamp"), "timestamp", 0)
    kind = next((key for key in event if key not in ("sequence", "timestamp")), "")
    return EngineEvent(sequence, timestamp, kind[:MAX_KIND_LENGTH], orjson.dumps(event))


def _resource_changes(summaries: Sequence[Any]) -> Mapping[str, int] | None:
    """`resourceChanges` of the first summary event that has them (the history's counts)."""
    for event in summaries:
        summary = event.get("summaryEvent") if isinstance(event, dict) else None
        changes = summary.get("resourceChanges") if isinstance(summary, dict) else None
        if isinstance(changes, dict):
            return {
                str(k): int(v)
                for k, v in changes.items()
                if isinstance(v, int) and not isinstance(v, bool)
            }
    return None


# -- one pass over the body ------------------------------------------------------------------


def _object(body: bytes) -> dict[str, Any]:
    """A body whose every member is needed parsed (no exact bytes are kept)."""
    if not body.strip():
        raise _bad("a JSON request body is required")
    value = _strictly_valid(body)
    if not isinstance(value, dict):
        raise _bad("the request body must be a JSON object")
    return value


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
    return _int_value(_value(members, name), name, default)


def _int_value(value: Any, name: str, default: int) -> int:
    if value is None:
        return default
    if not isinstance(value, int) or isinstance(value, bool):
        raise _bad(f"'{name}' must be an integer")
    if not _fits(value):
        raise _bad(f"'{name}' is out of range")
    return value


def _fits(value: int) -> bool:
    """Whether an int64 field holds the value."""
    bound = 1 << (INT64_BITS - 1)
    return -bound <= value < bound


def _bad(message: str) -> InvalidArgument:
    return InvalidArgument(f"Bad Request: {message}")

"""Checkpoint bodies decoded once by the updates service: exact bytes, parsed values, messages."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.common.errors import InvalidArgument
from services.common.rawjson import decode_members, raw_members
from services.updates import bodies, delta
from services.updates.bodies import (
    checkpoint_write,
    delta_write,
    event_batch,
    journal_entries,
    single_event,
    verbatim_write,
)
from services.updates.delta import TextEdit
from services.updates.domain import EngineEvent

DEPLOYMENT = (
    b'{ "version": 3,\n  "deployment": {"manifest": {"time": "t\\u00e9"},'
    b' "resources": [{"urn": "urn:pulumi:dev::web::t::\xc3\xa9", "type": "t"}]}}'
)
EDITS = b'[ {"Span": {"start": {"offset": 2}, "end": {"offset": 4}}, "NewText": "x\\u00e9"} ]'
HASH = hashlib.sha256(b"new").hexdigest()

values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=4), children, max_size=3)
    ),
    max_leaves=10,
)


@given(st.dictionaries(st.sampled_from(["a", "b", "A", "c"]), values, max_size=4), st.booleans())
def test_decode_members_yields_the_exact_bytes_and_the_value(
    document: dict[str, Any], is_indented: bool
) -> None:
    raw = json.dumps(document, indent=2 if is_indented else None, ensure_ascii=False).encode()
    decoded = decode_members(raw, ("a", "b"))
    for key in ("a", "b"):
        if key not in document:
            assert key not in decoded  # exact names only: "A" is not "a"
            continue
        value, exact = decoded[key]
        assert value == document[key]
        assert exact == raw_members(raw, (key,))[key]


def test_a_delta_body_is_parsed_once_and_its_hash_checked_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: dict[str, int] = {"decode": 0, "hash": 0, "load": 0}

    def counted(name: str, function: Any) -> Any:
        def call(*args: Any) -> Any:
            calls[name] += 1
            return function(*args)

        return call

    monkeypatch.setattr(bodies, "decode_members", counted("decode", decode_members))
    monkeypatch.setattr(bodies, "checked_hash", counted("hash", bodies.checked_hash))
    monkeypatch.setattr(delta, "_load", counted("load", delta._load))
    body = (
        b'{"version":3,"checkpointHash":"' + HASH.upper().encode() + b'",'
        b'"deploymentDelta":' + EDITS + b',"sequenceNumber":7}'
    )
    write = delta_write(body)
    assert calls == {"decode": 1, "hash": 1, "load": 0}
    assert write.raw_edits == EDITS
    assert write.edits == (TextEdit(2, 4, "xé".encode()),)
    assert write.checkpoint_hash == HASH
    assert write.sequence == 7


def test_a_verbatim_body_keeps_the_exact_bytes_and_their_structure() -> None:
    body = b'{"version":3,"untypedDeployment":' + DEPLOYMENT + b',"sequenceNumber":2}'
    write = verbatim_write(body)
    assert write.text == DEPLOYMENT
    assert write.parsed == json.loads(DEPLOYMENT)
    assert write.sequence == 2


def test_a_full_checkpoint_wraps_the_exact_deployment_bytes() -> None:
    deployment = b'{"manifest": {"time": "t"},  "resources": []}'
    body = b'{"isInvalid":false,"version":3,"features":["f"],"deployment":' + deployment + b"}"
    write = checkpoint_write(body)
    assert write.text == b'{"version":3,"features":["f"],"deployment":' + deployment + b"}"
    assert write.parsed == orjson.loads(write.text)
    assert not write.is_invalid
    assert checkpoint_write(b'{"isInvalid":true}').parsed is None


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"  ", "a JSON request body is required"),
        (b"{not json", "the request body is not valid JSON ("),
        (b"[1]", "the request body must be a JSON object"),
        (b'{"checkpointHash":1}', "'checkpointHash' must be a string"),
        (b'{"deploymentDelta":[]}', "'checkpointHash' is required"),
        (b'{"checkpointHash":"ab","deploymentDelta":{}}', "'deploymentDelta' must be a JSON array"),
        (b'{"checkpointHash":"ab","deploymentDelta":[]}', "checkpointHash must be 64 hexadecimal"),
        (
            b'{"checkpointHash":"ab","deploymentDelta":[],"sequenceNumber":1.5}',
            "'sequenceNumber' must be an integer",
        ),
        (
            b'{"checkpointHash":"ab","deploymentDelta":[],"sequenceNumber":9223372036854775808}',
            "'sequenceNumber' is out of range",
        ),
        (b'{"checkpointHash":"ab","deploymentDelta":[{"NewText":"\\ud800"}]}', "not valid JSON"),
        (b'{"checkpointHash":"ab","deploymentDelta":[1e400]}', "not valid JSON"),
        (b'{"checkpointHash":"ab","deploymentDelta":[NaN]}', "not valid JSON"),
    ],
)
def test_bad_delta_bodies_are_refused_with_the_apis_messages(body: bytes, message: str) -> None:
    with pytest.raises(InvalidArgument) as refused:
        delta_write(body)
    assert refused.value.message.startswith("Bad Request: ")
    assert message in refused.value.message


def test_bad_checkpoint_members_are_refused() -> None:
    with pytest.raises(InvalidArgument, match="'untypedDeployment' must be a JSON object"):
        verbatim_write(b'{"untypedDeployment":[1],"sequenceNumber":1}')
    with pytest.raises(InvalidArgument, match="'features' must be a list of strings"):
        checkpoint_write(b'{"deployment":{},"features":[1]}')
    with pytest.raises(InvalidArgument, match="'deployment' must be a JSON object"):
        checkpoint_write(b'{"deployment":[]}')


def test_journal_and_event_bodies_are_parsed_once(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = 0
    loads = orjson.loads

    def counted(data: bytes) -> Any:
        nonlocal calls
        calls += 1
        return loads(data)

    monkeypatch.setattr(orjson, "loads", counted)
    entries = [{"sequenceID": 1, "kind": 0, "version": 1}, {"sequenceID": 2, "kind": 1}]
    assert journal_entries(orjson.dumps({"entries": entries})) == entries
    events = [
        {"sequence": 0, "timestamp": 5, "stdoutEvent": {"message": "hi"}},
        {"sequence": 1, "summaryEvent": {"resourceChanges": {"create": 2, "same": True}}},
    ]
    batch = event_batch(orjson.dumps({"events": events}))
    assert calls == 2
    assert batch.events == (
        EngineEvent(0, 5, "stdoutEvent", orjson.dumps(events[0])),
        EngineEvent(1, 0, "summaryEvent", orjson.dumps(events[1])),
    )
    assert batch.resource_changes == {"create": 2}
    assert single_event(orjson.dumps(events[0])).events == batch.events[:1]


@pytest.mark.parametrize(
    ("decode", "body", "message"),
    [
        (journal_entries, b"", "a JSON request body is required"),
        (journal_entries, b"[]", "the request body must be a JSON object"),
        (journal_entries, b'{"entries":{"a":1}}', "'entries' must be a list"),
        (journal_entries, b'{"entries":[1]}', "every journal entry must be an object"),
        (journal_entries, b'{"entries":[{"sequenceID":9223372036854775808}]}', "out of range"),
        (event_batch, b"{x", "the request body is not valid JSON ("),
        (event_batch, b'{"events":1}', "'events' must be a list"),
        (event_batch, b'{"events":[1]}', "every engine event must be an object"),
        (event_batch, b'{"events":[{"sequence":-1}]}', "needs a 'sequence' of 0 or more"),
        (event_batch, b'{"events":[{"sequence":1,"timestamp":"x"}]}', "'timestamp' must be"),
        (single_event, b"[1]", "the request body must be a JSON object"),
    ],
)
def test_bad_journal_and_event_bodies_are_refused(decode: Any, body: bytes, message: str) -> None:
    with pytest.raises(InvalidArgument) as refused:
        decode(body)
    assert refused.value.message.startswith("Bad Request: ")
    assert message in refused.value.message

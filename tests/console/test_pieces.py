"""The console's pure parts: reading deployments and engine events, sessions, redirects."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.console.deployment import (
    MASK,
    OUTPUT_VALUE_SIG,
    SECRET_SIG,
    SIG_KEY,
    DeploymentError,
    mask_secrets,
    parse_deployment,
    provider_urn,
    urn_name,
)
from gateway.console.handlers import ChatContext, safe_next
from gateway.console.session import Session, Sessions, new_nonce
from gateway.console.timeline import (
    DEBUG,
    ERROR,
    INFO,
    WARNING,
    changes_by_op,
    entries,
    entry,
    plain_text,
)
from tests.conftest import make_settings

STACK = "urn:pulumi:dev::web::pulumi:pulumi:Stack::web-dev"
PROVIDER = "urn:pulumi:dev::web::pulumi:providers:aws::default"
BUCKET = "urn:pulumi:dev::web::aws:s3/bucket:Bucket::logs"
ROLE = "urn:pulumi:dev::web::aws:iam/role:Role::runner"


def secret(value: str) -> dict[str, str]:
    return {SIG_KEY: SECRET_SIG, "ciphertext": value}


def untyped(resources: list[object]) -> bytes:
    return orjson.dumps({"version": 3, "deployment": {"manifest": {}, "resources": resources}})


def test_secrets_are_masked_at_any_depth() -> None:
    value = {
        "plain": "visible",
        "password": secret("AAAA"),
        "nested": [{"key": secret("BBBB")}, 3, None],
        "output": {SIG_KEY: OUTPUT_VALUE_SIG, "value": "hidden", "secret": True},
        "known": {SIG_KEY: OUTPUT_VALUE_SIG, "value": "shown"},
        "asset": {SIG_KEY: "c44067f5952c0a294b673a41bacd8c17", "text": "asset text"},
    }
    masked = mask_secrets(value)
    assert masked["plain"] == "visible"
    assert masked["password"] == MASK
    assert masked["nested"] == [{"key": MASK}, 3, None]
    assert masked["output"] == MASK
    assert masked["known"]["value"] == "shown"
    assert masked["asset"]["text"] == "asset text"
    assert "AAAA" not in orjson.dumps(masked).decode()


@given(st.recursive(st.text(max_size=5), lambda inner: st.lists(inner, max_size=3), max_leaves=10))
def test_values_without_secrets_are_unchanged(value: object) -> None:
    assert mask_secrets(value) == value


def test_a_deployment_reads_resources_and_their_relations() -> None:
    text = untyped(
        [
            {"urn": STACK, "type": "pulumi:pulumi:Stack", "outputs": {"token": secret("x")}},
            {"urn": PROVIDER, "type": "pulumi:providers:aws", "custom": True, "id": "p1"},
            {
                "urn": ROLE,
                "type": "aws:iam/role:Role",
                "custom": True,
                "id": "role-1",
                "parent": STACK,
                "provider": f"{PROVIDER}::p1",
            },
            {
                "urn": BUCKET,
                "type": "aws:s3/bucket:Bucket",
                "custom": True,
                "id": "logs-1",
                "parent": STACK,
                "provider": f"{PROVIDER}::p1",
                "dependencies": [ROLE],
                "inputs": {"acl": "private", "key": secret("k")},
                "protect": True,
            },
            "not a resource",
            {"type": "no urn"},
        ]
    )
    deployment = parse_deployment(text)
    assert [r.name for r in deployment.resources] == ["web-dev", "default", "runner", "logs"]
    bucket = deployment.find(BUCKET)
    assert bucket is not None
    assert bucket.provider_urn == PROVIDER and bucket.is_protected
    assert bucket.inputs == {"acl": "private", "key": MASK}
    assert deployment.stack_outputs == {"token": MASK}
    assert [r.name for r in deployment.children(STACK)] == ["runner", "logs"]
    assert [r.name for r in deployment.dependents(ROLE)] == ["logs"]
    groups = deployment.groups()
    assert [g.type for g in groups] == [
        "aws:iam/role:Role",
        "aws:s3/bucket:Bucket",
        "pulumi:providers:aws",
        "pulumi:pulumi:Stack",
    ]
    assert [g.type for g in deployment.groups("S3/")] == ["aws:s3/bucket:Bucket"]
    assert [r.name for g in deployment.groups("runner") for r in g.resources] == ["runner"]
    assert deployment.groups("nothing-like-it") == ()


def test_empty_and_broken_deployments() -> None:
    assert parse_deployment(b"").resources == ()
    assert parse_deployment(b'{"version":3,"deployment":{"manifest":{}}}').resources == ()
    for broken in (b"{", b"[1]", b'{"deployment": 3}', b'{"deployment": {"resources": {}}}'):
        with pytest.raises(DeploymentError):
            parse_deployment(broken)


def test_names_from_urns_and_provider_references() -> None:
    assert urn_name(BUCKET) == "logs"
    assert urn_name("urn:pulumi:dev::web::a:b:C::name::with::colons") == "colons"
    assert provider_urn(f"{PROVIDER}::04da6b54-80e4-46f7-96ec-b56ff0331ba9") == PROVIDER
    assert provider_urn("not-a-reference") == "not-a-reference"


def test_engine_events_become_timeline_entries() -> None:
    raw = [
        {"sequence": 0, "timestamp": 10, "preludeEvent": {"config": {"a": "1"}}},
        {
            "sequence": 1,
            "timestamp": 11,
            "resourcePreEvent": {"metadata": {"op": "create", "urn": BUCKET, "type": "t"}},
        },
        {
            "sequence": 2,
            "timestamp": 12,
            "diagnosticEvent": {
                "urn": BUCKET,
                "prefix": "<{%fg 1%}>error: <{%reset%}>",
                "message": "\x1b[31mAccessDenied\x1b[0m\n",
                "severity": "error",
            },
        },
        {"sequence": 3, "resOpFailedEvent": {"metadata": {"op": "create", "urn": BUCKET}}},
        {"sequence": 4, "resourcePreEvent": {"metadata": {"op": "same", "urn": ROLE}}},
        {"sequence": 5, "diagnosticEvent": {"message": "deprecated", "severity": "warning"}},
        {"sequence": 6, "diagnosticEvent": {"message": "noise", "severity": "debug"}},
        {"sequence": 7, "summaryEvent": {"resourceChanges": {"create": 1}, "durationSeconds": 3}},
        {"sequence": 8, "somethingNew": {}},
    ]
    timeline = entries([orjson.dumps(event) for event in raw] + [b"not json"])
    assert [e.sequence for e in timeline] == list(range(9))
    diagnostic = timeline[2]
    assert diagnostic.is_diagnostic and diagnostic.severity == ERROR
    assert diagnostic.text == "error: AccessDenied"
    assert diagnostic.title == "error: logs"
    assert timeline[1].title == "create logs" and timeline[1].severity == INFO
    assert timeline[3].severity == ERROR and timeline[3].title == "create logs failed"
    assert timeline[4].severity == DEBUG
    assert timeline[5].severity == WARNING and timeline[5].title == "warning: update"
    assert timeline[6].severity == DEBUG
    assert timeline[7].text == "create 1; 3 s"
    assert timeline[8].title == "somethingNew"
    assert {op: [c.name for c in items] for op, items in changes_by_op(timeline).items()} == {
        "create": ["logs"]
    }


def test_plain_text_strips_colour() -> None:
    assert plain_text("<{%bold%}>hi<{%reset%}> \x1b[1;32mthere\x1b[0m  \n") == "hi there"
    assert entry({"sequence": 1}).title == "event"


def test_sessions_open_only_what_they_sealed() -> None:
    now = [1_000_000.0]
    sessions = Sessions(b"k" * 32, clock=lambda: now[0])
    session = sessions.start("pul-token")
    sealed = sessions.seal(session)
    assert "pul-token" not in sealed
    assert sessions.open(sealed) == session
    # Another key, a flipped character, garbage: nothing.
    assert Sessions(b"j" * 32, clock=lambda: now[0]).open(sealed) is None
    flipped = sealed[:-2] + ("A" if sealed[-2] != "A" else "B") + sealed[-1]
    assert sessions.open(flipped) is None
    assert sessions.open("!!!") is None and sessions.open("") is None
    # It expires.
    now[0] = session.expires_at + 1
    assert sessions.open(sealed) is None


def test_csrf_tokens_are_bound_to_their_nonce() -> None:
    sessions = Sessions(b"k" * 32)
    nonce, other = new_nonce(), new_nonce()
    token = sessions.csrf_token(nonce)
    assert sessions.is_csrf_token(nonce, token)
    assert not sessions.is_csrf_token(other, token)
    assert not sessions.is_csrf_token("", sessions.csrf_token(""))
    assert Sessions(b"j" * 32).csrf_token(nonce) != token
    assert Session("t", nonce, 1, new_nonce()).csrf_nonce == nonce


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("/orgs/admin?x=1", "/orgs/admin?x=1"),
        ("", "/"),
        (None, "/"),
        ("https://evil.test", "/"),
        ("//evil.test", "/"),
        ("/\\evil.test", "/"),
        ("/ok\r\nSet-Cookie: x", "/"),
    ],
)
def test_sign_in_returns_only_to_local_paths(value: str | None, expected: str) -> None:
    assert safe_next(value) == expected


def test_chat_context_as_a_console_url() -> None:
    assert (
        ChatContext("admin", "web", "dev", 3).url("http://c") == "http://c/admin/web/dev/updates/3"
    )
    assert ChatContext("admin", "web", "dev").url("http://c") == "http://c/admin/web/dev"
    assert ChatContext("admin").url("http://c") == ""


def test_gateways_sharing_a_session_key_open_each_others_cookies(tmp_path: Path) -> None:
    shared = make_settings(tmp_path, "sqlite+aiosqlite://", console_session_key="k" * 40)
    sealed = Sessions.from_settings(shared).seal(Session("pul-t", new_nonce(), 2**40, new_nonce()))
    assert Sessions.from_settings(shared).open(sealed) is not None
    unkeyed = make_settings(tmp_path, "sqlite+aiosqlite://")
    assert Sessions.from_settings(unkeyed).open(sealed) is None
    # Without a session key, `cairn up`'s master key (same process) is used.
    with_master = make_settings(tmp_path, "sqlite+aiosqlite://", master_key="m" * 44)
    sealed = Sessions.from_settings(with_master).seal(
        Session("pul-t", new_nonce(), 2**40, new_nonce())
    )
    assert Sessions.from_settings(with_master).open(sealed) is not None

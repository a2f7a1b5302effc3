"""Webhook rules without processes: validation, filter matching, kinds, payload formats,
signatures, and a sender that retries a bounded number of times."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import replace

import orjson
import pytest

from services.common.errors import InvalidArgument
from services.stacks.hooks import formats
from services.stacks.hooks.delivery import DeliveryPolicy, Sender, signature
from services.stacks.hooks.domain import (
    EVENTS,
    Delivery,
    HookEvent,
    HookRecord,
    HookSpec,
    StackNames,
    UpdateOutcome,
    kind_of,
    matches,
    validate_spec,
)

SPEC = HookSpec(
    name="ci",
    display_name="CI",
    payload_url="https://example.test/hook",
    active=True,
    format="",
    filters=(),
    groups=(),
    secret=None,
)
HOOK = HookRecord(
    id="h1",
    organization="acme",
    stack_id="",
    name="ci",
    display_name="CI",
    payload_url="http://127.0.0.1:9/hook",
    active=True,
    format="raw",
    filters=(),
    groups=(),
    secret_ciphertext=None,
)
NAMES = StackNames("acme", "web", "dev")
SUCCEEDED = HookEvent(
    stack_id="s1",
    event="update_succeeded",
    user_login="ada",
    names=NAMES,
    update=UpdateOutcome("u1", "update", "succeeded", 4, {"create": 2, "same": 1}, 12),
)


def test_a_valid_spec_defaults_to_raw_and_deduplicates_filters() -> None:
    valid = validate_spec(replace(SPEC, filters=("update_failed", "update_failed")))
    assert valid.format == "raw" and valid.filters == ("update_failed",)


@pytest.mark.parametrize(
    "change",
    [
        {"payload_url": "ftp://example.test/x"},
        {"payload_url": "javascript:alert(1)"},
        {"payload_url": "http://"},
        {"payload_url": ""},
        {"format": "email"},
        {"filters": ("update_exploded",)},
        {"groups": ("all",)},
        {"display_name": " "},
        {"name": "../x"},
        {"secret": "x" * 2000},
    ],
)
def test_bad_specs_are_refused(change: dict[str, object]) -> None:
    with pytest.raises(InvalidArgument):
        validate_spec(replace(SPEC, **change))  # type: ignore[arg-type]


def test_filters_groups_and_activity_decide_delivery() -> None:
    assert all(matches(HOOK, event) for event in EVENTS)
    only_failures = replace(HOOK, filters=("update_failed",))
    assert matches(only_failures, "update_failed")
    assert not matches(only_failures, "update_succeeded")
    assert matches(replace(HOOK, groups=("stacks",)), "stack_created")
    assert not matches(replace(HOOK, active=False), "update_failed")


def test_event_kinds_follow_pulumis_headers() -> None:
    assert kind_of("stack_created") == "stack"
    assert kind_of("update_succeeded") == "stack_update"
    assert kind_of("destroy_failed") == "stack_update"
    assert kind_of("preview_started") == "stack_preview"
    assert kind_of("ping") == "ping"


def test_raw_payload_of_an_update() -> None:
    body = orjson.loads(formats.render("raw", SUCCEEDED, "https://cairn.test"))
    assert body == {
        "user": {"name": "ada", "githubLogin": "ada", "avatarUrl": ""},
        "organization": {"name": "acme", "githubLogin": "acme", "avatarUrl": ""},
        "projectName": "web",
        "stackName": "dev",
        "updateUrl": "https://cairn.test/acme/web/dev/updates/4",
        "kind": "update",
        "result": "succeeded",
        "resourceChanges": {"create": 2, "same": 1},
        "version": 4,
        "updateId": "u1",
        "durationSeconds": 12,
    }


def test_slack_and_teams_messages_read_at_a_glance() -> None:
    slack = orjson.loads(formats.render("slack", SUCCEEDED, "https://cairn.test"))
    assert slack["text"] == "Update succeeded on acme/web/dev"
    heading = slack["blocks"][0]["text"]["text"]
    assert (
        heading == "*<https://cairn.test/acme/web/dev/updates/4|Update succeeded on acme/web/dev>*"
    )
    fields = [field["text"] for field in slack["blocks"][1]["fields"]]
    assert "*Resource changes*\ncreate 2, same 1" in fields
    card = orjson.loads(formats.render("ms_teams", SUCCEEDED, "https://cairn.test"))
    assert card["@type"] == "MessageCard" and card["themeColor"] == "2EB67D"
    assert {"name": "Version", "value": "4"} in card["sections"][0]["facts"]
    target = card["potentialAction"][0]["targets"][0]["uri"]
    assert target == "https://cairn.test/acme/web/dev/updates/4"


def test_the_signature_is_hex_hmac_sha256_of_the_body() -> None:
    body = b'{"a":1}'
    expected = hmac.new(b"k", body, hashlib.sha256).hexdigest()
    assert signature(b"k", body) == expected


async def test_a_sender_stops_after_the_configured_attempts() -> None:
    recorded: list[Delivery] = []
    slept: list[float] = []

    async def record(delivery: Delivery) -> bool:
        recorded.append(delivery)
        return True

    async def no_secret(hook: HookRecord) -> bytes | None:
        return None

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    # Port 9 (discard) on loopback: nothing listens, every attempt fails at once.
    sender = Sender(DeliveryPolicy(1.0, 3, 0.5), no_secret, record, sleep=sleep, jitter=lambda: 1)
    try:
        last = await sender.deliver(HOOK, "ping", "ping", b"{}")
    finally:
        await sender.close()
    assert last.response_code == 0 and last.response_body.startswith("delivery failed")
    assert len(recorded) == 3 and slept == [0.5, 1.0]

    # The jitter takes each wait anywhere in the upper half of its doubling delay.
    slept.clear()
    sender = Sender(DeliveryPolicy(1.0, 3, 0.5), no_secret, record, sleep=sleep, jitter=lambda: 0)
    try:
        await sender.deliver(HOOK, "ping", "ping", b"{}")
    finally:
        await sender.close()
    assert slept == [0.25, 0.5]

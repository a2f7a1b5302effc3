"""The `slack` and `ms_teams` bodies of every event Cairn can send, checked against the shapes
those services document: a Slack incoming-webhook message with Block Kit section blocks
(fallback `text`, at most 50 blocks, section text up to 3000 characters, at most 10 fields of
up to 2000), and an Office 365 connector MessageCard (`@type`, `@context`, a `summary`, a hex
`themeColor`, sections of name/value facts, at most 4 `OpenUri` actions with known targets).
Names are as long as Cairn allows, so the limits hold for the longest message too."""

from __future__ import annotations

from typing import Any

import jsonschema
import orjson
import pytest

from services.stacks.hooks import formats
from services.stacks.hooks.domain import (
    EVENTS,
    PING,
    DeploymentOutcome,
    DriftOutcome,
    HookEvent,
    StackNames,
    UpdateOutcome,
)

TEXT_OBJECT = {
    "type": "object",
    "required": ["type", "text"],
    "properties": {
        "type": {"enum": ["plain_text", "mrkdwn"]},
        "text": {"type": "string", "minLength": 1},
    },
}
SLACK_MESSAGE = {
    "type": "object",
    "required": ["text", "blocks"],
    "properties": {
        "text": {"type": "string", "minLength": 1},
        "blocks": {
            "type": "array",
            "minItems": 1,
            "maxItems": 50,
            "items": {
                "type": "object",
                "required": ["type"],
                "properties": {
                    "type": {"const": "section"},
                    "text": {
                        "allOf": [
                            TEXT_OBJECT,
                            {"properties": {"text": {"maxLength": 3000}}},
                        ]
                    },
                    "fields": {
                        "type": "array",
                        "minItems": 1,
                        "maxItems": 10,
                        "items": {
                            "allOf": [
                                TEXT_OBJECT,
                                {"properties": {"text": {"maxLength": 2000}}},
                            ]
                        },
                    },
                },
                "anyOf": [{"required": ["text"]}, {"required": ["fields"]}],
                "additionalProperties": False,
            },
        },
    },
}
MESSAGE_CARD = {
    "type": "object",
    "required": ["@type", "@context", "summary"],
    "properties": {
        "@type": {"const": "MessageCard"},
        "@context": {"enum": ["https://schema.org/extensions", "http://schema.org/extensions"]},
        "summary": {"type": "string", "minLength": 1},
        "title": {"type": "string"},
        "themeColor": {"type": "string", "pattern": "^[0-9A-Fa-f]{6}$"},
        "sections": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "facts": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["name", "value"],
                            "properties": {
                                "name": {"type": "string"},
                                "value": {"type": "string"},
                            },
                            "additionalProperties": False,
                        },
                    }
                },
            },
        },
        "potentialAction": {
            "type": "array",
            "maxItems": 4,
            "items": {
                "type": "object",
                "required": ["@type", "name", "targets"],
                "properties": {
                    "@type": {"const": "OpenUri"},
                    "name": {"type": "string", "minLength": 1},
                    "targets": {
                        "type": "array",
                        "minItems": 1,
                        "items": {
                            "type": "object",
                            "required": ["os", "uri"],
                            "properties": {
                                "os": {"enum": ["default", "iOS", "android", "windows"]},
                                "uri": {"type": "string", "pattern": "^https?://"},
                            },
                        },
                    },
                },
            },
        },
    },
}

# As long as names may be: organization and project 100, stack 100, login 100.
NAMES = StackNames("o" * 100, "p" * 100, "s" * 100)
LOGIN = "u" * 100
PUBLIC_URL = "https://cairn.example.test"


def event_of(name: str) -> HookEvent:
    """The event as the service that owns it publishes it."""
    update = deployment = drift = None
    kind, _, result = name.rpartition("_")
    if name.startswith(("drift_detect", "drift_detected")):
        drift = DriftOutcome("r1", name == "drift_detected", {"update": 2, "delete": 1}, "d1", 7)
    elif name.startswith(("deployment_", "drift_remediation_")):
        deployment = DeploymentOutcome("d1", 7, "update", result)
    elif kind in ("update", "preview", "refresh", "destroy", "import"):
        changes = {"create": 3, "update": 1, "delete": 2, "same": 40}
        update = UpdateOutcome("u1", kind, result, 12, changes, 95)
    return HookEvent(
        stack_id="s1",
        event=name,
        user_login=LOGIN,
        names=NAMES,
        update=update,
        deployment=deployment,
        drift=drift,
    )


ALL = (*EVENTS, PING)


@pytest.mark.parametrize("name", ALL)
def test_slack_messages_are_block_kit(name: str) -> None:
    message = orjson.loads(formats.render("slack", event_of(name), PUBLIC_URL))
    jsonschema.validate(message, SLACK_MESSAGE)
    # Readable at a glance: a sentence, no filter names, the stack named in full.
    assert message["text"][0].isupper() and "_" not in message["text"]
    if name != PING:
        assert f"{NAMES.organization}/{NAMES.project}/{NAMES.stack}" in message["text"]


@pytest.mark.parametrize("name", ALL)
def test_teams_messages_are_message_cards(name: str) -> None:
    card = orjson.loads(formats.render("ms_teams", event_of(name), PUBLIC_URL))
    jsonschema.validate(card, MESSAGE_CARD)
    assert card["title"] == card["summary"] and "_" not in card["summary"]
    if name != PING:
        (action,) = card["potentialAction"]
        assert action["targets"][0]["uri"].startswith(PUBLIC_URL)


def test_colours_follow_the_outcome() -> None:
    def colour(name: str) -> Any:
        return orjson.loads(formats.render("ms_teams", event_of(name), PUBLIC_URL))["themeColor"]

    green, red, amber = "2EB67D", "E01E5A", "ECB22E"
    assert colour("update_succeeded") == colour("deployment_succeeded") == green
    assert colour("update_failed") == colour("drift_detection_failed") == red
    assert colour("update_cancelled") == colour("drift_detected") == amber
    assert colour("drift_remediation_succeeded") == green

"""Payload bodies: Pulumi's JSON (`raw`), a Slack Block Kit message, a Teams MessageCard."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from services.stacks.hooks.domain import (
    MS_TEAMS,
    PING,
    SLACK,
    HookEvent,
    StackNames,
)

PING_MESSAGE = "Just a friendly ping from Cairn"
# Message colours by outcome (a detected drift counts as amber): green, red, amber, blue.
_COLOURS = {"succeeded": "2EB67D", "failed": "E01E5A", "cancelled": "ECB22E"}
_NEUTRAL = "1D9BD1"


def update_url(public_url: str, names: StackNames, version: int) -> str:
    """The console page of an update."""
    return f"{public_url}/{names.organization}/{names.project}/{names.stack}/updates/{version}"


def deployment_url(public_url: str, names: StackNames, version: int) -> str:
    """The console page of a deployment."""
    return f"{stack_url(public_url, names)}/deployments/{version}"


def stack_url(public_url: str, names: StackNames) -> str:
    return f"{public_url}/{names.organization}/{names.project}/{names.stack}"


def raw_payload(event: HookEvent, public_url: str) -> dict[str, Any]:
    """Pulumi's payload shapes: `stack` events carry an action, update events a result."""
    if event.event == PING:
        return {"timestamp": event.timestamp, "message": PING_MESSAGE}
    names = event.names or StackNames("", "", "")
    payload: dict[str, Any] = {
        "user": {"name": event.user_login, "githubLogin": event.user_login, "avatarUrl": ""},
        "organization": {
            "name": names.organization,
            "githubLogin": names.organization,
            "avatarUrl": "",
        },
        "projectName": names.project,
        "stackName": names.stack,
    }
    drift = event.drift
    if drift is not None:
        payload.update(
            {
                "event": event.event,
                "driftRunId": drift.drift_run_id,
                "driftDetected": drift.drift_detected,
                "resourceChanges": dict(drift.resource_changes),
                "deploymentId": drift.deployment_id,
                "version": drift.deployment_version,
                "deploymentUrl": deployment_url(public_url, names, drift.deployment_version),
                "stackUrl": stack_url(public_url, names),
            }
        )
        if drift.remediation_deployment_id:
            payload["remediationDeploymentId"] = drift.remediation_deployment_id
        return payload
    deployment = event.deployment
    if deployment is not None:
        if event.event.startswith("drift_"):
            payload["event"] = event.event
        payload.update(
            {
                "deploymentId": deployment.deployment_id,
                "version": deployment.version,
                "operation": deployment.operation,
                "status": deployment.status,
                "deploymentUrl": deployment_url(public_url, names, deployment.version),
            }
        )
        return payload
    update = event.update
    if update is None:
        if event.event.startswith("stack_"):
            payload["action"] = event.event.removeprefix("stack_")
        else:
            payload["event"] = event.event
        payload["stackUrl"] = stack_url(public_url, names)
        return payload
    payload.update(
        {
            "updateUrl": update_url(public_url, names, update.version),
            "kind": update.kind,
            "result": update.result,
            "resourceChanges": dict(update.resource_changes),
            "version": update.version,
            "updateId": update.update_id,
            "durationSeconds": update.duration_seconds,
        }
    )
    return payload


def _title(event: HookEvent) -> str:
    if event.event == PING:
        return PING_MESSAGE
    names = event.names or StackNames("", "", "")
    stack = f"{names.organization}/{names.project}/{names.stack}"
    if event.event.startswith("drift_"):
        return f"{event.event.replace('_', ' ').capitalize()} on {stack}"
    if event.deployment is not None:
        return f"Deployment {event.deployment.status} on {stack}"
    update = event.update
    if update is None:
        if event.event.startswith("stack_"):
            return f"Stack {stack} {event.event.removeprefix('stack_')}"
        return f"{event.event.replace('_', ' ').capitalize()} on {stack}"
    # The event's own name: a preview's payload kind is the operation it previewed.
    operation = event.event.rpartition("_")[0]
    return f"{operation.capitalize()} {update.result} on {stack}"


def _facts(event: HookEvent) -> list[tuple[str, str]]:
    update = event.update
    facts = [] if event.event == PING else [("By", event.user_login or "-")]
    if event.drift is not None:
        facts.append(("Resource changes", _changes(event.drift.resource_changes) or "none"))
    if update is not None:
        facts += [
            ("Version", str(update.version)),
            ("Resource changes", _changes(update.resource_changes) or "none"),
            ("Duration", f"{update.duration_seconds}s"),
        ]
    return facts


def _changes(changes: Mapping[str, int]) -> str:
    return ", ".join(f"{op} {count}" for op, count in sorted(changes.items()))


def _outcome(event: HookEvent) -> str:
    """succeeded, failed, cancelled or "" (the message's colour)."""
    if event.event == "drift_detected":
        return "cancelled"
    if event.update is not None:
        return event.update.result
    if event.deployment is not None:
        return event.deployment.status
    for result in _COLOURS:
        if event.event.endswith(f"_{result}"):
            return result
    return ""


def _link(event: HookEvent, public_url: str) -> str:
    if event.names is None:
        return ""
    if event.update is not None:
        return update_url(public_url, event.names, event.update.version)
    if event.deployment is not None:
        return deployment_url(public_url, event.names, event.deployment.version)
    if event.drift is not None:
        return deployment_url(public_url, event.names, event.drift.deployment_version)
    return stack_url(public_url, event.names)


def slack_payload(event: HookEvent, public_url: str) -> dict[str, Any]:
    title = _title(event)
    link = _link(event, public_url)
    heading = f"*<{link}|{title}>*" if link.startswith("http") else f"*{title}*"
    blocks: list[dict[str, Any]] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": heading}}
    ]
    facts = _facts(event)
    if facts:
        blocks.append(
            {
                "type": "section",
                "fields": [
                    {"type": "mrkdwn", "text": f"*{name}*\n{value}"} for name, value in facts
                ],
            }
        )
    return {"text": title, "blocks": blocks}


def teams_payload(event: HookEvent, public_url: str) -> dict[str, Any]:
    title = _title(event)
    result = _outcome(event)
    card: dict[str, Any] = {
        "@type": "MessageCard",
        "@context": "https://schema.org/extensions",
        "summary": title,
        "themeColor": _COLOURS.get(result, _NEUTRAL),
        "title": title,
        "sections": [{"facts": [{"name": name, "value": value} for name, value in _facts(event)]}],
    }
    link = _link(event, public_url)
    if link.startswith("http"):
        card["potentialAction"] = [
            {
                "@type": "OpenUri",
                "name": "Open in Cairn",
                "targets": [{"os": "default", "uri": link}],
            }
        ]
    return card


def render(hook_format: str, event: HookEvent, public_url: str) -> bytes:
    """The exact body bytes sent (and signed) for one hook."""
    if hook_format == SLACK:
        body = slack_payload(event, public_url)
    elif hook_format == MS_TEAMS:
        body = teams_payload(event, public_url)
    else:
        body = raw_payload(event, public_url)
    return orjson.dumps(body)

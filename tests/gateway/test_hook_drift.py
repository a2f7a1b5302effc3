"""Drift events reach webhooks: a scheduled drift detection run by a real `cairn agent` that
finds drift and remediates it sends `drift_detection_succeeded`, `drift_detected` and
`drift_remediation_succeeded` (besides each deployment's own events), with the run's
findings; a clean run sends only `drift_detection_succeeded`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from services.common.clock import ManualClock
from tests.gateway.conftest import Cairn
from tests.gateway.receiver import Receiver, receiver
from tests.gateway.test_agent_e2e import start_agent, stop_agent
from tests.gateway.test_schedules_e2e import (  # noqa: F401 - fixtures
    NEXT_HOUR,
    S,
    clock,
    clocked,
    eventually,
    job_command,
    pool_token,
)

DRIFT_KINDS = {
    "drift_detected",
    "drift_detection_succeeded",
    "drift_detection_failed",
    "drift_remediation_succeeded",
    "drift_remediation_failed",
}


def drift_bodies(sink: Receiver) -> list[dict[str, Any]]:
    return [
        orjson.loads(r.body)
        for r in sink.received
        if r.headers.get("Pulumi-Webhook-Kind") == "drift_detection"
    ]


async def test_drift_detection_and_remediation_reach_webhooks(
    clocked: Cairn,  # noqa: F811
    clock: ManualClock,  # noqa: F811
    tmp_path: Path,
) -> None:
    cairn = clocked
    flag = tmp_path / "drifted"
    token = await pool_token(cairn)
    async with receiver() as sink, receiver() as slack:
        await cairn.json(
            "POST",
            "/api/orgs/admin/hooks",
            body={
                "displayName": "drift",
                "payloadUrl": sink.url,
                "active": True,
                "groups": ["deployments"],
            },
        )
        await cairn.json(
            "POST",
            f"{S}/hooks",
            body={
                "displayName": "drift to chat",
                "payloadUrl": slack.url,
                "active": True,
                "format": "slack",
                "filters": ["drift_detected"],
            },
        )
        await cairn.json(
            "POST",
            f"{S}/deployments/drift/schedules",
            body={"scheduleCron": "0 * * * *", "autoRemediate": True},
        )
        agent = await start_agent(cairn, token, job_command(tmp_path, flag), tmp_path / "w")
        try:
            # 1. No drift: the detection succeeded and found nothing.
            clock.current = NEXT_HOUR + 1

            async def clean() -> list[dict[str, Any]]:
                return drift_bodies(sink)

            (first,) = await eventually(clean, "the clean run's drift event")
            assert first["event"] == "drift_detection_succeeded"
            assert first["driftDetected"] is False and first["resourceChanges"] == {}
            assert (first["projectName"], first["stackName"]) == ("web", "dev")
            runs = (await cairn.json("GET", f"{S}/drift/runs"))["driftRuns"]
            assert first["driftRunId"] == runs[0]["id"]
            assert first["deploymentUrl"].endswith(f"/admin/web/dev/deployments/{first['version']}")

            # 2. Drift, remediated.
            flag.write_text("yes")
            clock.current = NEXT_HOUR + 3600 + 1

            expected = {
                "drift_detection_succeeded",
                "drift_detected",
                "drift_remediation_succeeded",
            }

            async def remediated() -> list[dict[str, Any]] | None:
                """Once all three arrived (deliveries run side by side, in any order)."""
                bodies = drift_bodies(sink)
                events = {body["event"] for body in bodies[1:]}
                return bodies if expected <= events else None

            bodies = await eventually(remediated, "the remediation's drift event")
            by_event = {body["event"]: body for body in bodies[1:]}
            assert set(by_event) == expected
            detected = by_event["drift_detected"]
            assert detected["driftDetected"] is True
            assert detected["resourceChanges"] == {"update": 2, "delete": 1}
            remediation = by_event["drift_remediation_succeeded"]
            assert detected["remediationDeploymentId"] == remediation["deploymentId"]
            assert remediation["operation"] == "remediate-drift"
            assert remediation["status"] == "succeeded"

            # Every deployment's own events came too, in the same group.
            async def deployments() -> set[tuple[str, str]] | None:
                found = {
                    (body["operation"], body["status"])
                    for body in (orjson.loads(r.body) for r in sink.received)
                    if "operation" in body and "event" not in body
                }
                wanted = {("detect-drift", "queued"), ("remediate-drift", "succeeded")}
                return found if wanted <= found else None

            await eventually(deployments, "the deployments' own events")

            # The stack's chat hook hears only of the drift, as a readable message.
            (message,) = [orjson.loads(r.body) for r in await slack.wait_for(1)]
            assert message["text"] == "Drift detected on admin/web/dev"
            fields = [field["text"] for field in message["blocks"][1]["fields"]]
            assert "*Resource changes*\ndelete 1, update 2" in fields
            assert {body["event"] for body in drift_bodies(sink)} <= DRIFT_KINDS
        finally:
            await stop_agent(agent)

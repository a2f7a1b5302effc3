"""The pure rules of schedules: cron expressions, due times, drift outcomes; and the one
places a finished drift run and a deployment's change become webhook events."""

from __future__ import annotations

from dataclasses import replace

import pytest

from services.agent_pools.domain import INITIATORS, DeploymentRecord, StackName
from services.agent_pools.schedule_rules import (
    DRIFT,
    DriftRunRecord,
    ScheduleRecord,
    ScheduleSpec,
    drift_outcome,
    first_due,
    following_due,
    initiator_of,
    validate_cron,
    validate_spec,
)
from services.agent_pools.schedule_server import drift_events
from services.agent_pools.server import deployment_events
from services.common.clock import ManualClock
from services.common.errors import InvalidArgument
from services.common.hook_events import (
    DEPLOYMENT_FAILED,
    DEPLOYMENT_SUCCEEDED,
    DRIFT_DETECTED,
    DRIFT_DETECTION_FAILED,
    DRIFT_DETECTION_SUCCEEDED,
    DRIFT_REMEDIATION_FAILED,
    DRIFT_REMEDIATION_SUCCEEDED,
)

NOW = 1_700_000_000.0  # 2023-11-14T22:13:20Z
CLOCK = ManualClock(NOW + 0.25)


@pytest.mark.parametrize(
    ("expression", "normalised"),
    [("0 2 * * *", "0 2 * * *"), ("  */15   9-17 * * 1-5 ", "*/15 9-17 * * 1-5")],
)
def test_five_field_expressions_are_accepted(expression: str, normalised: str) -> None:
    assert validate_cron(expression) == normalised


@pytest.mark.parametrize(
    "expression",
    [
        "",
        "* * * *",
        "0 2 * * * *",
        "@daily",
        "60 * * * *",
        "0 25 * * *",
        "a b c d e",
        "0 2 * * ;",
        # Valid field by field, but no such day exists: it would never fire.
        "0 0 30 2 *",
        "0 0 31 4,6,9,11 *",
    ],
)
def test_other_expressions_are_refused(expression: str) -> None:
    with pytest.raises(InvalidArgument):
        validate_cron(expression)


def _schedule(cron: str | None, next_at: float | None) -> ScheduleRecord:
    return ScheduleRecord(
        id="s",
        stack=StackName("id", "org", "p", "s"),
        kind="deployment",
        cron=cron,
        once_at=None if cron else next_at,
        next_at=next_at,
        paused=False,
        definition={},
        requested_by="alice",
        requested_by_user_id="u",
        created_at=NOW,
        modified_at=NOW,
        last_executed_at=None,
    )


def test_due_times_are_utc_and_missed_ones_collapse() -> None:
    assert first_due("0 * * * *", None, NOW) == 1_700_002_800.0  # 23:00 UTC
    # Fired three hours late: the next due time is the first after now, not the missed ones.
    late = NOW + 3 * 3600
    assert following_due(_schedule("0 * * * *", 1_700_002_800.0), late) == 1_700_013_600.0
    assert following_due(_schedule(None, NOW + 60), NOW + 61) is None


def test_specs_are_checked_against_the_clock() -> None:
    with pytest.raises(InvalidArgument, match="in the future"):
        validate_spec(ScheduleSpec("deployment", once_at=NOW), NOW)
    with pytest.raises(InvalidArgument, match="not both"):
        validate_spec(ScheduleSpec("deployment", cron="0 2 * * *", once_at=NOW + 9), NOW)
    checked = validate_spec(ScheduleSpec(DRIFT, cron=" 0  2 * * * "), NOW)
    assert checked.cron == "0 2 * * *"


def test_drift_outcomes_follow_the_exit_and_the_output() -> None:
    clean = drift_outcome("succeeded", ["Resources:", "    7 unchanged"])
    assert clean is not None and not clean.drift_detected
    found = drift_outcome(
        "failed",
        [
            "    ~ 2 to update",
            "    +-1 to replace",
            "    - 1 to delete",
            "error: no changes were expected but changes occurred",
        ],
    )
    assert found is not None and found.drift_detected
    assert dict(found.resource_changes) == {"update": 2, "replace": 1, "delete": 1}
    # Failed for another reason (no changes named): not a drift result at all.
    assert drift_outcome("failed", ["error: could not load the program"]) is None


def detection(operation: str = "detect-drift", status: str = "failed") -> DeploymentRecord:
    return DeploymentRecord(
        id="d1",
        stack=StackName("stack-1", "acme", "web", "dev"),
        version=7,
        operation=operation,
        status=status,
        pool_id="p",
        agent_id=None,
        requested_by="bob",
        settings={},
        created_at=NOW,
        modified_at=NOW,
        started_at=NOW,
        finished_at=NOW,
        attempts=1,
        is_cancel_requested=False,
        message="",
    )


def test_a_finished_drift_run_becomes_its_webhook_events() -> None:
    run = DriftRunRecord("r", "stack-1", "s", "d1", True, NOW, NOW, True, {"update": 2}, "d2")
    found, detected = drift_events(CLOCK, detection(), run, "alice")
    assert (found.event, detected.event) == (DRIFT_DETECTION_SUCCEEDED, DRIFT_DETECTED)
    for event in (found, detected):
        assert (event.stack_id, event.user_login, event.organization) == (
            "stack-1",
            "alice",
            "acme",
        )
        assert (event.project, event.stack_name) == ("web", "dev")
        assert event.drift.drift_run_id == "r" and event.drift.drift_detected
        assert dict(event.drift.resource_changes) == {"update": 2}
        assert (event.drift.deployment_id, event.drift.deployment_version) == ("d1", 7)
        assert event.drift.remediation_deployment_id == "d2"
        # When it happened, on the service's clock: seconds in payloads, microseconds for
        # matching it to the hooks that existed then.
        assert (event.timestamp, event.occurred_at_us) == (int(CLOCK.now()), 1_700_000_000_250_000)
    # Each is stored once in the outbox, whatever retries follow.
    assert found.id and detected.id and found.id != detected.id

    clean = replace(run, drift_detected=False, resource_changes={}, remediation_deployment_id=None)
    (only,) = drift_events(CLOCK, detection(status="succeeded"), clean, "alice")
    assert only.event == DRIFT_DETECTION_SUCCEEDED and not only.drift.drift_detected
    unknown = replace(run, drift_detected=None, resource_changes={})
    (failed,) = drift_events(CLOCK, detection(), unknown, "alice")
    assert failed.event == DRIFT_DETECTION_FAILED


def test_a_remediation_ending_is_also_a_drift_remediation_event() -> None:
    ended = deployment_events(CLOCK, detection("remediate-drift", "succeeded"), "succeeded")
    assert [event.event for event in ended] == [
        DEPLOYMENT_SUCCEEDED,
        DRIFT_REMEDIATION_SUCCEEDED,
    ]
    assert all(event.deployment.status == "succeeded" for event in ended)
    failed = deployment_events(CLOCK, detection("remediate-drift", "failed"), "failed")
    assert [event.event for event in failed] == [DEPLOYMENT_FAILED, DRIFT_REMEDIATION_FAILED]
    started = deployment_events(CLOCK, detection("remediate-drift", "running"), "started")
    assert [event.event for event in started] == ["deployment_started"]
    plain = deployment_events(CLOCK, detection("update", "succeeded"), "succeeded")
    assert [event.event for event in plain] == [DEPLOYMENT_SUCCEEDED]
    assert deployment_events(CLOCK, detection("update", "running"), "running") == []


def test_each_kind_of_schedule_names_what_queued_its_deployments() -> None:
    named = {kind: initiator_of(kind) for kind in ("deployment", "drift", "ttl")}
    assert named == {"deployment": "schedule", "drift": "drift-detection", "ttl": "ttl"}
    assert set(named.values()) <= set(INITIATORS)
    assert set(INITIATORS) == {*named.values(), "api", "drift-remediation"}

"""The pure rules of schedules: cron expressions, due times, drift outcomes; and the one
place a detected drift becomes a webhook event."""

from __future__ import annotations

import pytest

from protos.cairn.v1 import hooks_pb2
from services.agent_pools.domain import StackName
from services.agent_pools.schedule_rules import (
    DRIFT,
    DriftRunRecord,
    ScheduleRecord,
    ScheduleSpec,
    drift_outcome,
    first_due,
    following_due,
    validate_cron,
    validate_spec,
)
from services.agent_pools.schedule_server import drift_announcer
from services.common.errors import InvalidArgument
from services.common.hook_events import DRIFT_DETECTED

NOW = 1_700_000_000.0  # 2023-11-14T22:13:20Z


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


async def test_a_detected_drift_is_published_as_a_webhook_event() -> None:
    events: list[hooks_pb2.PublishEventRequest] = []

    async def publish(event: hooks_pb2.PublishEventRequest) -> None:
        events.append(event)

    announce = drift_announcer(publish)
    run = DriftRunRecord("r", "stack-1", "s", "d", False, NOW, NOW, True, {}, None)
    await announce("stack-1", run, "alice")
    (event,) = events
    assert (event.stack_id, event.event, event.user_login) == ("stack-1", DRIFT_DETECTED, "alice")
    assert event.id  # stored once in the outbox, whatever retries follow
    await drift_announcer(None)("stack-1", run, "alice")  # no webhook service: nothing to do
    assert events == [event]

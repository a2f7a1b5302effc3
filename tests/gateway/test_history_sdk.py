"""History views through the official Python SDK (`pulumi-cloud-sdk`).

The SDK refuses any answer missing a required field or carrying an unknown enum value, so
every call succeeding proves the shapes; the values are checked against the history made.
"""

from __future__ import annotations

import urllib.error
from typing import TypeVar

import pytest

try:
    from pulumi_cloud_sdk.apis.stacks_api_ import StacksApi
except ImportError:  # pragma: no cover - CI installs it with the dev extra
    pytest.skip(
        "pulumi-cloud-sdk is not installed (pip install -e '.[dev]')", allow_module_level=True
    )

from tests.gateway.cli import begin, create_stack
from tests.gateway.conftest import Cairn
from tests.gateway.history_data import (
    ERROR_TEXT,
    ORG,
    PET,
    PROJECT,
    PROVIDER,
    SECRETS,
    STACK,
    make_history,
    reference_state,
    urn_of,
)
from tests.gateway.sdk import SdkCaller

T = TypeVar("T")


class Sdk(SdkCaller):
    def __init__(self, cairn: Cairn) -> None:
        super().__init__(cairn)
        self.stacks = StacksApi(self.client)


async def test_history_views_through_the_sdk(any_cairn: Cairn) -> None:
    cairn = any_cairn
    history = await make_history(cairn)
    await create_stack(cairn, PROJECT, "consumer")
    run = await begin(cairn, f"/api/stacks/{ORG}/{PROJECT}/consumer")
    run.resources = reference_state(PROJECT, "consumer", f"{ORG}/{PROJECT}/{STACK}")
    await run.full_checkpoint(SECRETS)
    await run.complete()
    sdk = Sdk(cairn)
    api = sdk.stacks
    here = (ORG, PROJECT, STACK)

    latest = await sdk(api.get_latest_stack_resources, *here)
    assert latest.version == 2 and latest.region == ""
    assert [info.resource.urn for info in latest.resources] == [
        state["urn"] for state in history.resources_2
    ]
    assert all(info.resource.delete is False for info in latest.resources)
    first = await sdk(api.get_stack_resources, *here, 1)
    assert first.version == 1 and len(first.resources) == 3
    b = await sdk(api.get_stack_resource, *here, 1, urn_of("b"))
    resource = b.resource.resource
    assert (resource.urn, resource.type, resource.custom) == (urn_of("b"), PET, True)
    assert resource.dependencies == [urn_of("a")]
    assert resource.parent.endswith("pulumi:pulumi:Stack::web-dev")
    assert resource.inputs == {"length": 3, "prefix": "a-id"}
    assert resource.outputs == {"id": "b-id", "length": 2}
    a = await sdk(api.get_latest_stack_resource, *here, urn_of("a"))
    assert a.version == 2 and a.resource.resource.dependencies == []
    count = await sdk(api.get_stack_resource_count, *here)
    assert (count.resource_count, count.version) == (3, 2)
    with pytest.raises(urllib.error.HTTPError) as missing:
        await sdk(api.get_stack_resource, *here, 1, urn_of("nope"))
    assert missing.value.code == 404
    with pytest.raises(urllib.error.HTTPError) as missing:
        await sdk(api.get_stack_resources, *here, 12)
    assert missing.value.code == 404

    summary = await sdk(api.get_stack_update_summary, *here, 2)
    assert summary.result == "failed" and summary.resource_count == 3
    assert 0 < summary.start_time <= summary.end_time
    preview = await sdk(api.get_stack_preview, *here, history.preview_1)
    assert preview.update_id == history.preview_1
    assert preview.info.resource_changes == {"create": 3} and preview.info.result == "succeeded"
    assert preview.requested_by.github_login == "admin" and preview.latest_version == 2
    preview_summary = await sdk(api.get_stack_preview_summary, *here, history.previews_2[1])
    assert preview_summary.resource_count == 3 and preview_summary.result == "succeeded"

    timeline = await sdk(api.get_update_timeline, *here, 1)
    assert timeline.update.update_id == history.update_1 and timeline.update.version == 1
    assert timeline.previews == []
    assert [e.update_id for e in timeline.collated_update_events] == [
        history.preview_1,
        history.update_1,
    ]
    newest = await sdk(api.get_latest_update_timeline, *here)
    assert newest.update.info.result == "failed"
    assert [p.update_id for p in newest.previews] == history.previews_2[1:]
    assert [e.update_id for e in newest.collated_update_events] == [
        history.previews_2[0],
        history.update_2,
    ]

    previews = await sdk(api.get_stack_previews, *here, 2, asc=True, page=1, page_size=1)
    assert [u.update_id for u in previews.updates] == history.previews_2[:1]
    assert (previews.total, previews.items_per_page) == (2, 1)
    every = await sdk(api.get_stack_previews, *here, 2)
    assert [u.update_id for u in every.updates] == history.previews_2[::-1]

    activity = await sdk(api.get_stack_activity, *here, page=1, page_size=1)
    assert activity.total == 2 and activity.items_per_page == 1
    assert [a.update.update_id for a in activity.activity] == [history.update_2]
    rest = await sdk(api.get_stack_activity, *here, page=2, page_size=1)
    assert [a.update.update_id for a in rest.activity] == [history.update_1]
    assert rest.activity[0].update.info.resource_changes == {"create": 3}

    downstream = await sdk(api.list_downstream_stack_references, *here)
    assert [
        (r.organization, r.routing_project, r.name, r.version) for r in downstream.referenced_stacks
    ] == [(ORG, PROJECT, "consumer", 1)]
    overview = await sdk(api.get_stack_overview, ORG, PROJECT, "consumer")
    assert [(r.routing_project, r.name) for r in overview.referenced_stacks] == [(PROJECT, STACK)]
    assert overview.resources.version == 1 and len(overview.resources.resources) == 2
    mine = await sdk(api.get_stack_overview, *here)
    assert mine.tags["pulumi:project"] == PROJECT and mine.referenced_stacks == []
    assert {info.resource.urn for info in mine.resources.resources} == {
        state["urn"] for state in history.resources_2
    }

    text = (await sdk(api.update_summary_handler_latest, *here)).summary
    assert ERROR_TEXT in text and "Result: failed" in text
    first_text = (await sdk(api.update_summary, *here, history.update_1)).summary
    assert "+ 3 created" in first_text and PROVIDER not in first_text

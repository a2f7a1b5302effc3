"""History retention through the REST routes: settings per organization and stack, pruned
versions flagged in history, their export answering 410, access and bad bodies."""

from __future__ import annotations

from typing import Any

from tests.gateway.cli import create_stack, deployment, resource, stack_path, stack_resource
from tests.gateway.conftest import MEMBER, Cairn

S = stack_path()
ORG = "/api/orgs/admin/state-retention"
SECRETS = {"type": "passphrase", "state": {"salt": "v1:c2FsdA==:v1:x:y"}}


def untyped(marker: str) -> dict[str, Any]:
    resources = [stack_resource("web", "dev", {"marker": marker}), resource("web", "dev", marker)]
    return {"version": 3, "deployment": deployment(resources, SECRETS)}


async def test_retention_prunes_history_and_export_answers_410(cairn: Cairn) -> None:
    await create_stack(cairn)
    texts = [untyped(f"v{index}") for index in range(4)]
    for text in texts[:3]:
        await cairn.json("POST", f"{S}/import", body=text)
    assert await cairn.json("GET", ORG) == {"keepVersions": None}
    assert await cairn.json("PUT", ORG, body={"keepVersions": 2}) == {"keepVersions": 2}
    assert await cairn.json("GET", f"{S}/state-retention") == {
        "keepVersions": None,
        "organizationKeepVersions": 2,
        "effectiveKeepVersions": 2,
    }
    gone = await cairn.call("GET", f"{S}/export/1")
    body = await gone.json()
    assert gone.status == 410 and body["code"] == 410
    assert "version 1 was removed" in body["message"] and "retention" in body["message"]
    assert await cairn.json("GET", f"{S}/export/2") == texts[1]

    # The stack's own setting wins; later versions prune as they come.
    reply = await cairn.json("PUT", f"{S}/state-retention", body={"keepVersions": 1})
    assert reply["keepVersions"] == 1 and reply["effectiveKeepVersions"] == 1
    await cairn.json("POST", f"{S}/import", body=texts[3])
    history = await cairn.json("GET", f"{S}/updates?pageSize=10&page=1")
    flags = {entry["version"]: entry.get("statePruned", False) for entry in history["updates"]}
    assert flags == {4: False, 3: True, 2: True, 1: True}
    one = await cairn.json("GET", f"{S}/updates/1")
    assert one["info"]["statePruned"] is True and one["info"]["result"] == "succeeded"
    assert (await cairn.call("GET", f"{S}/export/3")).status == 410
    assert await cairn.json("GET", f"{S}/export") == texts[3]

    # Clearing: the stack follows its organization again, then keeps everything.
    reply = await cairn.json("PUT", f"{S}/state-retention", body={"keepVersions": None})
    assert reply == {
        "keepVersions": None,
        "organizationKeepVersions": 2,
        "effectiveKeepVersions": 2,
    }
    assert await cairn.json("PUT", ORG, body={"keepVersions": None}) == {"keepVersions": None}


async def test_retention_settings_refuse_bad_bodies_and_non_admins(cairn: Cairn) -> None:
    await create_stack(cairn)
    for bad in (
        {},
        {"keepVersions": 0},
        {"keepVersions": 1_000_001},
        {"keepVersions": "3"},
        {"keepVersions": True},
        {"keepVersions": 2, "other": 1},
    ):
        response = await cairn.call("PUT", ORG, body=bad)
        assert response.status == 400, bad
        assert (await response.json())["code"] == 400
    huge = await cairn.call("PUT", ORG, raw=b'{"keepVersions": 1180591620717411303424}')
    assert huge.status == 400
    member = await cairn.new_user("mallory", org_role=("admin", MEMBER))
    assert (await cairn.call("GET", ORG, token=member)).status == 200
    assert (await cairn.call("PUT", ORG, token=member, body={"keepVersions": 1})).status == 403
    assert await cairn.json("GET", ORG) == {"keepVersions": None}

"""History views through the gateway: resources, summaries, timelines, previews, activity,
downstream references and the console aggregates, after updates made as the CLI makes them."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from tests.gateway.cli import begin, create_stack, deployment
from tests.gateway.conftest import Cairn
from tests.gateway.history_data import (
    CONSOLE,
    ERROR_TEXT,
    PET,
    PROVIDER,
    SECRETS,
    WARNING_TEXT,
    S,
    make_history,
    reference_state,
    urn_of,
)


def by_urn(listing: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {entry["resource"]["urn"]: entry["resource"] for entry in listing["resources"]}


async def test_resources_of_each_version(any_cairn: Cairn) -> None:
    cairn = any_cairn
    await create_stack(cairn, "web", "empty")
    never = await cairn.json("GET", "/api/stacks/admin/web/empty/resources/latest")
    assert never == {"resources": [], "region": "", "version": 0}
    assert await cairn.json("GET", "/api/stacks/admin/web/empty/resources/count") == {
        "resourceCount": 0,
        "version": 0,
    }

    history = await make_history(cairn)
    latest = await cairn.json("GET", f"{S}/resources/latest")
    assert latest["version"] == 2 and latest["region"] == ""
    resources = by_urn(latest)
    assert list(resources) == [state["urn"] for state in history.resources_2]
    for state in history.resources_2:
        shown = resources[state["urn"]]
        assert shown["delete"] is False
        assert shown["dependencies"] == state.get("dependencies", [])
        assert shown["custom"] is state["custom"]
        for name in ("type", "inputs", "outputs", "parent", "provider", "id"):
            assert shown.get(name) == state.get(name), name

    first = await cairn.json("GET", f"{S}/resources/1")
    assert first["version"] == 1
    assert [entry["resource"]["urn"] for entry in first["resources"]] == [
        state["urn"] for state in history.resources_1
    ]
    assert await cairn.json("GET", f"{S}/resources/count") == {"resourceCount": 3, "version": 2}

    b = urn_of("b")
    for path in (f"{S}/resources/1/{quote(b, safe='')}", f"{S}/resources/1/{b}"):
        one = await cairn.json("GET", path)
        assert one["version"] == 1 and one["region"] == ""
        shown = one["resource"]["resource"]
        assert shown["urn"] == b and shown["type"] == PET
        assert shown["dependencies"] == [urn_of("a")]
        assert shown["propertyDependencies"] == {"prefix": [urn_of("a")]}
        assert shown["inputs"] == {"length": 3, "prefix": "a-id"}
        assert shown["outputs"] == {"id": "b-id", "length": 2}
        assert shown["parent"] == "urn:pulumi:dev::web::pulumi:pulumi:Stack::web-dev"
        assert shown["provider"] == PROVIDER
        assert shown["delete"] is False
    latest_b = await cairn.json("GET", f"{S}/resources/latest/{quote(b, safe='')}")
    assert latest_b["version"] == 2 and latest_b["resource"]["resource"]["urn"] == b

    for path in (
        f"{S}/resources/9",
        f"{S}/resources/9/{quote(b, safe='')}",
        f"{S}/resources/1/{quote(urn_of('nope'), safe='')}",
        f"{S}/resources/latest/{quote(urn_of('nope'), safe='')}",
        "/api/stacks/admin/web/empty/resources/latest/" + quote(b, safe=""),
        "/api/stacks/admin/web/missing/resources/latest",
    ):
        response = await cairn.call("GET", path)
        assert response.status == 404, path
        assert (await response.json())["code"] == 404
    assert (await cairn.call("GET", f"{S}/resources/1/not-a-urn")).status == 400
    assert (await cairn.call("GET", f"{S}/resources/{10**30}")).status == 404
    assert (await cairn.call("GET", f"{S}/updates/{10**30}/timeline")).status == 404
    assert (await cairn.call("GET", f"{S}/export/{10**30}")).status == 404


async def test_update_and_preview_summaries_timelines_and_previews(any_cairn: Cairn) -> None:
    cairn = any_cairn
    history = await make_history(cairn)

    first = await cairn.json("GET", f"{S}/updates/1/summary")
    assert first["result"] == "succeeded" and first["kind"] == "update"
    assert first["resourceCount"] == 3 and first["resourceChanges"] == {"create": 3}
    assert 0 < first["startTime"] <= first["endTime"]
    second = await cairn.json("GET", f"{S}/updates/2/summary")
    assert second["result"] == "failed" and second["resourceChanges"] == {"same": 2}
    assert second["startTime"] >= first["endTime"]
    assert (await cairn.call("GET", f"{S}/updates/3/summary")).status == 404

    preview = await cairn.json("GET", f"{S}/previews/{history.preview_1}")
    assert preview["updateID"] == history.preview_1
    assert preview["info"]["resourceChanges"] == {"create": 3}
    assert preview["info"]["result"] == "succeeded" and preview["info"]["version"] == 0
    assert preview["info"]["message"] == "preview" and preview["latestVersion"] == 2
    assert preview["requestedBy"]["githubLogin"] == "admin"
    preview_summary = await cairn.json("GET", f"{S}/previews/{history.previews_2[0]}/summary")
    # A preview's count is what its changes leave: one update and two unchanged.
    assert preview_summary["resourceCount"] == 3 and preview_summary["result"] == "succeeded"
    assert preview_summary["resourceChanges"] == {"update": 1, "same": 2}
    for missing in (history.update_1, "0" * 32, "not-an-id"):
        assert (await cairn.call("GET", f"{S}/previews/{missing}")).status == 404
        assert (await cairn.call("GET", f"{S}/previews/{missing}/summary")).status == 404

    timeline = await cairn.json("GET", f"{S}/updates/1/timeline")
    assert timeline["update"]["updateID"] == history.update_1
    assert timeline["update"]["version"] == 1
    # Seed 000: `previews` holds only those outside the collated set.
    assert [e["updateID"] for e in timeline["collatedUpdateEvents"]] == [
        history.preview_1,
        history.update_1,
    ]
    assert timeline["previews"] == []
    latest = await cairn.json("GET", f"{S}/updates/latest/timeline")
    assert latest["update"]["updateID"] == history.update_2
    assert latest["update"]["info"]["result"] == "failed"
    events = latest["collatedUpdateEvents"]
    # The preview of the same pull request is collated; the one run elsewhere is not.
    assert [e["updateID"] for e in events] == [history.previews_2[0], history.update_2]
    assert [p["updateID"] for p in latest["previews"]] == [history.previews_2[1]]
    assert [e["info"]["startTime"] for e in events] == sorted(
        e["info"]["startTime"] for e in events
    )
    assert (await cairn.call("GET", f"{S}/updates/7/timeline")).status == 404

    newest_first = await cairn.json("GET", f"{S}/updates/2/previews")
    assert [u["updateID"] for u in newest_first["updates"]] == history.previews_2[::-1]
    assert newest_first["total"] == 2 and newest_first["itemsPerPage"] == 2
    oldest_first = await cairn.json("GET", f"{S}/updates/2/previews?asc=true")
    assert [u["updateID"] for u in oldest_first["updates"]] == history.previews_2
    paged = await cairn.json("GET", f"{S}/updates/2/previews?page=2&pageSize=1&asc=true")
    assert [u["updateID"] for u in paged["updates"]] == history.previews_2[1:]
    assert paged["total"] == 2 and paged["itemsPerPage"] == 1
    only = await cairn.json("GET", f"{S}/updates/1/previews")
    assert [u["updateID"] for u in only["updates"]] == [history.preview_1]
    assert only["updates"][0]["info"]["resourceChanges"] == {"create": 3}
    # Page 0 is every preview, whatever the page size.
    every = await cairn.json("GET", f"{S}/updates/2/previews?page=0&pageSize=1")
    assert [u["updateID"] for u in every["updates"]] == history.previews_2[::-1]
    for query in ("page=-1", "page=0&pageSize=-3", "page=1&pageSize=-2", "page=x"):
        response = await cairn.call("GET", f"{S}/updates/2/previews?{query}")
        assert response.status == 400, query
    assert (await cairn.call("GET", f"{S}/updates/5/previews")).status == 404


async def test_activity_pages_through_updates_imports_and_renames(any_cairn: Cairn) -> None:
    cairn = any_cairn
    history = await make_history(cairn)
    exported = await cairn.json("GET", f"{S}/export")
    imported = await cairn.json("POST", f"{S}/import", body=exported)
    await cairn.call("POST", f"{S}/rename", body={"newName": "prod", "newProject": "web"})
    prod = "/api/stacks/admin/web/prod"

    everything = await cairn.json("GET", f"{prod}/activity")
    kinds = [(a["update"]["info"]["kind"], a["update"]["version"]) for a in everything["activity"]]
    assert kinds == [("rename", 4), ("import", 3), ("update", 2), ("update", 1)]
    assert everything["total"] == 4 and everything["itemsPerPage"] == 4
    ids = [a["update"]["updateID"] for a in everything["activity"]]
    assert ids[1:] == [imported["updateId"], history.update_2, history.update_1]
    assert everything["activity"][2]["update"]["info"]["result"] == "failed"
    assert all(a["update"]["latestVersion"] == 4 for a in everything["activity"])

    seen = []
    for page in (1, 2, 3):
        listing = await cairn.json("GET", f"{prod}/activity?page={page}&pageSize=3")
        assert listing["total"] == 4 and listing["itemsPerPage"] == 3
        seen += [a["update"]["updateID"] for a in listing["activity"]]
    assert seen == ids
    every = await cairn.json("GET", f"{prod}/activity?page=0&pageSize=2")
    assert [a["update"]["updateID"] for a in every["activity"]] == ids
    for query in ("page=-1", "page=0&pageSize=1001", "page=2&pageSize=0x", "page=99999999999"):
        assert (await cairn.call("GET", f"{prod}/activity?{query}")).status == 400
    assert (await cairn.call("GET", f"{S}/activity")).status == 404


async def test_console_summaries_and_overview(any_cairn: Cairn) -> None:
    cairn = any_cairn
    history = await make_history(cairn)

    latest = (await cairn.json("GET", f"{CONSOLE}/updates/latest/summary"))["summary"]
    by_id = (await cairn.json("GET", f"{CONSOLE}/updates/{history.update_2}/summary"))["summary"]
    assert latest == by_id
    assert latest.startswith("Updating (admin/web/dev):")
    assert ERROR_TEXT in latest and "error: " + ERROR_TEXT in latest
    assert "**updating failed**" in latest and "Result: failed" in latest
    assert f"{PET} (a):" in latest

    first = (await cairn.json("GET", f"{CONSOLE}/updates/{history.update_1}/summary"))["summary"]
    assert "+ 3 created" in first and "Result: succeeded" in first
    assert "warning: " + WARNING_TEXT in first
    assert 'petName: "a-id"' in first
    lines = first.splitlines()
    tree = [line for line in lines if PET in line and "created" in line]
    assert len(tree) == 2 and all("└─" in line or "├─" in line for line in tree)
    assert any("pulumi:pulumi:Stack" in line and "created" in line for line in lines)

    preview = (await cairn.json("GET", f"{CONSOLE}/updates/{history.previews_2[0]}/summary"))[
        "summary"
    ]
    assert preview.startswith("Previewing update (admin/web/dev):")
    assert "~ 1 to update" in preview and "2 unchanged" in preview

    for missing in ("0" * 32, "nope"):
        response = await cairn.call("GET", f"{CONSOLE}/updates/{missing}/summary")
        assert response.status == 404
    await create_stack(cairn, "web", "fresh")
    fresh = "/api/console/stacks/admin/web/fresh"
    assert (await cairn.call("GET", f"{fresh}/updates/latest/summary")).status == 404

    overview = await cairn.json("GET", f"{CONSOLE}/overview")
    assert overview["tags"]["pulumi:project"] == "web"
    assert overview["referencedStacks"] == []
    assert overview["resources"]["version"] == 2
    assert [r["resource"]["urn"] for r in overview["resources"]["resources"]] == [
        state["urn"] for state in history.resources_2
    ]
    assert (await cairn.json("GET", f"{fresh}/overview"))["resources"]["resources"] == []


async def reference(cairn: Cairn, project: str, stack: str, name: str | None) -> None:
    """An update of project/stack whose state does (or, with None, no longer does) read `name`."""
    path = f"/api/stacks/admin/{project}/{stack}"
    run = await begin(cairn, path)
    run.resources = reference_state(project, stack, name) if name else []
    await run.full_checkpoint(SECRETS)
    await run.complete()


async def test_downstream_references_and_referenced_stacks(any_cairn: Cairn) -> None:
    cairn = any_cairn
    await create_stack(cairn, "web", "dev")
    for project, stack in (("web", "consumer"), ("web", "short"), ("other", "dev"), ("app", "x")):
        await create_stack(cairn, project, stack)
    await reference(cairn, "web", "consumer", "admin/web/dev")
    await reference(cairn, "web", "consumer", "admin/web/dev")
    # `org/stack` resolves in the referencing stack's project; `stack` in its org and project.
    await reference(cairn, "web", "short", "admin/dev")
    await reference(cairn, "other", "dev", "dev")
    await reference(cairn, "app", "x", "admin/app/dev")

    downstream = await cairn.json("GET", f"{S}/downstreamreferences")
    assert downstream["referencedStacks"] == [
        {"organization": "admin", "routingProject": "web", "name": "consumer", "version": 2},
        {"organization": "admin", "routingProject": "web", "name": "short", "version": 1},
    ]
    other = await cairn.json("GET", "/api/stacks/admin/other/dev/downstreamreferences")
    assert other["referencedStacks"] == [], "a stack does not count as its own downstream"

    overview = await cairn.json("GET", "/api/console/stacks/admin/other/dev/overview")
    assert overview["referencedStacks"] == [
        {"organization": "admin", "routingProject": "other", "name": "dev", "version": 1}
    ]
    consumer = await cairn.json("GET", "/api/console/stacks/admin/web/consumer/overview")
    assert consumer["referencedStacks"] == [
        {"organization": "admin", "routingProject": "web", "name": "dev", "version": 2}
    ]
    assert len(consumer["resources"]["resources"]) == 2

    # The newest version decides: a consumer that dropped the reference is no longer listed.
    await reference(cairn, "web", "consumer", None)
    downstream = await cairn.json("GET", f"{S}/downstreamreferences")
    assert [entry["name"] for entry in downstream["referencedStacks"]] == ["short"]
    # Deleting a referencing stack forgets its references.
    response = await cairn.call("DELETE", "/api/stacks/admin/web/short?force=true")
    assert response.status == 204
    assert (await cairn.json("GET", f"{S}/downstreamreferences"))["referencedStacks"] == []

    # An imported state's references count as well.
    await create_stack(cairn, "web", "imported")
    state = {"version": 3, "deployment": deployment(reference_state("web", "imported", "dev"), {})}
    await cairn.json("POST", "/api/stacks/admin/web/imported/import", body=state)
    downstream = await cairn.json("GET", f"{S}/downstreamreferences")
    assert downstream["referencedStacks"] == [
        {"organization": "admin", "routingProject": "web", "name": "imported", "version": 1}
    ]

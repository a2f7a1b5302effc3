"""A deployment names the updates its job made, and each update names its deployment; a real
`cairn agent` runs the job, which creates the updates with the token minted for it, and the
official SDK reads them."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

try:
    from pulumi_cloud_sdk.apis.deployments_api_ import DeploymentsApi
    from pulumi_cloud_sdk.models import UpdateInfo
except ImportError:  # pragma: no cover - CI installs it with the dev extra
    pytest.skip(
        "pulumi-cloud-sdk is not installed (pip install -e '.[dev]')", allow_module_level=True
    )

from tests.gateway.cli import begin
from tests.gateway.conftest import Cairn
from tests.gateway.sdk import SdkCaller
from tests.gateway.test_agent_e2e import POOLS, S, finished, start_agent, stop_agent

ORG, PROJECT, STACK = "admin", "web", "dev"

# The job: what `pulumi up` and `pulumi preview` do against the backend, with the token and
# backend URL the agent hands it (create, start and complete an update, then a preview).
JOB = """\
import json, os, urllib.request

backend = os.environ["PULUMI_BACKEND_URL"]
stack = "/api/stacks/" + os.environ["PULUMI_STACK"]
token = os.environ["PULUMI_ACCESS_TOKEN"]


def call(path, body, authorization):
    request = urllib.request.Request(
        backend + path,
        data=json.dumps(body).encode(),
        method="POST",
        headers={
            "Authorization": authorization,
            "Accept": "application/vnd.pulumi+8",
            "Content-Type": "application/json",
        },
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        text = response.read()
        return json.loads(text) if text else None


for kind, dry_run in (("update", False), ("preview", True)):
    program = {
        "name": "web", "runtime": "python", "main": "", "description": "",
        "options": {"dryRun": dry_run}, "config": {},
        "metadata": {"message": "from the deployment", "environment": {}},
    }
    update_id = call(stack + "/" + kind, program, "token " + token)["updateID"]
    started = call(stack + "/" + kind + "/" + update_id, {"tags": {}}, "token " + token)
    call(
        stack + "/" + kind + "/" + update_id + "/complete",
        {"status": "succeeded"},
        "update-token " + started["token"],
    )
    print(kind + " " + update_id)
"""


class Sdk(SdkCaller):
    def __init__(self, cairn: Cairn) -> None:
        super().__init__(cairn)
        self.deployments = DeploymentsApi(self.client)


@pytest.fixture
async def pool_token(cairn: Cairn) -> AsyncIterator[str]:
    created = await cairn.json("POST", POOLS, body={"name": "runners", "description": "ci"})
    await cairn.json("POST", "/api/stacks/admin/web", body={"stackName": "dev"})
    yield created["tokenValue"]


async def run_deployment(cairn: Cairn, pool_token: str, tmp_path: Path) -> dict[str, Any]:
    """Queue an update deployment and let a real agent run the job above; its log lines."""
    script = tmp_path / "job.py"
    script.write_text(JOB)
    queued = await cairn.json("POST", f"{S}/deployments", body={"operation": "update"})
    agent = await start_agent(cairn, pool_token, f"{sys.executable} {script}", tmp_path / "work")
    try:
        deployment = await finished(cairn, queued["id"])
    finally:
        await stop_agent(agent)
    assert deployment["status"] == "succeeded", deployment
    return deployment


async def test_a_deployment_lists_the_updates_its_job_made_through_the_sdk(
    cairn: Cairn, pool_token: str, tmp_path: Path
) -> None:
    # An update made outside any deployment first: it is nobody's deployment's.
    run = await begin(cairn, S)
    await run.complete()
    deployment = await run_deployment(cairn, pool_token, tmp_path)
    logs = await cairn.json("GET", f"{S}/deployments/{deployment['id']}/logs")
    made = dict(line["line"].split(" ") for line in logs["lines"])
    assert set(made) == {"update", "preview"}

    sdk = Sdk(cairn)
    updates = await sdk(
        sdk.deployments.get_deployment_updates, ORG, PROJECT, STACK, deployment["id"]
    )
    assert all(isinstance(update, UpdateInfo) for update in updates)
    assert [u.update_id for u in updates] == [made["update"], made["preview"]]
    assert [u.info.kind for u in updates] == ["update", "preview"]
    assert updates[0].version == 2 and updates[0].info.result == "succeeded"
    assert updates[0].info.message == "from the deployment"
    assert updates[0].requested_by.github_login == "admin"
    assert updates[0].latest_version == 2

    # The deployment itself and the stack's listing name the same updates.
    read = await sdk(sdk.deployments.get_deployment, ORG, PROJECT, STACK, deployment["id"])
    assert read.id == deployment["id"]
    raw = await cairn.json("GET", f"{S}/deployments/{deployment['id']}")
    assert [u["updateID"] for u in raw["updates"]] == [made["update"], made["preview"]]
    listed = await sdk(sdk.deployments.list_stack_deployments_handler_v2, ORG, PROJECT, STACK)
    (entry,) = listed.deployments
    assert [u.update_id for u in entry.updates] == [made["update"], made["preview"]]
    assert [u.version for u in entry.updates] == [2, 2]
    org_listed = await cairn.json("GET", f"/api/orgs/{ORG}/deployments")
    assert [u["id"] for u in org_listed["deployments"][0]["updates"]] == list(made.values())


async def test_each_update_names_the_deployment_that_made_it(
    cairn: Cairn, pool_token: str, tmp_path: Path
) -> None:
    run = await begin(cairn, S)
    await run.complete()
    deployment = await run_deployment(cairn, pool_token, tmp_path)

    history = await cairn.json("GET", f"{S}/updates")
    by_version = {entry["version"]: entry for entry in history["updates"]}
    assert by_version[2]["deploymentId"] == deployment["id"]
    assert by_version[2]["deploymentVersion"] == deployment["version"] == 1
    # Not inside the CLI's flat fields, whose `deployment` is a state.
    assert "deployment" not in by_version[2] and "deploymentId" not in by_version[2]["info"]
    assert "deploymentId" not in by_version[1]
    one = await cairn.json("GET", f"{S}/updates/2")
    assert one["deploymentId"] == deployment["id"]
    latest = await cairn.json("GET", f"{S}/updates/latest")
    assert latest["deploymentId"] == deployment["id"]
    assert "deploymentId" not in await cairn.json("GET", f"{S}/updates/1")
    timeline = await cairn.json("GET", f"{S}/updates/2/timeline")
    assert timeline["update"]["deploymentId"] == deployment["id"]
    logs = await cairn.json("GET", f"{S}/deployments/{deployment['id']}/logs")
    made = dict(line["line"].split(" ") for line in logs["lines"])
    preview = await cairn.json("GET", f"{S}/previews/{made['preview']}")
    assert preview["deploymentId"] == deployment["id"]
    activity = await cairn.json("GET", f"{S}/activity")
    linked = [a["update"].get("deploymentId") for a in activity["activity"]]
    assert linked == [deployment["id"], None]


async def test_an_unknown_deployment_has_no_updates(cairn: Cairn, pool_token: str) -> None:
    response = await cairn.call("GET", f"{S}/deployments/{'0' * 32}/updates")
    assert response.status == 404
    body = await response.json()
    assert body["code"] == 404 and body["message"]

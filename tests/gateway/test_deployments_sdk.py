"""Agent pools and deployments through the official Python SDK (`pulumi-cloud-sdk`).

The SDK refuses any answer missing a required field, so every call succeeding proves the
gateway's shapes; the values are checked as well. The SDK is blocking (urllib) and the
gateway shares the test's event loop, so every call runs in a thread.
"""

from __future__ import annotations

import asyncio
import time
import urllib.error
from datetime import datetime
from typing import Any, TypeVar

import pytest

try:
    from pulumi_cloud_sdk.apis.deployments_api_ import DeploymentsApi
    from pulumi_cloud_sdk.apis.workflows_api_ import WorkflowsApi
    from pulumi_cloud_sdk.models import (
        CreateDeploymentRequest,
        CreateOrgAgentPoolRequest,
        DeploymentLogs,
        DeploymentLogsStep,
        DeploymentSettingsRequest,
        OperationContextRequest,
        PulumiOperation,
        SecretValue,
        SourceContextGitRequest,
        SourceContextRequest,
    )
except ImportError:  # pragma: no cover - CI installs it with the dev extra
    pytest.skip(
        "pulumi-cloud-sdk is not installed (pip install -e '.[dev]')", allow_module_level=True
    )

from tests.gateway.conftest import ADMIN_TOKEN, MEMBER, Cairn
from tests.gateway.sdk import SdkCaller

ORG, PROJECT, STACK = "admin", "web", "dev"
S = f"/api/stacks/{ORG}/{PROJECT}/{STACK}"
T = TypeVar("T")


class Sdk(SdkCaller):
    """The two SDK APIs on the test server, each call run in a thread."""

    def __init__(self, cairn: Cairn, token: str = ADMIN_TOKEN) -> None:
        super().__init__(cairn, token)
        client = self.client
        self.workflows = WorkflowsApi(client)
        self.deployments = DeploymentsApi(client)


async def agent_call(
    cairn: Cairn, token: str, path: str, body: Any = None, status: int = 200
) -> Any:
    return await cairn.json("POST", f"/api/agents{path}", status, token=token, body=body)


async def test_pools_and_deployments_through_the_sdk(cairn: Cairn) -> None:
    sdk = Sdk(cairn)
    wf, dep = sdk.workflows, sdk.deployments
    await cairn.json("POST", f"/api/stacks/{ORG}/{PROJECT}", body={"stackName": STACK})

    # -- agent pools ------------------------------------------------------------------
    before = int(time.time())
    created = await sdk(
        wf.create_org_agent_pool,
        ORG,
        CreateOrgAgentPoolRequest(name="builders", description="runs builds"),
    )
    after = int(time.time())
    pool_id, pool_token = created.id, created.token_value
    assert pool_id and pool_token.startswith("pul-")

    listing = await sdk(wf.list_org_agent_pool, ORG)
    assert listing.default_agent_pool_id == pool_id
    (pool,) = listing.agent_pools
    assert (pool.id, pool.name, pool.description) == (pool_id, "builders", "runs builds")
    assert before <= pool.created <= after
    assert (pool.last_seen, pool.status, pool.is_default) == (0, "offline", True)
    assert not pool.last_deployment

    detail = await sdk(wf.get_agent_pool, ORG, pool_id)
    assert (detail.id, detail.name, detail.description) == (pool_id, "builders", "runs builds")
    assert detail.created == pool.created
    assert detail.agents == []

    registered = await agent_call(
        cairn,
        pool_token,
        "/register",
        {"version": "1.2.3", "platform": "linux", "hostname": "runner-1", "ip": "10.0.0.9"},
    )
    agent_id = registered["agentID"]
    detail = await sdk(wf.get_agent_pool, ORG, pool_id)
    (agent,) = detail.agents
    assert (agent.version, agent.platform, agent.hostname, agent.ip) == (
        "1.2.3",
        "linux",
        "runner-1",
        "10.0.0.9",
    )
    assert agent.status == "online" and agent.last_seen >= before
    assert (await sdk(wf.list_org_agent_pool, ORG)).agent_pools[0].status == "online"

    patched = await sdk(
        wf.patch_org_agent_pool,
        ORG,
        pool_id,
        CreateOrgAgentPoolRequest(name="renamed", description="new words"),
    )
    assert (patched.name, patched.description) == ("renamed", "new words")
    detail = await sdk(wf.get_agent_pool, ORG, pool_id)
    assert (detail.name, detail.description) == ("renamed", "new words")

    # -- settings ---------------------------------------------------------------------
    encrypted = await sdk(
        dep.encrypt_deployment_settings_secret, ORG, PROJECT, STACK, SecretValue(secret="hunter2")
    )
    assert encrypted.secret == ""
    assert isinstance(encrypted.ciphertext, bytes) and encrypted.ciphertext
    assert b"hunter2" not in encrypted.ciphertext

    request = DeploymentSettingsRequest(
        agent_pool_id=pool_id,
        operation_context=OperationContextRequest(
            environment_variables={
                "A": SecretValue(secret="", plaintext="plain"),
                "B": SecretValue(secret="s3cret"),
                "C": SecretValue(secret="", ciphertext=encrypted.ciphertext),
            }
        ),
    )
    stored = await sdk(dep.patch_deployment_settings, ORG, PROJECT, STACK, request)
    assert stored.agent_pool_id == pool_id
    environment = stored.operation_context.environment_variables
    assert sorted(environment) == ["A", "B", "C"]
    assert (environment["A"].secret, environment["A"].plaintext) == ("", "plain")
    assert environment["B"].secret == "" and environment["B"].plaintext is None
    assert isinstance(environment["B"].ciphertext, bytes) and environment["B"].ciphertext
    assert environment["C"].ciphertext == encrypted.ciphertext

    # A second patch with only a tag leaves the rest as it was (the SDK sends nulls).
    again = await sdk(
        dep.patch_deployment_settings, ORG, PROJECT, STACK, DeploymentSettingsRequest(tag="v1")
    )
    assert again.tag == "v1" and again.agent_pool_id == pool_id
    fetched = await sdk(dep.get_deployment_settings, ORG, PROJECT, STACK)
    assert fetched.tag == "v1" and fetched.agent_pool_id == pool_id
    assert fetched.operation_context.environment_variables["B"].ciphertext == (
        environment["B"].ciphertext
    )
    raw = await (await cairn.call("GET", f"{S}/deployments/settings")).text()
    assert "s3cret" not in raw and "hunter2" not in raw

    # -- deployments ------------------------------------------------------------------
    first = await sdk(
        dep.create_api_deployment_handler_v2,
        ORG,
        PROJECT,
        STACK,
        CreateDeploymentRequest(operation=PulumiOperation.Update, inherit_settings=True),
    )
    assert first.version == 1
    assert first.console_url.endswith(f"/{ORG}/{PROJECT}/{STACK}/deployments/1")

    listed = await sdk(dep.list_stack_deployments_handler_v2, ORG, PROJECT, STACK)
    assert listed.total == 1
    (snapshot,) = listed.deployments
    assert (snapshot.id, snapshot.version, snapshot.status) == (first.id, 1, "not-started")
    assert snapshot.pulumi_operation == "update"
    assert snapshot.requested_by.github_login == "admin"
    assert (snapshot.project_name, snapshot.stack_name) == (PROJECT, STACK)
    assert snapshot.jobs == [] and snapshot.updates == []

    job = await agent_call(cairn, pool_token, f"/{agent_id}/claim")
    assert job["deploymentID"] == first.id
    assert job["settings"]["operationContext"]["environmentVariables"] == {
        "A": "plain",
        "B": "s3cret",
        "C": "hunter2",
    }
    assert job["settings"]["tag"] == "v1"
    assert (await sdk(wf.list_org_agent_pool, ORG)).agent_pools[0].last_deployment >= before

    running = await sdk(dep.get_deployment, ORG, PROJECT, STACK, first.id)
    assert (running.id, running.status, running.latest_version) == (first.id, "accepted", 1)
    assert running.initiator == "api"  # queued by a caller of the API
    (run,) = running.jobs
    assert run.status == "accepted"
    assert isinstance(run.started, datetime)
    assert [step.status for step in run.steps] == ["running"]
    variables = {v.name: (v.value, v.secret) for v in running.configuration.environment_variables}
    assert variables == {"A": ("plain", False), "B": (None, True), "C": (None, True)}

    lines = ["Updating (dev)", "+ 1 created", "Duration: 1s"]
    appended = await agent_call(
        cairn, pool_token, f"/{agent_id}/deployments/{first.id}/logs", {"lines": lines}
    )
    assert appended == {"cancelled": False}
    logs = await sdk(dep.get_deployment_logs, ORG, PROJECT, STACK, first.id, count=2)
    assert isinstance(logs, DeploymentLogs)
    assert [line.line for line in logs.lines] == lines[:2]
    assert all(isinstance(line.timestamp, datetime) for line in logs.lines)
    assert logs.next_token == "2"
    logs = await sdk(
        dep.get_deployment_logs, ORG, PROJECT, STACK, first.id, continuation_token=logs.next_token
    )
    assert [line.line for line in logs.lines] == lines[2:]
    assert logs.next_token == "3"
    step = await sdk(dep.get_deployment_logs, ORG, PROJECT, STACK, first.id, job=0, step=0)
    assert isinstance(step, DeploymentLogsStep)
    assert [line.line for line in step.lines] == lines
    assert step.next_offset == 3

    await agent_call(
        cairn,
        pool_token,
        f"/{agent_id}/deployments/{first.id}/finish",
        {"status": "succeeded", "message": ""},
        status=204,
    )
    done = await sdk(dep.get_deployment, ORG, PROJECT, STACK, first.id)
    assert done.status == "succeeded"
    assert done.jobs[0].steps[0].status == "succeeded"
    logs = await sdk(dep.get_deployment_logs, ORG, PROJECT, STACK, first.id)
    assert [line.line for line in logs.lines] == lines
    assert logs.next_token is None  # finished and all read

    # A queued deployment is cancelled at once.
    second = await sdk(
        dep.create_api_deployment_handler_v2,
        ORG,
        PROJECT,
        STACK,
        CreateDeploymentRequest(operation=PulumiOperation.Preview, inherit_settings=True),
    )
    assert second.version == 2
    assert await sdk(dep.cancel_deployment, ORG, PROJECT, STACK, second.id) == b""
    cancelled = await sdk(dep.get_deployment, ORG, PROJECT, STACK, second.id)
    assert (cancelled.status, cancelled.pulumi_operation, cancelled.latest_version) == (
        "failed",
        "preview",
        2,
    )

    listed = await sdk(dep.list_stack_deployments_handler_v2, ORG, PROJECT, STACK)
    assert listed.total == 2
    assert [(d.id, d.status) for d in listed.deployments] == [
        (second.id, "failed"),
        (first.id, "succeeded"),
    ]
    oldest_first = await sdk(
        dep.list_stack_deployments_handler_v2, ORG, PROJECT, STACK, asc=True, page=1, page_size=1
    )
    assert [d.id for d in oldest_first.deployments] == [first.id]
    assert (oldest_first.total, oldest_first.items_per_page) == (2, 1)
    org_wide = await sdk(dep.list_org_deployments, ORG)
    assert org_wide.total == 2
    assert [d.id for d in org_wide.deployments] == [second.id, first.id]

    # -- clean-up calls ---------------------------------------------------------------
    assert await sdk(dep.delete_deployment_settings, ORG, PROJECT, STACK) is True
    emptied = await sdk(dep.get_deployment_settings, ORG, PROJECT, STACK)
    assert emptied.agent_pool_id is None and emptied.operation_context is None
    assert emptied.tag is None

    assert await sdk(wf.delete_org_agent_pool, ORG, pool_id) == b""
    assert (await sdk(wf.list_org_agent_pool, ORG)).agent_pools == []
    assert (await sdk(wf.list_org_agent_pool, ORG)).default_agent_pool_id is None


async def test_the_sdk_sees_http_errors(cairn: Cairn) -> None:
    sdk = Sdk(cairn)
    await cairn.json("POST", f"/api/stacks/{ORG}/{PROJECT}", body={"stackName": STACK})
    created = await sdk(
        sdk.workflows.create_org_agent_pool,
        ORG,
        CreateOrgAgentPoolRequest(name="p", description=""),
    )
    await sdk(
        sdk.deployments.patch_deployment_settings,
        ORG,
        PROJECT,
        STACK,
        DeploymentSettingsRequest(agent_pool_id=created.id),
    )

    with pytest.raises(urllib.error.HTTPError) as in_use:
        await sdk(sdk.workflows.delete_org_agent_pool, ORG, created.id)
    assert in_use.value.code == 400
    assert b"Agent pool is in use" in in_use.value.read()
    assert await sdk(sdk.workflows.delete_org_agent_pool, ORG, created.id, force=True) == b""
    settings = await sdk(sdk.deployments.get_deployment_settings, ORG, PROJECT, STACK)
    assert settings.agent_pool_id is None

    with pytest.raises(urllib.error.HTTPError) as missing:
        await sdk(sdk.workflows.get_agent_pool, ORG, created.id)
    assert missing.value.code == 404

    member = await cairn.new_user("mo", org_role=(ORG, MEMBER))
    with pytest.raises(urllib.error.HTTPError) as forbidden:
        await asyncio.to_thread(Sdk(cairn, member).workflows.list_org_agent_pool, ORG)
    assert forbidden.value.code == 403


async def test_settings_are_replaced_through_the_sdk(any_cairn: Cairn) -> None:
    cairn = any_cairn
    sdk = Sdk(cairn)
    dep = sdk.deployments
    await cairn.json("POST", f"/api/stacks/{ORG}/{PROJECT}", body={"stackName": STACK})
    git = SourceContextGitRequest(repo_url="https://example.com/web.git", branch="main")
    first = await sdk(
        dep.replace_deployment_settings,
        ORG,
        PROJECT,
        STACK,
        DeploymentSettingsRequest(tag="v1", source_context=SourceContextRequest(git=git)),
    )
    assert first.tag == "v1"
    assert (first.source_context.git.repo_url, first.source_context.git.branch) == (
        "https://example.com/web.git",
        "main",
    )
    # Replacing drops what the new settings leave out, unlike a patch.
    second = await sdk(
        dep.replace_deployment_settings,
        ORG,
        PROJECT,
        STACK,
        DeploymentSettingsRequest(
            operation_context=OperationContextRequest(pre_run_commands=["make"])
        ),
    )
    assert second.tag is None and second.source_context is None
    assert second.operation_context.pre_run_commands == ["make"]
    fetched = await sdk(dep.get_deployment_settings, ORG, PROJECT, STACK)
    assert fetched.tag is None and fetched.operation_context.pre_run_commands == ["make"]

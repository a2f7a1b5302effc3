"""Agent pools (seed 003), deployments and the agent protocol over HTTP, through the gateway."""

from __future__ import annotations

import time
from typing import Any

from tests.gateway.conftest import ADMIN, MEMBER, VIEWER, Cairn

POOLS = "/api/orgs/admin/agent-pools"
S = "/api/stacks/admin/web/dev"
SETTINGS = f"{S}/deployments/settings"
DEPLOYMENTS = f"{S}/deployments"
POOL_KEYS = {"created", "id", "name", "description", "lastSeen", "status", "isDefault"}
AGENT = {"version": "1.2.3", "platform": "linux", "hostname": "runner-1", "ip": "10.1.2.3"}


async def error_of(cairn: Cairn, method: str, path: str, status: int, **kwargs: Any) -> str:
    """Pulumi's error body `{"code", "message"}` with the expected status; its message."""
    response = await cairn.call(method, path, **kwargs)
    text = await response.text()
    assert response.status == status, f"{method} {path}: {response.status} {text}"
    assert response.content_type == "application/json"
    body = await response.json()
    assert body["code"] == status
    assert isinstance(body["message"], str) and body["message"]
    message: str = body["message"]
    return message


async def make_stack(cairn: Cairn, project: str = "web", stack: str = "dev") -> None:
    await cairn.json("POST", f"/api/stacks/admin/{project}", body={"stackName": stack})


async def create_pool(
    cairn: Cairn, name: str, description: str = "", *, org: str = "admin", token: str | None = None
) -> tuple[str, str]:
    """A new pool's id and its agent token."""
    kwargs: dict[str, Any] = {} if token is None else {"token": token}
    body = await cairn.json(
        "POST",
        f"/api/orgs/{org}/agent-pools",
        body={"name": name, "description": description},
        **kwargs,
    )
    assert set(body) == {"id", "tokenValue"}
    assert body["id"] and body["tokenValue"]
    return body["id"], body["tokenValue"]


async def register(cairn: Cairn, pool_token: str, hostname: str = "runner-1") -> str:
    body = await cairn.json(
        "POST",
        "/api/agents/register",
        token=pool_token,
        body={**AGENT, "hostname": hostname, "pid": 4242},
    )
    assert set(body) == {"agentID", "poolID", "heartbeatIntervalSeconds"}
    assert body["heartbeatIntervalSeconds"] == 10
    agent_id: str = body["agentID"]
    return agent_id


async def claim(cairn: Cairn, pool_token: str, agent_id: str) -> dict[str, Any] | None:
    response = await cairn.call("POST", f"/api/agents/{agent_id}/claim", token=pool_token)
    text = await response.text()
    if response.status == 204:
        assert text == ""
        return None
    assert response.status == 200, text
    job: dict[str, Any] = await response.json()
    return job


async def heartbeat(cairn: Cairn, pool_token: str, agent_id: str) -> list[str]:
    body = await cairn.json("POST", f"/api/agents/{agent_id}/heartbeat", token=pool_token)
    assert set(body) == {"cancelledDeployments"}
    cancelled: list[str] = body["cancelledDeployments"]
    return cancelled


async def append_logs(
    cairn: Cairn, pool_token: str, agent_id: str, deployment_id: str, lines: list[str]
) -> bool:
    body = await cairn.json(
        "POST",
        f"/api/agents/{agent_id}/deployments/{deployment_id}/logs",
        token=pool_token,
        body={"lines": lines},
    )
    cancelled: bool = body["cancelled"]
    return cancelled


async def finish(
    cairn: Cairn,
    pool_token: str,
    agent_id: str,
    deployment_id: str,
    status: str = "succeeded",
    message: str = "",
) -> None:
    await cairn.json(
        "POST",
        f"/api/agents/{agent_id}/deployments/{deployment_id}/finish",
        204,
        token=pool_token,
        body={"status": status, "message": message},
    )


async def deploy(cairn: Cairn, operation: str = "update") -> dict[str, Any]:
    body: dict[str, Any] = await cairn.json(
        "POST", DEPLOYMENTS, body={"operation": operation, "inheritSettings": True}
    )
    assert set(body) == {"id", "consoleUrl", "version"}
    return body


async def deployment(cairn: Cairn, deployment_id: str) -> dict[str, Any]:
    body: dict[str, Any] = await cairn.json("GET", f"{DEPLOYMENTS}/{deployment_id}")
    return body


async def pools_by_id(cairn: Cairn) -> tuple[dict[str, dict[str, Any]], Any]:
    listing = await cairn.json("GET", POOLS)
    return {pool["id"]: pool for pool in listing["agentPools"]}, listing.get("defaultAgentPoolID")


async def test_pool_routes_field_by_field(any_cairn: Cairn) -> None:
    cairn = any_cairn
    assert await cairn.json("GET", POOLS) == {"agentPools": []}

    before = int(time.time())
    first, first_token = await create_pool(cairn, "builders", "runs builds")
    second, second_token = await create_pool(cairn, "spare", "")
    assert first != second and first_token != second_token
    after = int(time.time())

    listing = await cairn.json("GET", POOLS)
    assert set(listing) == {"agentPools", "defaultAgentPoolID"}
    assert listing["defaultAgentPoolID"] == first  # the oldest pool
    one, two = listing["agentPools"]
    assert set(one) == POOL_KEYS and set(two) == POOL_KEYS  # no lastDeployment yet
    assert (one["id"], one["name"], one["description"]) == (first, "builders", "runs builds")
    assert (two["id"], two["name"], two["description"]) == (second, "spare", "")
    assert before <= one["created"] <= two["created"] <= after
    assert (one["lastSeen"], one["status"], one["isDefault"]) == (0, "offline", True)
    assert (two["lastSeen"], two["status"], two["isDefault"]) == (0, "offline", False)

    detail = await cairn.json("GET", f"{POOLS}/{first}")
    assert detail == {
        "created": one["created"],
        "id": first,
        "name": "builders",
        "description": "runs builds",
        "agents": [],
    }

    registered_from = int(time.time())
    agent_id = await register(cairn, first_token)
    registered_to = int(time.time())
    detail = await cairn.json("GET", f"{POOLS}/{first}")
    (agent,) = detail["agents"]
    assert set(agent) == {"version", "platform", "hostname", "ip", "pid", "lastSeen", "status"}
    assert {k: agent[k] for k in AGENT} == AGENT
    assert agent["pid"] == "4242"
    assert registered_from <= agent["lastSeen"] <= registered_to
    assert agent["status"] == "online"
    assert agent_id not in str(detail)  # agents are described, not identified
    pools, _ = await pools_by_id(cairn)
    assert (pools[first]["status"], pools[first]["lastSeen"]) == ("online", agent["lastSeen"])
    assert pools[second]["status"] == "offline"

    # Only the non-null fields change.
    renamed = await cairn.json("PATCH", f"{POOLS}/{first}", body={"name": "renamed"})
    assert renamed == {"name": "renamed", "description": "runs builds"}
    redescribed = await cairn.json(
        "PATCH", f"{POOLS}/{first}", body={"name": None, "description": "new words"}
    )
    assert redescribed == {"name": "renamed", "description": "new words"}
    assert await cairn.json("PATCH", f"{POOLS}/{first}", body={}) == redescribed
    detail = await cairn.json("GET", f"{POOLS}/{first}")
    assert (detail["name"], detail["description"]) == ("renamed", "new words")
    pools, _ = await pools_by_id(cairn)
    assert (pools[first]["name"], pools[first]["description"]) == ("renamed", "new words")
    assert (pools[second]["name"], pools[second]["description"]) == ("spare", "")

    # The token was shown once and appears in no other answer.
    for path in (POOLS, f"{POOLS}/{first}", f"{POOLS}/{second}"):
        text = await (await cairn.call("GET", path)).text()
        assert first_token not in text and second_token not in text
    patched = await (
        await cairn.call("PATCH", f"{POOLS}/{second}", body={"description": "x"})
    ).text()
    assert second_token not in patched

    # Deleting the oldest pool makes the next one the default.
    response = await cairn.call("DELETE", f"{POOLS}/{first}")
    assert response.status == 204
    assert await response.read() == b""
    message = await error_of(cairn, "GET", f"{POOLS}/{first}", 404)
    assert "AgentPool" in message
    listing = await cairn.json("GET", POOLS)
    assert listing["defaultAgentPoolID"] == second
    (only,) = listing["agentPools"]
    assert (only["id"], only["isDefault"], only["description"]) == (second, True, "x")
    # The deleted pool's token no longer works.
    await error_of(cairn, "POST", "/api/agents/register", 401, token=first_token, body={})

    await error_of(cairn, "DELETE", f"{POOLS}/{first}", 404)
    await error_of(cairn, "DELETE", f"{POOLS}/no-such-pool", 404)
    await error_of(cairn, "PATCH", f"{POOLS}/no-such-pool", 404, body={"name": "x"})
    await error_of(cairn, "GET", f"{POOLS}/no-such-pool", 404)


async def test_another_orgs_pool_is_404(cairn: Cairn) -> None:
    ours, _ = await create_pool(cairn, "ours")
    bob = await cairn.new_user("bob")
    theirs, _ = await create_pool(cairn, "theirs", org="bob", token=bob)

    await error_of(cairn, "GET", f"{POOLS}/{theirs}", 404)
    await error_of(cairn, "PATCH", f"{POOLS}/{theirs}", 404, body={"name": "stolen"})
    await error_of(cairn, "DELETE", f"{POOLS}/{theirs}", 404)
    await error_of(cairn, "DELETE", f"{POOLS}/{theirs}?force=true", 404)
    other = "/api/orgs/bob/agent-pools"
    await error_of(cairn, "GET", f"{other}/{ours}", 404, token=bob)
    await error_of(cairn, "DELETE", f"{other}/{ours}", 404, token=bob)

    pools, default = await pools_by_id(cairn)
    assert set(pools) == {ours} and default == ours
    theirs_listing = await cairn.json("GET", other, token=bob)
    assert [pool["id"] for pool in theirs_listing["agentPools"]] == [theirs]
    assert theirs_listing["agentPools"][0]["name"] == "theirs"
    assert theirs_listing["defaultAgentPoolID"] == theirs


async def test_members_are_forbidden_and_outsiders_see_nothing(cairn: Cairn) -> None:
    pool_id, _ = await create_pool(cairn, "builders", "runs builds")
    viewer = await cairn.new_user("vera", org_role=("admin", VIEWER))
    member = await cairn.new_user("mo", org_role=("admin", MEMBER))
    outsider = await cairn.new_user("bob")
    calls: list[tuple[str, str, Any]] = [
        ("GET", POOLS, None),
        ("POST", POOLS, {"name": "mine", "description": ""}),
        ("GET", f"{POOLS}/{pool_id}", None),
        ("PATCH", f"{POOLS}/{pool_id}", {"name": "mine", "description": "mine"}),
        ("DELETE", f"{POOLS}/{pool_id}", None),
        ("DELETE", f"{POOLS}/{pool_id}?force=true", None),
    ]
    for method, path, body in calls:
        for token in (member, viewer):
            await error_of(cairn, method, path, 403, token=token, body=body)
        await error_of(cairn, method, path, 404, token=outsider, body=body)

    listing = await cairn.json("GET", POOLS)
    (pool,) = listing["agentPools"]
    assert (pool["id"], pool["name"], pool["description"]) == (pool_id, "builders", "runs builds")

    # An organization admin who is not the site admin may manage pools.
    boss = await cairn.new_user("boss", org_role=("admin", ADMIN))
    assert (await cairn.json("GET", f"{POOLS}/{pool_id}", token=boss))["name"] == "builders"


async def test_a_pool_in_use_is_only_deleted_when_forced(cairn: Cairn) -> None:
    await make_stack(cairn)
    pool_id, _ = await create_pool(cairn, "builders")
    stored = await cairn.json("POST", SETTINGS, body={"agentPoolID": pool_id, "tag": "v1"})
    assert stored == {"agentPoolID": pool_id, "tag": "v1"}
    queued = await deploy(cairn)

    message = await error_of(cairn, "DELETE", f"{POOLS}/{pool_id}", 400)
    assert "Agent pool is in use" in message
    message = await error_of(cairn, "DELETE", f"{POOLS}/{pool_id}?force=false", 400)
    assert "Agent pool is in use" in message
    assert (await cairn.json("GET", f"{POOLS}/{pool_id}"))["id"] == pool_id
    assert await cairn.json("GET", SETTINGS) == {"agentPoolID": pool_id, "tag": "v1"}
    assert (await deployment(cairn, queued["id"]))["status"] == "not-started"

    response = await cairn.call("DELETE", f"{POOLS}/{pool_id}?force=true")
    assert response.status == 204
    await error_of(cairn, "GET", f"{POOLS}/{pool_id}", 404)
    # The stack lost the pool but kept the rest of its settings.
    assert await cairn.json("GET", SETTINGS) == {"tag": "v1"}
    # Work nobody can run any more ended.
    ended = await deployment(cairn, queued["id"])
    assert ended["status"] == "failed"
    assert ended["message"] == "the agent pool was deleted"


async def test_the_agent_protocol_end_to_end(any_cairn: Cairn) -> None:
    cairn = any_cairn
    await make_stack(cairn)
    pool_id, token = await create_pool(cairn, "builders")

    await error_of(cairn, "POST", "/api/agents/register", 401, token="pul-wrong", body=AGENT)
    await error_of(cairn, "POST", "/api/agents/register", 401, token=None, body=AGENT)
    agent_id = await register(cairn, token)
    await error_of(cairn, "POST", f"/api/agents/{agent_id}/heartbeat", 401, token="pul-wrong")
    assert await heartbeat(cairn, token, agent_id) == []
    assert await claim(cairn, token, agent_id) is None

    settings = {
        "operationContext": {"environmentVariables": {"A": "plain", "B": {"secret": "s3cret"}}}
    }
    stored = await cairn.json("POST", SETTINGS, body=settings)
    response = await cairn.call("GET", SETTINGS)
    text = await response.text()
    assert response.status == 200 and "s3cret" not in text
    assert (await response.json()) == stored
    environment = stored["operationContext"]["environmentVariables"]
    assert environment["A"] == {"secret": "", "plaintext": "plain"}
    assert set(environment["B"]) == {"secret", "ciphertext"}
    assert environment["B"]["secret"] == "" and environment["B"]["ciphertext"]

    started_from = int(time.time())
    created = await deploy(cairn)
    assert created["version"] == 1
    assert created["consoleUrl"].startswith("http")
    assert created["consoleUrl"].endswith("/admin/web/dev/deployments/1")
    queued = await deployment(cairn, created["id"])
    assert (queued["status"], queued["jobs"], queued["latestVersion"]) == ("not-started", [], 1)
    assert queued["requestedBy"]["githubLogin"] == "admin"
    assert queued["pulumiOperation"] == "update"
    pools, _ = await pools_by_id(cairn)
    assert "lastDeployment" not in pools[pool_id]  # queued is not run

    job = await claim(cairn, token, agent_id)
    assert job is not None
    # The agent is told which values to mask in the logs it sends.
    assert job["secretValues"] == ["s3cret"]
    assert {
        k: v for k, v in job.items() if k not in ("settings", "environment", "secretValues")
    } == {
        "deploymentID": created["id"],
        "version": 1,
        "operation": "update",
        "orgName": "admin",
        "projectName": "web",
        "stackName": "dev",
    }
    # The job acts for the user who queued it, against this gateway.
    assert set(job["environment"]) == {"PULUMI_ACCESS_TOKEN", "PULUMI_BACKEND_URL"}
    assert job["environment"]["PULUMI_BACKEND_URL"] == str(cairn.client.make_url("")).rstrip("/")
    # The agent, and only the agent, sees the secret.
    assert job["settings"]["operationContext"]["environmentVariables"] == {
        "A": "plain",
        "B": "s3cret",
    }
    assert await claim(cairn, token, agent_id) is None
    started_to = int(time.time())
    pools, _ = await pools_by_id(cairn)
    assert started_from <= pools[pool_id]["lastDeployment"] <= started_to
    accepted = await deployment(cairn, created["id"])
    assert accepted["status"] == "accepted"
    assert accepted["jobs"][0]["status"] == "accepted"
    assert "s3cret" not in str(accepted)

    assert (
        await append_logs(cairn, token, agent_id, created["id"], ["one", "two", "three"]) is False
    )
    assert (await deployment(cairn, created["id"]))["status"] == "running"
    logs = f"{DEPLOYMENTS}/{created['id']}/logs"
    page = await cairn.json("GET", f"{logs}?count=2")
    assert page["__type"] == "DeploymentLogs"
    assert [line["line"] for line in page["lines"]] == ["one", "two"]
    assert all(line["header"] == "Pulumi operation" for line in page["lines"])
    assert all(line["timestamp"].endswith("Z") for line in page["lines"])
    assert page["nextToken"] == "2"
    page = await cairn.json("GET", f"{logs}?continuationToken=2")
    assert [line["line"] for line in page["lines"]] == ["three"]
    assert page["nextToken"] == "3"  # still running: more may come
    page = await cairn.json("GET", f"{logs}?continuationToken=3")
    assert (page["lines"], page["nextToken"]) == ([], "3")

    await finish(cairn, token, agent_id, created["id"], "succeeded", "all good")
    done = await deployment(cairn, created["id"])
    assert done["status"] == "succeeded"
    assert done["message"] == "all good"
    assert done["jobs"][0]["status"] == "succeeded"
    assert done["configuration"]["environmentVariables"] == [
        {"name": "A", "value": "plain", "secret": False},
        {"name": "B", "value": None, "secret": True},
    ]
    # Finished and read: no token any more.
    page = await cairn.json("GET", f"{logs}?continuationToken=3")
    assert page == {"__type": "DeploymentLogs", "lines": []}
    whole = await cairn.json("GET", logs)
    assert [line["line"] for line in whole["lines"]] == ["one", "two", "three"]
    assert "nextToken" not in whole

    second = await deploy(cairn, "preview")
    assert second["version"] == 2
    listing = await cairn.json("GET", DEPLOYMENTS)
    assert listing["total"] == 2
    assert [(d["id"], d["version"]) for d in listing["deployments"]] == [
        (second["id"], 2),
        (created["id"], 1),
    ]
    assert [d["status"] for d in listing["deployments"]] == ["not-started", "succeeded"]
    assert [d["pulumiOperation"] for d in listing["deployments"]] == ["preview", "update"]
    paged = await cairn.json("GET", f"{DEPLOYMENTS}?pageSize=1&page=2")
    assert [d["id"] for d in paged["deployments"]] == [created["id"]]
    assert (paged["total"], paged["itemsPerPage"]) == (2, 1)
    org_listing = await cairn.json("GET", "/api/orgs/admin/deployments")
    assert org_listing["total"] == 2
    assert [d["stackName"] for d in org_listing["deployments"]] == ["dev", "dev"]
    assert (await deployment(cairn, created["id"]))["latestVersion"] == 2


async def test_a_null_inherit_settings_inherits_like_an_absent_one(cairn: Cairn) -> None:
    """The SDK's model makes `inheritSettings` nullable: null means the stack's settings."""
    await make_stack(cairn)
    await create_pool(cairn, "builders")
    for body in ({"operation": "preview", "inheritSettings": None}, {"operation": "preview"}):
        created = await cairn.json("POST", DEPLOYMENTS, body=body)
        assert (await deployment(cairn, created["id"]))["status"] == "not-started"


async def test_cancelling_deployments(cairn: Cairn) -> None:
    await make_stack(cairn)
    _, token = await create_pool(cairn, "builders")
    agent_id = await register(cairn, token)

    queued = await deploy(cairn)
    response = await cairn.call("POST", f"{DEPLOYMENTS}/{queued['id']}/cancel")
    assert response.status == 204
    cancelled = await deployment(cairn, queued["id"])
    assert (cancelled["status"], cancelled["message"]) == ("failed", "cancelled")
    assert await claim(cairn, token, agent_id) is None  # never handed out

    running = await deploy(cairn)
    job = await claim(cairn, token, agent_id)
    assert job is not None and job["deploymentID"] == running["id"]
    assert await heartbeat(cairn, token, agent_id) == []
    response = await cairn.call("POST", f"{DEPLOYMENTS}/{running['id']}/cancel")
    assert response.status == 204
    assert (await deployment(cairn, running["id"]))["status"] == "accepted"
    assert await heartbeat(cairn, token, agent_id) == [running["id"]]
    assert await append_logs(cairn, token, agent_id, running["id"], ["stopping"]) is True
    await finish(cairn, token, agent_id, running["id"], "succeeded")
    ended = await deployment(cairn, running["id"])
    assert (ended["status"], ended["message"]) == ("failed", "cancelled")
    assert await heartbeat(cairn, token, agent_id) == []

    for finished in (queued["id"], running["id"]):
        await error_of(cairn, "POST", f"{DEPLOYMENTS}/{finished}/cancel", 409)
    await error_of(cairn, "POST", f"{DEPLOYMENTS}/no-such-deployment/cancel", 404)
    assert [d["status"] for d in (await cairn.json("GET", DEPLOYMENTS))["deployments"]] == [
        "failed",
        "failed",
    ]


async def test_bad_input_is_4xx_and_changes_nothing(cairn: Cairn) -> None:
    await make_stack(cairn)
    pool_id, token = await create_pool(cairn, "builders")
    bob = await cairn.new_user("bob")
    foreign_pool, foreign_token = await create_pool(cairn, "theirs", org="bob", token=bob)
    assert await cairn.json("POST", SETTINGS, body={"tag": "v1"}) == {"tag": "v1"}

    # Pools.
    await error_of(cairn, "POST", POOLS, 400, body={"description": "no name"})
    await error_of(cairn, "POST", POOLS, 400, body={"name": "   ", "description": ""})
    await error_of(cairn, "POST", POOLS, 400, body=["name"])
    await error_of(cairn, "PATCH", f"{POOLS}/{pool_id}", 400, body={"name": 7})
    await error_of(cairn, "PATCH", f"{POOLS}/{pool_id}", 400, body={"name": ""})
    await error_of(cairn, "DELETE", f"{POOLS}/{pool_id}?force=maybe", 400)
    pools, _ = await pools_by_id(cairn)
    assert set(pools) == {pool_id} and pools[pool_id]["name"] == "builders"

    # Settings.
    message = await error_of(cairn, "POST", SETTINGS, 404, body={"agentPoolID": "no-such-pool"})
    assert "no-such-pool" in message
    await error_of(cairn, "POST", SETTINGS, 404, body={"agentPoolID": foreign_pool})
    await error_of(cairn, "POST", SETTINGS, 400, body={"agentPoolID": 7})
    await error_of(cairn, "POST", SETTINGS, 400, body=[1, 2])
    await error_of(cairn, "POST", SETTINGS, 400, body="settings")
    await error_of(cairn, "POST", SETTINGS, 400, raw=b"{not json")
    # Settings are read back through the SDK's models: what they cannot hold is refused
    # (members they do not name are kept: the CLI sends settings too).
    for shape, where in (
        ({"sourceContext": {"git": 5}}, "sourceContext.git"),
        ({"operationContext": {"environmentVariables": {"A": 5}}}, "environmentVariables.A"),
        ({"operationContext": {"preRunCommands": "make"}}, "preRunCommands"),
        ({"operationContext": {"operation": "explode"}}, "operation"),
    ):
        message = await error_of(cairn, "PUT", SETTINGS, 400, body=shape)
        assert where in message, (shape, message)
    hidden = await error_of(
        cairn,
        "POST",
        SETTINGS,
        400,
        body={"operationContext": {"environmentVariables": {"A": {"secret": ["hunter2"]}}}},
    )
    assert "hunter2" not in hidden
    await error_of(cairn, "POST", SETTINGS, 400, body={"operationContext": "x"})
    await error_of(
        cairn, "POST", SETTINGS, 400, body={"operationContext": {"environmentVariables": [1]}}
    )
    await error_of(cairn, "PUT", SETTINGS, 404, body={"agentPoolID": "no-such-pool"})
    assert await cairn.json("GET", SETTINGS) == {"tag": "v1"}

    # Deployments.
    message = await error_of(cairn, "POST", DEPLOYMENTS, 400, body={"operation": "explode"})
    assert "'operation' must be one of" in message
    await error_of(cairn, "POST", DEPLOYMENTS, 400, body={"operation": 7})
    await error_of(cairn, "POST", DEPLOYMENTS, 400, body={"inheritSettings": "yes"})
    await error_of(cairn, "POST", DEPLOYMENTS, 404, body={"agentPoolID": "no-such-pool"})
    await error_of(cairn, "POST", DEPLOYMENTS, 404, body={"agentPoolID": foreign_pool})
    await error_of(cairn, "POST", DEPLOYMENTS, 400, body=[])
    await error_of(cairn, "GET", f"{DEPLOYMENTS}?pageSize=0&page=-1", 400)
    await error_of(cairn, "GET", f"{DEPLOYMENTS}/no-such-deployment", 404)
    await error_of(cairn, "GET", f"{DEPLOYMENTS}/no-such-deployment/logs", 404)
    assert (await cairn.json("GET", DEPLOYMENTS)) == {
        "deployments": [],
        "itemsPerPage": 0,
        "total": 0,
    }

    # The agent protocol.
    agent_id = await register(cairn, token)
    other_agent = await register(cairn, token, "runner-2")
    foreign_agent = await register(cairn, foreign_token)
    created = await deploy(cairn)
    await error_of(cairn, "POST", f"/api/agents/{agent_id}/claim", 401, token="pul-wrong")
    await error_of(cairn, "POST", f"/api/agents/{agent_id}/claim", 401, token=foreign_token)
    await error_of(cairn, "POST", f"/api/agents/{foreign_agent}/claim", 401, token=token)
    await error_of(cairn, "POST", f"/api/agents/{agent_id}/claim", 401, token=None)
    job = await claim(cairn, token, agent_id)
    assert job is not None and job["deploymentID"] == created["id"]

    finish_path = f"/api/agents/{other_agent}/deployments/{created['id']}/finish"
    await error_of(cairn, "POST", finish_path, 409, token=token, body={"status": "succeeded"})
    logs_path = f"/api/agents/{other_agent}/deployments/{created['id']}/logs"
    await error_of(cairn, "POST", logs_path, 409, token=token, body={"lines": ["not mine"]})
    own = f"/api/agents/{agent_id}/deployments/{created['id']}"
    await error_of(cairn, "POST", f"{own}/finish", 400, token=token, body={"status": "done"})
    await error_of(cairn, "POST", f"{own}/logs", 400, token=token, body={"lines": "x"})
    await error_of(cairn, "POST", f"{own}/logs", 401, token="pul-wrong", body={"lines": ["x"]})
    unknown = f"/api/agents/{agent_id}/deployments/no-such-deployment"
    await error_of(cairn, "POST", f"{unknown}/logs", 404, token=token, body={"lines": ["x"]})
    await error_of(cairn, "POST", f"{unknown}/finish", 404, token=token, body={"status": "failed"})

    # Nothing of that changed the job: it is still the first agent's, with no log lines.
    held = await deployment(cairn, created["id"])
    assert held["status"] == "accepted"
    page = await cairn.json("GET", f"{DEPLOYMENTS}/{created['id']}/logs")
    assert page["lines"] == []
    await finish(cairn, token, agent_id, created["id"], "failed", "it broke")
    ended = await deployment(cairn, created["id"])
    assert (ended["status"], ended["message"]) == ("failed", "it broke")
    await error_of(cairn, "POST", f"{own}/finish", 409, token=token, body={"status": "succeeded"})
    assert (await deployment(cairn, created["id"]))["status"] == "failed"


async def test_stored_logs_and_messages_never_show_a_secret_whatever_the_agent_sends(
    cairn: Cairn,
) -> None:
    """agent_pools masks again what an agent sends: a modified or old agent leaks nothing."""
    await make_stack(cairn)
    pool_id, token = await create_pool(cairn, "runners")
    agent_id = await register(cairn, token)
    key = "-----BEGIN KEY-----\nMIIEpAIBAAKCAQEAmultiline\n-----END KEY-----"
    settings = {
        "agentPoolID": pool_id,
        "sourceContext": {"git": {"gitAuth": {"accessToken": {"secret": "ghp-git-credential"}}}},
        "operationContext": {
            "environmentVariables": {
                "REGION": "eu-west-1",
                "DB_PASSWORD": {"secret": "s3cr3t-pw"},
                "KEY": {"secret": key},
                "PIN": {"secret": "42"},
            }
        },
    }
    await cairn.json("POST", SETTINGS, body=settings)
    created = await deploy(cairn)
    job = await claim(cairn, token, agent_id)
    assert job is not None
    assert sorted(job["secretValues"]) == sorted(["ghp-git-credential", "s3cr3t-pw", key, "42"])
    job_token = job["environment"]["PULUMI_ACCESS_TOKEN"]
    sent = [
        "secret=s3cr3t-pw region=eu-west-1",
        f"token={job_token} pool={token}",
        "clone with ghp-git-credential",
        *key.splitlines(),
        "wrapped: s3cr",
        "3t-pw done",
        "pin=42",
    ]
    assert await append_logs(cairn, token, agent_id, created["id"], sent) is False
    await finish(cairn, token, agent_id, created["id"], "failed", "exit: s3cr3t-pw")
    logs = await cairn.json("GET", f"{DEPLOYMENTS}/{created['id']}/logs")
    lines = [line["line"] for line in logs["lines"]]
    assert lines == [
        "secret=[secret] region=eu-west-1",
        "token=[secret] pool=[secret]",
        "clone with [secret]",
        "[secret]",
        "[secret]",
        "[secret]",
        "wrapped: [secret]",
        "[secret] done",
        # Values shorter than 4 characters are not masked (see the README).
        "pin=42",
    ]
    done = await deployment(cairn, created["id"])
    assert done["message"] == "exit: [secret]"
    for secret in ("s3cr3t-pw", "ghp-git-credential", "MIIEpAIBAAKCAQEAmultiline", job_token):
        assert secret not in str(logs) and secret not in str(done)

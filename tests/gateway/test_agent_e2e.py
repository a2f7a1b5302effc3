"""A real `cairn agent` process runs queued deployments end to end against the gateway."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.gateway.conftest import Cairn

S = "/api/stacks/admin/web/dev"
POOLS = "/api/orgs/admin/agent-pools"
# A bound on every wait: the agent polls every 0.2 s, so this is generous.
WAIT_SECONDS = 30.0


async def start_agent(cairn: Cairn, token: str, command: str, work_dir: Path) -> Any:
    url = str(cairn.client.make_url("")).rstrip("/")
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "cairn",
        "agent",
        "--url",
        url,
        "--pool-token",
        token,
        "--command",
        command,
        "--work-dir",
        str(work_dir),
        "--poll-seconds",
        "0.2",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "CAIRN_LOG_LEVEL": "warning"},
    )


async def stop_agent(process: Any) -> int:
    """SIGTERM the agent we started (by PID) and wait for it; kill it if it hangs."""
    if process.returncode is None:
        process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), 15)
        except TimeoutError:
            process.kill()
            await process.wait()
    code: int = process.returncode
    return code


async def finished(cairn: Cairn, deployment_id: str) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT_SECONDS
    while loop.time() < deadline:
        deployment: dict[str, Any] = await cairn.json("GET", f"{S}/deployments/{deployment_id}")
        if deployment["status"] in ("succeeded", "failed"):
            return deployment
        await asyncio.sleep(0.1)
    raise AssertionError(f"deployment {deployment_id} did not finish in {WAIT_SECONDS} s")


@pytest.fixture
async def pool_token(cairn: Cairn) -> AsyncIterator[str]:
    created = await cairn.json("POST", POOLS, body={"name": "runners", "description": "ci"})
    await cairn.json("POST", "/api/stacks/admin/web", body={"stackName": "dev"})
    yield created["tokenValue"]


async def test_an_agent_runs_a_queued_deployment_to_success(
    cairn: Cairn, pool_token: str, tmp_path: Path
) -> None:
    source = tmp_path / "project"
    (source / "infra").mkdir(parents=True)
    (source / "infra" / "Pulumi.yaml").write_text("name: web\n")
    await cairn.json(
        "POST",
        f"{S}/deployments/settings",
        body={
            "sourceContext": {"git": {"repoUrl": str(source), "repoDir": "infra"}},
            "operationContext": {
                "environmentVariables": {"REGION": "eu", "TOKEN": {"secret": "s3cret"}}
            },
        },
    )
    queued = await cairn.json(
        "POST", f"{S}/deployments", body={"operation": "update", "inheritSettings": True}
    )
    command = (
        'echo "op=$PULUMI_OPERATION stack=$PULUMI_STACK region=$REGION token=$TOKEN"; '
        "cat Pulumi.yaml"
    )
    agent = await start_agent(cairn, pool_token, command, tmp_path / "work")
    try:
        deployment = await finished(cairn, queued["id"])
        assert deployment["status"] == "succeeded", deployment
        assert deployment["version"] == 1
        logs = await cairn.json("GET", f"{S}/deployments/{queued['id']}/logs")
        lines = [line["line"] for line in logs["lines"]]
        # The secret variable is masked, the plain one is not.
        assert lines == ["op=update stack=admin/web/dev region=eu token=[secret]", "name: web"]
        pool = await cairn.json("GET", POOLS)
        (entry,) = pool["agentPools"]
        assert entry["status"] == "online" and entry["lastDeployment"] > 0
        detail = await cairn.json("GET", f"{POOLS}/{entry['id']}")
        (registered,) = detail["agents"]
        assert registered["status"] == "online"
        assert registered["pid"] == str(agent.pid)
    finally:
        code = await stop_agent(agent)
    assert code == 0, (await agent.stderr.read()).decode()


async def test_a_failing_command_fails_the_deployment(
    cairn: Cairn, pool_token: str, tmp_path: Path
) -> None:
    queued = await cairn.json("POST", f"{S}/deployments", body={"operation": "destroy"})
    agent = await start_agent(cairn, pool_token, "echo broken >&2; exit 3", tmp_path / "work")
    try:
        deployment = await finished(cairn, queued["id"])
    finally:
        await stop_agent(agent)
    assert deployment["status"] == "failed"
    assert deployment["message"] == "exit code 3"
    logs = await cairn.json("GET", f"{S}/deployments/{queued['id']}/logs")
    assert [line["line"] for line in logs["lines"]] == ["broken"]


async def test_the_job_acts_for_its_requester_and_never_logs_its_token(
    cairn: Cairn, pool_token: str, tmp_path: Path
) -> None:
    # The job calls GET /api/user on the backend it was given, with the token it was given,
    # echoes the token, and leaves it in a file for the test to try afterwards.
    script = tmp_path / "whoami.py"
    script.write_text(
        "import json, os, pathlib, sys, urllib.request\n"
        "token = os.environ['PULUMI_ACCESS_TOKEN']\n"
        "request = urllib.request.Request(\n"
        "    os.environ['PULUMI_BACKEND_URL'] + '/api/user',\n"
        "    headers={'Authorization': 'token ' + token,\n"
        "             'Accept': 'application/vnd.pulumi+8'},\n"
        ")\n"
        "with urllib.request.urlopen(request, timeout=10) as response:\n"
        "    print('login=' + json.load(response)['githubLogin'])\n"
        "print('token=' + token)\n"
        "pathlib.Path(sys.argv[1]).write_text(token)\n"
    )
    seen = tmp_path / "seen-token"
    queued = await cairn.json("POST", f"{S}/deployments", body={"operation": "update"})
    command = f"{sys.executable} {script} {seen}"
    agent = await start_agent(cairn, pool_token, command, tmp_path / "work")
    try:
        deployment = await finished(cairn, queued["id"])
    finally:
        await stop_agent(agent)
    assert deployment["status"] == "succeeded", deployment
    logs = await cairn.json("GET", f"{S}/deployments/{queued['id']}/logs")
    assert [line["line"] for line in logs["lines"]] == ["login=admin", "token=[secret]"]
    token = seen.read_text()
    assert token.startswith("pul-")
    assert token not in str(logs) and token not in str(deployment)
    # The deployment ended: the token no longer works.
    response = await cairn.call("GET", "/api/user", token=token)
    assert response.status == 401

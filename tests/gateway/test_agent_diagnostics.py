"""The agent's start-up diagnostics, with a real `cairn agent`: it says in one log line
whether it can run jobs, and a job it cannot start says why in the deployment's logs."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.gateway.conftest import Cairn
from tests.gateway.test_agent_e2e import POOLS, S, finished, stop_agent


@pytest.fixture
async def pool_token(cairn: Cairn) -> AsyncIterator[str]:
    created = await cairn.json("POST", POOLS, body={"name": "runners", "description": "ci"})
    await cairn.json("POST", "/api/stacks/admin/web", body={"stackName": "dev"})
    yield created["tokenValue"]


async def start_bare_agent(cairn: Cairn, token: str, work_dir: Path, *extra: str) -> Any:
    """An agent with a PATH where no pulumi can be found, logging at info level (its output
    read from `stdout`)."""
    url = str(cairn.client.make_url("")).rstrip("/")
    empty = work_dir / "empty-path"
    empty.mkdir(parents=True)
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "cairn",
        "agent",
        "--url",
        url,
        "--pool-token",
        token,
        "--work-dir",
        str(work_dir / "work"),
        "--poll-seconds",
        "0.2",
        *extra,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "PATH": str(empty), "CAIRN_LOG_LEVEL": "info"},
    )


async def test_an_agent_without_pulumi_warns_at_start_and_says_why_in_the_job_logs(
    cairn: Cairn, pool_token: str, tmp_path: Path
) -> None:
    queued = await cairn.json("POST", f"{S}/deployments", body={"operation": "update"})
    agent = await start_bare_agent(cairn, pool_token, tmp_path)
    assert agent.stdout is not None
    reading = asyncio.create_task(agent.stdout.read())
    try:
        deployment = await finished(cairn, queued["id"])
    finally:
        await stop_agent(agent)
    output = (await asyncio.wait_for(reading, 30)).decode()
    found = [text for text in output.splitlines() if "agent_cannot_run_jobs" in text]
    assert len(found) == 1, output
    line = found[0]
    assert "warning" in line and "pulumi CLI is not on this agent's PATH" in line
    assert deployment["status"] == "failed"
    assert "pulumi CLI is not on this agent's PATH" in deployment["message"]
    logs = await cairn.json("GET", f"{S}/deployments/{queued['id']}/logs")
    (reason,) = [entry["line"] for entry in logs["lines"]]
    assert reason.startswith("the agent could not start the deployment: ")
    assert "--command" in reason


async def test_an_agent_with_a_command_says_what_runs_its_jobs(
    cairn: Cairn, pool_token: str, tmp_path: Path
) -> None:
    agent = await start_bare_agent(cairn, pool_token, tmp_path, "--command", "true")
    try:
        assert agent.stdout is not None
        text = ""
        for _ in range(20):  # its first lines: the diagnostic comes before registering
            text = (await asyncio.wait_for(agent.stdout.readline(), 60)).decode()
            if "agent_can_run_jobs" in text or not text:
                break
    finally:
        await stop_agent(agent)
    assert "agent_can_run_jobs" in text and "the configured --command" in text
    assert "warning" not in text

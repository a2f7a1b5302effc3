"""No token and no secret value in any output of a whole `cairn up` run (issue 14).

A real `cairn up` and a real `cairn agent` run as processes logging at debug level into
files; the test drives tokens, secrets, deployment settings, a deployment, an update with its
lease token and malformed credentials through HTTP, stops both processes, then scans every
line they wrote, the deployment's logs and the error bodies for what it created.
"""

from __future__ import annotations

import asyncio
import base64
import os
import re
import secrets
import signal
import sys
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.gateway.cli import deployment, stack_resource

pytestmark = pytest.mark.timeout(240)

STACK = "/api/stacks/admin/web/dev"
ACCEPT = "application/vnd.pulumi+8"
START_SECONDS = 90.0
STOP_SECONDS = 30.0
DEPLOYMENT_SECONDS = 60.0
REQUEST_SECONDS = 30.0
# An error answer with Pulumi's error body (aiohttp answers what it cannot parse as HTTP/1.0).
ERROR_ANSWER = re.compile(
    rb"HTTP/1\.[01] ([45]\d\d) .*\r\n\r\n\{\"code\":([45]\d\d),\"message\":", re.DOTALL
)
URL_LINE = re.compile(r"Cairn is running at (http://127\.0\.0\.1:\d+)")
# Any whole Cairn token (user, organization, team, job or pool token) in any output is a leak,
# whoever made it: the job's token is known only to the agent.
WHOLE_TOKEN = re.compile(r"pul-[0-9a-f]{40}")
# An operator picks the admin token: it need not look like a Cairn token.
ADMIN_TOKEN = f"operator-chosen-{secrets.token_hex(12)}"
DB_PASSWORD = f"s3cr3t-pw-{secrets.token_hex(6)}"
GIT_TOKEN = f"ghp_{secrets.token_hex(10)}"
ENCRYPTED = f"config-secret-{secrets.token_hex(6)}"
STATE_SECRET = f"state-secret-{secrets.token_hex(6)}"
JOB_COMMAND = (
    'echo "secret=$DB_PASSWORD"; echo "token=$PULUMI_ACCESS_TOKEN"; '
    'echo "region=$REGION"; echo "job-marker-done"'
)


def clean_environment(**extra: str) -> dict[str, str]:
    """This process's environment without Cairn settings a developer may have set."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("CAIRN_")}
    environment.update(extra)
    return environment


async def stop(process: asyncio.subprocess.Process) -> None:
    """SIGTERM a process this test started (by its PID), then kill it if it hangs."""
    if process.returncode is None:
        process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), STOP_SECONDS)
        except TimeoutError:
            process.kill()
            await asyncio.wait_for(process.wait(), STOP_SECONDS)


def read(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else ""


async def started_url(process: asyncio.subprocess.Process, log: Path) -> str:
    """The gateway URL `cairn up` prints once it listens (bounded wait)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + START_SECONDS
    while loop.time() < deadline:
        found = URL_LINE.search(await asyncio.to_thread(read, log))
        if found:
            return found.group(1)
        if process.returncode is not None:
            break
        await asyncio.sleep(0.1)
    tail = (await asyncio.to_thread(read, log))[-3000:]
    raise AssertionError(f"cairn up did not start:\n{tail}")


@dataclass
class Cairn:
    url: str
    session: aiohttp.ClientSession
    # Every error body the gateway answered: scanned like the logs.
    bodies: list[str] = field(default_factory=list)

    async def call(
        self,
        method: str,
        path: str,
        *,
        token: str = ADMIN_TOKEN,
        scheme: str = "token",
        body: Any = None,
    ) -> tuple[int, Any]:
        headers = {"Accept": ACCEPT, "Authorization": f"{scheme} {token}"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        async with self.session.request(
            method,
            self.url + path,
            json=body,
            headers=headers,
            timeout=aiohttp.ClientTimeout(total=REQUEST_SECONDS),
        ) as response:
            text = await response.text()
            if response.status >= 400:
                self.bodies.append(text)
            payload = await response.json(content_type=None) if text else None
            return response.status, payload

    async def ok(self, method: str, path: str, **kwargs: Any) -> Any:
        status, payload = await self.call(method, path, **kwargs)
        assert status in (200, 201, 204), f"{method} {path}: {status} {payload}"
        return payload

    async def raw(self, request: bytes) -> bytes:
        """One request written byte for byte (aiohttp's client refuses control characters)."""
        host, port = self.url.removeprefix("http://").split(":")
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(host, int(port)), REQUEST_SECONDS
        )
        try:
            writer.write(request)
            await writer.drain()
            answer = await asyncio.wait_for(reader.read(), REQUEST_SECONDS)
        finally:
            writer.close()
        self.bodies.append(answer.decode(errors="replace"))
        return answer


@dataclass
class Run:
    cairn: Cairn
    cairn_log: Path
    agent_log: Path
    data_dir: Path
    processes: list[asyncio.subprocess.Process] = field(default_factory=list)

    async def start_agent(self, pool_token: str) -> None:
        with self.agent_log.open("ab") as output:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "cairn",
                "agent",
                "--url",
                self.cairn.url,
                "--pool-token",
                pool_token,
                "--command",
                JOB_COMMAND,
                "--work-dir",
                str(self.data_dir / "agent-work"),
                "--poll-seconds",
                "0.2",
                stdin=asyncio.subprocess.DEVNULL,
                stdout=output,
                stderr=output,
                env=clean_environment(CAIRN_LOG_LEVEL="debug"),
            )
        self.processes.append(process)

    async def stop_all(self) -> None:
        # The agent first (it finishes its job), then Cairn.
        for process in reversed(self.processes):
            await stop(process)


@pytest.fixture
async def run(tmp_path: Path) -> AsyncIterator[Run]:
    cairn_log, agent_log = tmp_path / "cairn.log", tmp_path / "agent.log"
    data_dir = tmp_path / "data"
    with cairn_log.open("ab") as output:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "cairn",
            "up",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--data-dir",
            str(data_dir),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=output,
            stderr=output,
            env=clean_environment(
                CAIRN_ADMIN_TOKEN=ADMIN_TOKEN,
                CAIRN_LOG_LEVEL="debug",
                # The sweep runs often so its lines are in the log too.
                CAIRN_DEPLOYMENT_TOKEN_SWEEP_SECONDS="0.5",
            ),
        )
    try:
        url = await started_url(process, cairn_log)
        async with aiohttp.ClientSession() as session:
            the_run = Run(Cairn(url, session), cairn_log, agent_log, data_dir, [process])
            try:
                yield the_run
            finally:
                await the_run.stop_all()
    finally:
        await stop(process)


async def finished_deployment(cairn: Cairn, deployment_id: str) -> Mapping[str, Any]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + DEPLOYMENT_SECONDS
    while loop.time() < deadline:
        found = await cairn.ok("GET", f"{STACK}/deployments/{deployment_id}")
        if found["status"] in ("succeeded", "failed"):
            result: Mapping[str, Any] = found
            return result
        await asyncio.sleep(0.2)
    raise AssertionError(f"deployment {deployment_id} did not finish in {DEPLOYMENT_SECONDS} s")


async def update_with_lease(cairn: Cairn) -> str:
    """One update as the CLI drives it; its lease token is used for every write."""
    created = await cairn.ok(
        "POST",
        f"{STACK}/update",
        body={
            "name": "web",
            "runtime": "nodejs",
            "main": "",
            "description": "",
            "options": {"dryRun": False},
            "config": {"web:password": {"secure": "v1:AAAA", "string": ""}},
            "metadata": {"message": "security scan update", "environment": {}},
        },
    )
    update = f"{STACK}/update/{created['updateID']}"
    started = await cairn.ok("POST", update, body={"tags": {}})
    lease: str = started["token"]
    assert lease
    state = deployment(
        [stack_resource("web", "dev", {"password": STATE_SECRET})],
        {"type": "service", "state": {"url": cairn.url}},
    )
    await cairn.ok(
        "PATCH",
        f"{update}/checkpoint",
        scheme="update-token",
        token=lease,
        body={"isInvalid": False, "version": 3, "deployment": state},
    )
    # A refused write made with the lease token is logged and answered, never with it.
    status, _ = await cairn.call(
        "POST",
        f"{STACK}/update/no-such-update/complete",
        scheme="update-token",
        token=lease,
        body={"status": "succeeded"},
    )
    assert 400 <= status < 500
    await cairn.ok(
        "POST",
        f"{update}/complete",
        scheme="update-token",
        token=lease,
        body={"status": "succeeded"},
    )
    return lease


async def test_no_token_or_secret_value_in_any_log_line(run: Run) -> None:
    cairn = run.cairn
    user = await cairn.ok("GET", "/api/user")
    assert user["githubLogin"] == "admin"

    created: dict[str, str] = {"admin": ADMIN_TOKEN}
    personal = await cairn.ok("POST", "/api/user/tokens", body={"description": "laptop"})
    created["personal"] = personal["tokenValue"]
    rotated = await cairn.ok("POST", f"/api/user/tokens/{personal['id']}/rotate")
    created["rotated"] = rotated["tokenValue"]
    org = await cairn.ok("POST", "/api/orgs/admin/tokens", body={"name": "deploy-bot"})
    created["organization"] = org["tokenValue"]
    await cairn.ok("POST", "/api/orgs/admin/teams/pulumi", body={"name": "ops"})
    team = await cairn.ok("POST", "/api/orgs/admin/teams/ops/tokens", body={"name": "ops-bot"})
    created["team"] = team["tokenValue"]
    for name in ("rotated", "organization", "team"):
        status, _ = await cairn.call("GET", "/api/user/stacks", token=created[name])
        assert status < 500, name
    # A token of the right shape that Cairn never made is refused, and not logged either.
    created["unknown"] = "pul-" + secrets.token_hex(20)
    assert (await cairn.call("GET", "/api/user", token=created["unknown"]))[0] == 401

    await cairn.ok(
        "POST", "/api/stacks/admin/web", body={"stackName": "dev"}, token=created["rotated"]
    )
    encrypted = await cairn.ok(
        "POST",
        f"{STACK}/encrypt",
        body={"plaintext": base64.b64encode(ENCRYPTED.encode()).decode()},
    )
    decrypted = await cairn.ok(
        "POST", f"{STACK}/decrypt", body={"ciphertext": encrypted["ciphertext"]}
    )
    assert base64.b64decode(decrypted["plaintext"]).decode() == ENCRYPTED

    pool = await cairn.ok("POST", "/api/orgs/admin/agent-pools", body={"name": "runners"})
    created["pool"] = pool["tokenValue"]
    await cairn.ok(
        "POST",
        f"{STACK}/deployments/settings",
        body={
            "agentPoolID": pool["id"],
            "sourceContext": {"git": {"gitAuth": {"accessToken": {"secret": GIT_TOKEN}}}},
            "operationContext": {
                "environmentVariables": {
                    "REGION": "eu-west-1",
                    "DB_PASSWORD": {"secret": DB_PASSWORD},
                }
            },
        },
    )
    queued = await cairn.ok(
        "POST", f"{STACK}/deployments", body={"operation": "update", "inheritSettings": True}
    )
    await run.start_agent(created["pool"])
    finished = await finished_deployment(cairn, queued["id"])
    assert finished["status"] == "succeeded", finished
    logs = await cairn.ok("GET", f"{STACK}/deployments/{queued['id']}/logs")
    lines = [line["line"] for line in logs["lines"]]
    # What the job printed is there, its secrets masked (the scan below means something).
    assert lines == [
        "secret=[secret]",
        "token=[secret]",
        "region=eu-west-1",
        "job-marker-done",
    ], lines

    lease = await update_with_lease(cairn)

    # Malformed credentials: a control character after a real token, and bytes that are no
    # text. Each is a 401 JSON error; neither the log nor the answer may show the token.
    for suffix in (b"\x01", b"\x7f", b"\xff\xfe"):
        answer = await cairn.raw(
            b"GET /api/user HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: " + ACCEPT.encode() + b"\r\n"
            b"Authorization: token " + created["personal"].encode() + suffix + b"\r\n"
            b"Connection: close\r\n\r\n"
        )
        answered = ERROR_ANSWER.match(answer)
        assert answered, answer[:300]
        assert answered.group(1) == b"401", answer[:300]
    answer = await cairn.raw(
        b"GET /api/user HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: " + ACCEPT.encode() + b"\r\n"
        b"Authorization: update-token " + lease.encode() + b"\x01\r\nConnection: close\r\n\r\n"
    )
    assert ERROR_ANSWER.match(answer), answer[:300]

    await run.stop_all()
    output = await asyncio.to_thread(read, run.cairn_log)
    agent_output = await asyncio.to_thread(read, run.agent_log)

    # The scan means something: both processes logged, at debug level, what was done.
    for marker in (
        "Cairn is running at",
        "access_token_created",
        "deployment_token_revoked",
        "Stopping Cairn",
    ):
        assert marker in output, marker
    assert "job_started" in agent_output and "job_finished" in agent_output
    assert len(output.splitlines()) > 20
    assert "[debug    ]" in output and "[debug    ]" in agent_output

    secrets_made = {
        **{f"{name} token": value for name, value in created.items()},
        "lease token": lease,
        "secret environment variable": DB_PASSWORD,
        "git credential": GIT_TOKEN,
        "encrypted value": ENCRYPTED,
        "encrypted value in base64": base64.b64encode(ENCRYPTED.encode()).decode(),
        "secret in the state": STATE_SECRET,
    }
    places = {
        "cairn up's output": output,
        "the agent's output": agent_output,
        "the deployment's logs": str(logs) + str(finished),
        "the error bodies": "\n".join(cairn.bodies),
    }
    for place, text in places.items():
        for what, value in secrets_made.items():
            assert value not in text, f"{what} in {place}"
        assert WHOLE_TOKEN.search(text) is None, f"a token in {place}"

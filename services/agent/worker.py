"""The deployment agent: registers with its pool, heartbeats, claims work and runs it.

It talks to the gateway's agent protocol (`/api/agents/...`) with the pool's token. A job
runs the `pulumi` CLI for the operation, or the configured command when one is given, in the
job's source directory with the settings' environment variables; its output is streamed to
Cairn as log lines and its exit code decides the result.

Cairn may hand a job more environment variables than its settings name: a short-lived
PULUMI_ACCESS_TOKEN of the user who queued the deployment and the PULUMI_BACKEND_URL it works
against. Every secret value of the job's settings (the claim names them in
`secretValues`), the token's value and anything shaped like a Cairn token are replaced by
`[secret]` in every log line and message sent back (`services.common.masking`); Cairn masks
them again when it stores the lines.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import platform
import shutil
import socket
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from importlib import metadata
from pathlib import Path
from typing import Any

import aiohttp

from services.common.logging import get_logger
from services.common.masking import SecretMask

log = get_logger("cairn.agent")

# Log lines are sent in batches of at most this many lines, at least this often.
LOG_BATCH_LINES = 100
LOG_FLUSH_SECONDS = 1.0
REQUEST_TIMEOUT_SECONDS = 30.0
PULUMI_ARGUMENTS: dict[str, list[str]] = {
    "update": ["up", "--yes", "--skip-preview"],
    "preview": ["preview"],
    "refresh": ["refresh", "--yes", "--skip-preview"],
    "destroy": ["destroy", "--yes", "--skip-preview"],
    # Drift detection: a refresh preview that fails when the cloud differs from the state.
    "detect-drift": ["refresh", "--preview-only", "--expect-no-changes"],
    # Remediation: refresh, then bring the resources back to what the program declares.
    "remediate-drift": ["up", "--yes", "--skip-preview", "--refresh"],
}
# Values of these job variables never reach the deployment's logs.
MASKED_VARIABLES = ("PULUMI_ACCESS_TOKEN",)
NO_RUNNER = (
    "the pulumi CLI is not on this agent's PATH and no --command is configured: install "
    "pulumi or start `cairn agent` with --command"
)


@dataclass(frozen=True)
class AgentOptions:
    url: str
    pool_token: str
    command: str = ""
    work_dir: Path = field(default_factory=lambda: Path(tempfile.gettempdir()) / "cairn-agent")
    poll_seconds: float = 2.0


@dataclass(frozen=True)
class Job:
    deployment_id: str
    operation: str
    stack: str
    version: int
    # In the clear (secret values decrypted): never in a repr.
    settings: Mapping[str, Any] = field(repr=False)
    # Variables Cairn sets for this job; they win over the settings' own.
    environment: Mapping[str, str] = field(default_factory=dict, repr=False)
    # The settings' secret values in the clear: never sent back.
    secrets: tuple[str, ...] = field(default=(), repr=False)

    @cached_property
    def masker(self) -> SecretMask:
        """Masks the settings' secret values and the job's masked variables."""
        masked = [self.environment.get(name, "") for name in MASKED_VARIABLES]
        return SecretMask([*self.secrets, *masked])

    def mask(self, text: str) -> str:
        """The text with every secret value of the job replaced."""
        return self.masker.text(text)


class ProtocolError(Exception):
    """Cairn refused a call of the agent protocol."""


@dataclass(frozen=True)
class Runner:
    """What runs the agent's jobs: the configured command, or the pulumi CLI found on PATH."""

    command: str = ""
    pulumi: str = ""

    @property
    def can_run(self) -> bool:
        return bool(self.command or self.pulumi)

    @property
    def description(self) -> str:
        if self.command:
            return "the configured --command"
        if self.pulumi:
            return f"the pulumi CLI at {self.pulumi}"
        return NO_RUNNER


def find_runner(command: str) -> Runner:
    """The runner of the agent's jobs: `--command` when given, else `pulumi` on PATH."""
    if command:
        return Runner(command=command)
    return Runner(pulumi=shutil.which("pulumi") or "")


def report_runner(runner: Runner) -> None:
    """One log line at start: what will run jobs, or a warning that nothing can."""
    if runner.can_run:
        log.info("agent_can_run_jobs", runner=runner.description)
    else:
        log.warning("agent_cannot_run_jobs", reason=runner.description)


def agent_version() -> str:
    try:
        return metadata.version("cairn")
    except metadata.PackageNotFoundError:
        return "0"


class Agent:
    """One agent process: `run()` until `stop()` is called (SIGTERM in `cairn agent`)."""

    def __init__(self, options: AgentOptions, session: aiohttp.ClientSession) -> None:
        self._options = options
        self._session = session
        self._stopping = asyncio.Event()
        self._agent_id = ""
        self._heartbeat_seconds = 10.0
        self._current: asyncio.subprocess.Process | None = None
        self._current_id = ""
        self._cancelled: set[str] = set()

    def stop(self) -> None:
        """Claim nothing more and let the running job finish; asked twice, stop the job too."""
        if self._stopping.is_set() and self._current is not None:
            with contextlib.suppress(ProcessLookupError):
                self._current.terminate()
        self._stopping.set()

    async def run(self) -> None:
        report_runner(find_runner(self._options.command))
        await self._register()
        heartbeat = asyncio.create_task(self._heartbeat_loop())
        try:
            while not self._stopping.is_set():
                job = await self._claim()
                if job is None:
                    await self._wait(self._options.poll_seconds)
                    continue
                await self._run_job(job)
        finally:
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeat

    async def _wait(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), timeout=seconds)

    # -- protocol calls ----------------------------------------------------------------------

    async def _call(self, path: str, body: Mapping[str, Any] | None = None) -> Any:
        url = self._options.url.rstrip("/") + path
        headers = {
            "Authorization": f"token {self._options.pool_token}",
            "Accept": "application/json",
        }
        timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_SECONDS)
        async with self._session.post(
            url, json=dict(body or {}), headers=headers, timeout=timeout
        ) as response:
            if response.status == 204:
                return None
            payload = await response.json(content_type=None)
            if response.status >= 400:
                message = payload.get("message") if isinstance(payload, dict) else payload
                raise ProtocolError(f"{response.status}: {message}")
            return payload

    async def _register(self) -> None:
        reply = await self._call(
            "/api/agents/register",
            {
                "version": agent_version(),
                "platform": f"{platform.system().lower()}-{platform.machine()}",
                "hostname": socket.gethostname(),
                "pid": str(os.getpid()),
            },
        )
        self._agent_id = str(reply["agentID"])
        self._heartbeat_seconds = float(reply.get("heartbeatIntervalSeconds") or 10)
        log.info("agent_registered", agent_id=self._agent_id, pool_id=reply.get("poolID"))

    async def _heartbeat_loop(self) -> None:
        while True:
            await asyncio.sleep(self._heartbeat_seconds)
            try:
                reply = await self._call(f"/api/agents/{self._agent_id}/heartbeat")
            except (aiohttp.ClientError, TimeoutError, ProtocolError) as error:
                log.warning("heartbeat_failed", error=str(error))
                continue
            for deployment_id in (reply or {}).get("cancelledDeployments") or []:
                self._cancel(str(deployment_id))

    async def _claim(self) -> Job | None:
        try:
            reply = await self._call(f"/api/agents/{self._agent_id}/claim")
        except (aiohttp.ClientError, TimeoutError, ProtocolError) as error:
            log.warning("claim_failed", error=str(error))
            return None
        if reply is None:
            return None
        environment = reply.get("environment")
        secrets = reply.get("secretValues")
        return Job(
            deployment_id=str(reply["deploymentID"]),
            operation=str(reply["operation"]),
            stack=f"{reply['orgName']}/{reply['projectName']}/{reply['stackName']}",
            version=int(reply.get("version") or 0),
            settings=reply.get("settings") or {},
            environment={
                str(name): value
                for name, value in (environment if isinstance(environment, dict) else {}).items()
                if isinstance(value, str)
            },
            secrets=tuple(
                value
                for value in (secrets if isinstance(secrets, list) else [])
                if isinstance(value, str)
            ),
        )

    def _cancel(self, deployment_id: str) -> None:
        self._cancelled.add(deployment_id)
        if self._current is not None and self._current_id == deployment_id:
            log.info("job_cancelled", deployment_id=deployment_id)
            with contextlib.suppress(ProcessLookupError):
                self._current.terminate()

    # -- running a job -------------------------------------------------------------------------

    async def _run_job(self, job: Job) -> None:
        log.info("job_started", deployment_id=job.deployment_id, operation=job.operation)
        logs = f"/api/agents/{self._agent_id}/deployments/{job.deployment_id}"
        try:
            status, message = await self._execute(job, logs)
        except Exception as error:
            status = "failed"
            message = job.mask(f"the agent could not run the deployment: {error}")
            with contextlib.suppress(Exception):
                await self._call(f"{logs}/logs", {"lines": [message]})
        if job.deployment_id in self._cancelled:
            status, message = "failed", "cancelled"
        try:
            await self._call(f"{logs}/finish", {"status": status, "message": job.mask(message)})
        except (aiohttp.ClientError, TimeoutError, ProtocolError) as error:
            log.warning("finish_failed", deployment_id=job.deployment_id, error=str(error))
        log.info("job_finished", deployment_id=job.deployment_id, status=status)

    async def _execute(self, job: Job, logs: str) -> tuple[str, str]:
        arguments = self._arguments(job)
        if arguments is None:
            # The deployment's logs say why it never started, not only its message.
            reason = f"the agent could not start the deployment: {NO_RUNNER}"
            await self._send_logs(f"{logs}/logs", [reason], job.deployment_id)
            return "failed", reason
        with tempfile.TemporaryDirectory(prefix="job-", dir=self._work_dir()) as scratch:
            cwd = await self._source(job, Path(scratch), logs)
            process = await asyncio.create_subprocess_exec(
                *arguments,
                cwd=str(cwd),
                env=self._environment(job),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,
            )
            self._current, self._current_id = process, job.deployment_id
            try:
                await self._stream(process, f"{logs}/logs", job)
                code = await process.wait()
            finally:
                self._current, self._current_id = None, ""
        if code == 0:
            return "succeeded", ""
        return "failed", f"exit code {code}"

    def _work_dir(self) -> str:
        self._options.work_dir.mkdir(parents=True, exist_ok=True)
        return str(self._options.work_dir)

    def _arguments(self, job: Job) -> list[str] | None:
        runner = find_runner(self._options.command)
        if runner.command:
            return ["/bin/sh", "-c", runner.command]
        if not runner.pulumi:
            return None
        operation = PULUMI_ARGUMENTS.get(job.operation, PULUMI_ARGUMENTS["update"])
        return [runner.pulumi, *operation, "--non-interactive", "--stack", job.stack]

    def _environment(self, job: Job) -> dict[str, str]:
        """The agent's environment, then the backend it talks to, the settings' variables
        (an explicit PULUMI_BACKEND_URL with its own token wins), Cairn's job variables."""
        environment = dict(os.environ)
        environment["PULUMI_BACKEND_URL"] = self._options.url
        context = job.settings.get("operationContext")
        variables = context.get("environmentVariables") if isinstance(context, dict) else None
        for name, value in (variables or {}).items():
            if isinstance(value, str):
                environment[str(name)] = value
        environment.update(job.environment)
        environment.update(
            {
                "PULUMI_OPERATION": job.operation,
                "PULUMI_STACK": job.stack,
                "CAIRN_DEPLOYMENT_ID": job.deployment_id,
                "CAIRN_DEPLOYMENT_VERSION": str(job.version),
            }
        )
        return environment

    async def _source(self, job: Job, scratch: Path, logs: str) -> Path:
        """Where the job runs: a local directory, a fresh clone, or an empty scratch dir."""
        context = job.settings.get("sourceContext")
        git = context.get("git") if isinstance(context, dict) else None
        if not isinstance(git, dict) or not git.get("repoUrl"):
            return scratch
        url = str(git["repoUrl"])
        subdirectory = str(git.get("repoDir") or "")
        local = Path(url.removeprefix("file://"))
        if await asyncio.to_thread(local.is_dir):
            return local / subdirectory
        branch = str(git.get("branch") or "").removeprefix("refs/heads/")
        command = ["git", "clone", "--depth", "1"]
        if branch:
            command += ["--branch", branch]
        clone = await asyncio.create_subprocess_exec(
            *command,
            url,
            str(scratch / "source"),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        await self._stream(clone, f"{logs}/logs", job)
        if await clone.wait() != 0:
            raise RuntimeError(f"git clone of {url} failed")
        return scratch / "source" / subdirectory

    async def _stream(self, process: asyncio.subprocess.Process, path: str, job: Job) -> None:
        """Send the process's output as log lines, in batches; stop it when cancelled."""
        assert process.stdout is not None
        # Raw lines: masked together when sent, so a value printed across two lines is found.
        batch: list[str] = []
        previous = ""
        loop = asyncio.get_running_loop()
        flushed = loop.time()
        while True:
            try:
                raw = await asyncio.wait_for(process.stdout.readline(), LOG_FLUSH_SECONDS)
            except TimeoutError:
                raw = None
            if raw == b"":
                break
            if raw is not None:
                batch.append(raw.decode(errors="replace").rstrip("\n"))
            due = loop.time() - flushed >= LOG_FLUSH_SECONDS
            if batch and (len(batch) >= LOG_BATCH_LINES or due):
                lines = job.masker.lines(batch, previous)
                await self._send_logs(path, lines, job.deployment_id)
                batch, previous, flushed = [], batch[-1], loop.time()
        if batch:
            await self._send_logs(path, job.masker.lines(batch, previous), job.deployment_id)

    async def _send_logs(self, path: str, lines: list[str], deployment_id: str) -> None:
        try:
            reply = await self._call(path, {"lines": lines})
        except (aiohttp.ClientError, TimeoutError, ProtocolError) as error:
            log.warning("logs_failed", deployment_id=deployment_id, error=str(error))
            return
        if isinstance(reply, dict) and reply.get("cancelled"):
            self._cancel(deployment_id)


async def run_agent(options: AgentOptions) -> None:
    """Run an agent until SIGINT/SIGTERM, then let the running job finish and exit."""
    import signal

    async with aiohttp.ClientSession() as session:
        agent = Agent(options, session)
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, agent.stop)
        await agent.run()

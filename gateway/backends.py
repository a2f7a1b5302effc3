"""Channels and stubs for the services behind the gateway, and per-call options."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import grpc

from protos.cairn.v1 import (
    agent_pools_pb2_grpc,
    audit_pb2_grpc,
    console_pb2_grpc,
    copilot_pb2_grpc,
    hooks_pb2_grpc,
    identity_pb2_grpc,
    oidc_pb2_grpc,
    schedules_pb2_grpc,
    secrets_pb2_grpc,
    stacks_pb2_grpc,
    updates_pb2_grpc,
)
from services.common.config import SERVICE_NAMES, Settings
from services.common.grpc_server import open_channel
from services.common.signing import CallSigner, load_internal_key
from services.common.tls import load_tls

if TYPE_CHECKING:
    from protos.cairn.v1.agent_pools_pb2_grpc import AgentPoolsServiceAsyncStub
    from protos.cairn.v1.audit_pb2_grpc import AuditServiceAsyncStub
    from protos.cairn.v1.console_pb2_grpc import ConsoleSessionServiceAsyncStub
    from protos.cairn.v1.copilot_pb2_grpc import CopilotServiceAsyncStub
    from protos.cairn.v1.hooks_pb2_grpc import HookServiceAsyncStub
    from protos.cairn.v1.identity_pb2_grpc import IdentityServiceAsyncStub
    from protos.cairn.v1.oidc_pb2_grpc import OidcServiceAsyncStub
    from protos.cairn.v1.schedules_pb2_grpc import DeploymentSchedulesServiceAsyncStub
    from protos.cairn.v1.secrets_pb2_grpc import SecretsServiceAsyncStub
    from protos.cairn.v1.stacks_pb2_grpc import StacksServiceAsyncStub
    from protos.cairn.v1.updates_pb2_grpc import UpdatesServiceAsyncStub


@dataclass
class Backends:
    """One channel per service (balancing across its replicas) and the stubs on top."""

    channels: dict[str, grpc.aio.Channel]
    timeout: float
    identity: IdentityServiceAsyncStub = field(init=False)
    stacks: StacksServiceAsyncStub = field(init=False)
    secrets: SecretsServiceAsyncStub = field(init=False)
    updates: UpdatesServiceAsyncStub = field(init=False)
    agent_pools: AgentPoolsServiceAsyncStub = field(init=False)
    copilot: CopilotServiceAsyncStub = field(init=False)
    # The audit log, console sessions and OIDC issuers are served by the identity process,
    # on its channel.
    audit: AuditServiceAsyncStub = field(init=False)
    console_sessions: ConsoleSessionServiceAsyncStub = field(init=False)
    oidc: OidcServiceAsyncStub = field(init=False)
    # Webhooks are served by the stacks process, on its channel.
    hooks: HookServiceAsyncStub = field(init=False)
    # Schedules, drift runs and pauses are served by the agent_pools process.
    schedules: DeploymentSchedulesServiceAsyncStub = field(init=False)

    def __post_init__(self) -> None:
        self.identity = identity_pb2_grpc.IdentityServiceStub(self.channels["identity"])
        self.stacks = stacks_pb2_grpc.StacksServiceStub(self.channels["stacks"])
        self.secrets = secrets_pb2_grpc.SecretsServiceStub(self.channels["secrets"])
        self.updates = updates_pb2_grpc.UpdatesServiceStub(self.channels["updates"])
        self.agent_pools = agent_pools_pb2_grpc.AgentPoolsServiceStub(self.channels["agent_pools"])
        self.copilot = copilot_pb2_grpc.CopilotServiceStub(self.channels["copilot"])
        self.audit = audit_pb2_grpc.AuditServiceStub(self.channels["identity"])
        self.console_sessions = console_pb2_grpc.ConsoleSessionServiceStub(
            self.channels["identity"]
        )
        self.oidc = oidc_pb2_grpc.OidcServiceStub(self.channels["identity"])
        self.hooks = hooks_pb2_grpc.HookServiceStub(self.channels["stacks"])
        self.schedules = schedules_pb2_grpc.DeploymentSchedulesServiceStub(
            self.channels["agent_pools"]
        )

    @classmethod
    def connect(cls, settings: Settings) -> Backends:
        # The channel's deadline backstop equals the per-call one the handlers pass. Every
        # call is signed: services believe the caller the gateway names only then.
        signer = CallSigner(load_internal_key(settings))
        tls = load_tls(settings)
        channels = {
            name: open_channel(
                settings.service_address(name),
                settings.max_message_bytes,
                signer=signer,
                timeout_seconds=settings.grpc_timeout_seconds,
                tls=tls,
                local_calls=settings.local_calls,
            )
            for name in SERVICE_NAMES
        }
        return cls(channels=channels, timeout=settings.grpc_timeout_seconds)

    async def close(self) -> None:
        for channel in self.channels.values():
            await channel.close(None)

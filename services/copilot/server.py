"""gRPC edge of the copilot service: translates `Chat` and wires the service."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import grpc
import orjson

from protos.cairn.v1 import (
    agent_pools_pb2_grpc,
    audit_pb2_grpc,
    copilot_pb2,
    copilot_pb2_grpc,
    identity_pb2_grpc,
    stacks_pb2_grpc,
    updates_pb2_grpc,
)
from services.common.auth import caller_from_context
from services.common.clock import Clock, SystemClock
from services.common.config import Settings
from services.common.errors import InvalidArgument
from services.common.readiness import database_dependency
from services.common.service import RunningService, open_database, peer_channel, serve_service
from services.copilot.chat_model import ChatModel, NoModel, OpenAICompatibleModel
from services.copilot.domain import HOSTED_CONSOLE_URL, Asker, DirectSkill, Message
from services.copilot.models import Base
from services.copilot.peers import Peers
from services.copilot.service import Copilot, Skills
from services.copilot.store import ConversationStore

SERVICE_NAME = copilot_pb2.DESCRIPTOR.services_by_name["CopilotService"].full_name
MIGRATIONS = Path(__file__).parent / "migrations"
PEERS = ("identity", "stacks", "updates", "agent_pools")
DIRECT_SKILLS = ("summarizeUpdate", "explainPreview")

Context = grpc.aio.ServicerContext[Any, Any]


class CopilotServicer(copilot_pb2_grpc.CopilotServiceServicer):
    """Seed 004: `POST /api/ai/chat/preview`, new and continued conversations."""

    def __init__(self, copilot: Copilot) -> None:
        self._copilot = copilot

    async def Chat(
        self, request: copilot_pb2.ChatRequest, context: Context
    ) -> copilot_pb2.ChatResponse:
        caller = caller_from_context(context)
        asker = Asker(
            user_id=caller.user_id,
            login=caller.login,
            organization=request.organization,
            visible_organizations=frozenset(request.visible_organizations),
            client=request.client or "api",
            token=request.token,
        )
        direct = None
        if request.direct_skill:
            if request.direct_skill not in DIRECT_SKILLS:
                raise InvalidArgument(f"Bad Request: unknown skill '{request.direct_skill}'")
            direct = DirectSkill(request.direct_skill == "explainPreview", request.direct_output)
        conversation_id, messages = await self._copilot.chat(
            asker,
            request.query,
            request.url,
            request.conversation_id,
            request.console_url,
            caller,
            direct,
        )
        return copilot_pb2.ChatResponse(
            conversation_id=conversation_id, messages=[_message(m) for m in messages]
        )


def _message(message: Message) -> copilot_pb2.ChatMessage:
    return copilot_pb2.ChatMessage(
        role=message.role,
        kind=message.kind,
        text=message.text,
        program=orjson.dumps(dict(message.program)) if message.program is not None else b"",
    )


def build_model(settings: Settings) -> ChatModel:
    if not settings.copilot_model_url:
        return NoModel()
    key = settings.copilot_model_api_key
    return OpenAICompatibleModel(
        settings.copilot_model_url,
        settings.copilot_model_name,
        key.get_secret_value() if key is not None else "",
        settings.copilot_model_timeout_seconds,
    )


def url_prefixes(settings: Settings) -> tuple[str, ...]:
    """Accepted `url` prefixes besides the console's own: configured, else the hosted one."""
    configured = [p.strip() for p in settings.copilot_url_prefixes.split(",") if p.strip()]
    extra = [settings.public_url] if settings.public_url else []
    return (*configured, *extra) if configured else (HOSTED_CONSOLE_URL, *extra)


async def start(
    settings: Settings,
    *,
    host: str,
    port: int,
    clock: Clock | None = None,
    model: ChatModel | None = None,
) -> RunningService:
    """Migrate, wire and start the copilot service; port 0 picks a free port."""
    database = await open_database(settings, "copilot", MIGRATIONS, Base.metadata)
    try:
        channels = [peer_channel(settings, name) for name in PEERS]
    except BaseException:
        await database.engine.dispose()
        raise

    async def close_channels() -> None:
        for channel in channels:
            await channel.close(None)

    identity, stacks, updates, agent_pools = channels
    peers = Peers(
        identity_pb2_grpc.IdentityServiceStub(identity),
        stacks_pb2_grpc.StacksServiceStub(stacks),
        updates_pb2_grpc.UpdatesServiceStub(updates),
        settings.grpc_timeout_seconds,
        agent_pools_pb2_grpc.AgentPoolsServiceStub(agent_pools),
        audit_pb2_grpc.AuditServiceStub(identity),
    )
    copilot = Copilot(
        ConversationStore(database.sessions),
        Skills(peers),
        model or build_model(settings),
        clock or SystemClock(),
        url_prefixes(settings),
    )
    servicer = CopilotServicer(copilot)

    def register(server: grpc.aio.Server) -> None:
        copilot_pb2_grpc.add_CopilotServiceServicer_to_server(servicer, server)

    return await serve_service(
        name="copilot",
        settings=settings,
        host=host,
        port=port,
        register=register,
        service_names=[SERVICE_NAME],
        closers=[database.engine.dispose, close_channels],
        dependencies=[database_dependency(database.engine)],
    )

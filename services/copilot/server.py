"""gRPC edge of the copilot service, and the conversation flow behind `Chat`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import orjson

from protos.cairn.v1 import (
    copilot_pb2,
    copilot_pb2_grpc,
    identity_pb2_grpc,
    stacks_pb2_grpc,
    updates_pb2_grpc,
)
from services.common.auth import Caller, caller_from_context
from services.common.clock import Clock, SystemClock
from services.common.config import Settings
from services.common.errors import InvalidArgument, Unauthenticated
from services.common.readiness import database_dependency
from services.common.service import RunningService, open_database, peer_channel, serve_service
from services.copilot.domain import (
    ASSISTANT,
    HOSTED_CONSOLE_URL,
    PROGRAM,
    RESPONSE,
    STATUS,
    TRACE,
    USER,
    Asker,
    Message,
    check_organization,
    parse_context,
    trace_text,
    validate_query,
)
from services.copilot.model import ChatModel, NoModel, OpenAICompatibleModel
from services.copilot.models import Base
from services.copilot.peers import Peers
from services.copilot.skills import Answer, Skills, facts_for_model
from services.copilot.store import ConversationStore

SERVICE_NAME = copilot_pb2.DESCRIPTOR.services_by_name["CopilotService"].full_name
MIGRATIONS = Path(__file__).parent / "migrations"
PEERS = ("identity", "stacks", "updates")
DIRECT_SKILLS = ("summarizeUpdate", "explainPreview")

Context = grpc.aio.ServicerContext[Any, Any]


@dataclass(frozen=True)
class DirectSkill:
    """The SDK's direct skill calls: explain an update's or a preview's text output."""

    is_preview: bool
    output: str

    @property
    def question(self) -> str:
        return "Explain this preview." if self.is_preview else "Summarize this update."


class Copilot:
    """One turn of a conversation: check, route to a skill, phrase, persist."""

    def __init__(
        self,
        store: ConversationStore,
        skills: Skills,
        model: ChatModel,
        clock: Clock,
        url_prefixes: Sequence[str],
    ) -> None:
        self._store = store
        self._skills = skills
        self._model = model
        self._clock = clock
        self._url_prefixes = tuple(url_prefixes)

    async def chat(
        self,
        asker: Asker,
        query: str,
        url: str,
        conversation_id: str,
        console_url: str,
        caller: Caller,
        direct: DirectSkill | None = None,
    ) -> tuple[str, tuple[Message, ...]]:
        """The conversation's id and all of its messages after this turn."""
        if not asker.user_id:
            raise Unauthenticated("Unauthorized: No credentials provided or are invalid.")
        text = validate_query(direct.question if direct is not None and not query else query)
        check_organization(asker.organization, asker.visible_organizations)
        context = parse_context(url, (console_url, *self._url_prefixes))
        now = self._clock.now()
        if conversation_id:
            conversation = await self._store.get(conversation_id, asker.organization, asker.user_id)
        else:
            conversation = await self._store.create(asker.organization, asker.user_id, now)
        if direct is not None:
            answer = await self._skills.summarize_output(
                direct.output, is_preview=direct.is_preview
            )
        else:
            answer = await self._skills.answer(asker, text, context, caller)
        turn = [
            Message(USER, RESPONSE, text),
            Message(ASSISTANT, TRACE, trace_text(asker)),
            *await self._reply(text, answer),
        ]
        await self._store.append(conversation.id, turn, self._clock.now())
        return conversation.id, (*conversation.messages, *turn)

    async def _reply(self, question: str, answer: Answer) -> list[Message]:
        messages = [Message(ASSISTANT, STATUS, f"Executing {answer.skill} skill")]
        text = answer.text
        if answer.is_rephrasable:
            text = await self._model.phrase(question, facts_for_model(answer)) or answer.text
        messages.append(Message(ASSISTANT, RESPONSE, text))
        if answer.program is not None:
            messages.append(Message(ASSISTANT, PROGRAM, program=answer.program))
        return messages


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

    identity, stacks, updates = channels
    peers = Peers(
        identity_pb2_grpc.IdentityServiceStub(identity),
        stacks_pb2_grpc.StacksServiceStub(stacks),
        updates_pb2_grpc.UpdatesServiceStub(updates),
        settings.grpc_timeout_seconds,
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

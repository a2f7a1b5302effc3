"""gRPC edge of the console's session revocations (hosted by the identity process)."""

from __future__ import annotations

from typing import Any

import grpc

from protos.cairn.v1 import console_pb2, console_pb2_grpc
from services.common.clock import Clock
from services.common.db import Sessions
from services.identity.sessions.service import ConsoleSessions
from services.identity.sessions.store import RevokedSessionStore

SESSION_SERVICE_NAME = console_pb2.DESCRIPTOR.services_by_name["ConsoleSessionService"].full_name

Context = grpc.aio.ServicerContext[Any, Any]


class ConsoleSessionServicer(console_pb2_grpc.ConsoleSessionServiceServicer):
    def __init__(self, sessions: ConsoleSessions) -> None:
        self._sessions = sessions

    async def RevokeSession(
        self, request: console_pb2.RevokeSessionRequest, context: Context
    ) -> console_pb2.RevokeSessionResponse:
        await self._sessions.revoke(request.session_id, request.expires_at)
        return console_pb2.RevokeSessionResponse()

    async def CheckSession(
        self, request: console_pb2.CheckSessionRequest, context: Context
    ) -> console_pb2.CheckSessionResponse:
        is_revoked = await self._sessions.is_revoked(request.session_id)
        return console_pb2.CheckSessionResponse(is_revoked=is_revoked)


def console_session_service(sessions: Sessions, clock: Clock) -> ConsoleSessionServicer:
    return ConsoleSessionServicer(ConsoleSessions(RevokedSessionStore(sessions), clock))

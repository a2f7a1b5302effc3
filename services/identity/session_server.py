"""gRPC edge of the console's session revocations (hosted by the identity process)."""

from __future__ import annotations

import re
from typing import Any

import grpc
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from protos.cairn.v1 import console_pb2, console_pb2_grpc
from services.common.clock import Clock
from services.common.errors import InvalidArgument
from services.identity.session_store import RevokedSessionStore

SESSION_SERVICE_NAME = console_pb2.DESCRIPTOR.services_by_name["ConsoleSessionService"].full_name
# The gateway draws 32 random bytes, base64url without padding.
_SESSION_ID = re.compile(r"^[A-Za-z0-9_-]{22,64}$")
# No console session lasts longer; a later expiry is a caller's mistake, not a session.
MAX_SESSION_SECONDS = 30 * 24 * 60 * 60

Context = grpc.aio.ServicerContext[Any, Any]


def _session_id(value: str) -> str:
    if not _SESSION_ID.match(value):
        raise InvalidArgument("Bad Request: a console session id is 22 to 64 base64url characters")
    return value


class ConsoleSessionServicer(console_pb2_grpc.ConsoleSessionServiceServicer):
    def __init__(self, store: RevokedSessionStore, clock: Clock) -> None:
        self._store = store
        self._clock = clock

    async def RevokeSession(
        self, request: console_pb2.RevokeSessionRequest, context: Context
    ) -> console_pb2.RevokeSessionResponse:
        session_id = _session_id(request.session_id)
        now = int(self._clock.now())
        if request.expires_at > now + MAX_SESSION_SECONDS:
            raise InvalidArgument("Bad Request: a console session expires within 30 days")
        if request.expires_at > now:
            await self._store.revoke(session_id, request.expires_at, now)
        return console_pb2.RevokeSessionResponse()

    async def CheckSession(
        self, request: console_pb2.CheckSessionRequest, context: Context
    ) -> console_pb2.CheckSessionResponse:
        is_revoked = await self._store.is_revoked(_session_id(request.session_id))
        return console_pb2.CheckSessionResponse(is_revoked=is_revoked)


def console_session_service(
    sessions: async_sessionmaker[AsyncSession], clock: Clock
) -> ConsoleSessionServicer:
    return ConsoleSessionServicer(RevokedSessionStore(sessions), clock)

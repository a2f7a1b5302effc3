"""The only code issuing SQL for the copilot tables; returns frozen records, never rows."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import func, select

from services.common.db import Sessions
from services.common.errors import NotFound
from services.copilot.domain import Conversation, Focus, Message
from services.copilot.models import ConversationRow, MessageRow

CONVERSATION_NOT_FOUND = "Not Found: conversation"


class ConversationStore:
    """Conversations per organization and user, and their messages in order."""

    def __init__(self, sessions: Sessions) -> None:
        self._sessions = sessions

    async def create(self, organization: str, user_id: str, now: float) -> Conversation:
        row = ConversationRow(
            id=str(uuid.uuid4()),
            organization=organization,
            user_id=user_id,
            created_at=now,
            updated_at=now,
        )
        async with self._sessions.begin() as session:
            session.add(row)
        return Conversation(row.id, row.organization, row.user_id)

    async def get(self, conversation_id: str, organization: str, user_id: str) -> Conversation:
        """The caller's own conversation in that organization; NotFound for anyone else's."""
        async with self._sessions.begin() as session:
            row = await session.get(ConversationRow, conversation_id)
            if row is None or row.user_id != user_id or row.organization != organization:
                raise NotFound(CONVERSATION_NOT_FOUND)
            messages = await session.scalars(
                select(MessageRow)
                .where(MessageRow.conversation_id == row.id)
                .order_by(MessageRow.index)
            )
            return Conversation(
                row.id,
                row.organization,
                row.user_id,
                tuple(_message(m) for m in messages),
                Focus.from_json(row.focus),
            )

    async def append(
        self,
        conversation_id: str,
        messages: Sequence[Message],
        now: float,
        focus: Focus | None = None,
    ) -> None:
        async with self._sessions.begin() as session:
            row = await session.get(ConversationRow, conversation_id, with_for_update=True)
            if row is None:
                raise NotFound(CONVERSATION_NOT_FOUND)
            last = await session.scalar(
                select(func.max(MessageRow.index)).where(MessageRow.conversation_id == row.id)
            )
            start = 0 if last is None else int(last) + 1
            session.add_all(
                MessageRow(
                    conversation_id=row.id,
                    index=start + offset,
                    role=message.role,
                    kind=message.kind,
                    text=message.text,
                    program=None if message.program is None else dict(message.program),
                    created_at=now,
                )
                for offset, message in enumerate(messages)
            )
            row.updated_at = now
            if focus is not None:
                row.focus = focus.to_json()


def _message(row: MessageRow) -> Message:
    return Message(role=row.role, kind=row.kind, text=row.text, program=row.program)

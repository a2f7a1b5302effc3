"""Tables of the copilot service; only store.py touches them."""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, BigInteger, Float, ForeignKey, Index, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from services.common.db import new_metadata


class Base(DeclarativeBase):
    metadata = new_metadata()


class ConversationRow(Base):
    __tablename__ = "copilot_conversations"
    __table_args__ = (
        Index("ix_copilot_conversations_user_id_organization", "user_id", "organization"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    organization: Mapped[str] = mapped_column(String(100))
    user_id: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[float] = mapped_column(Float)
    updated_at: Mapped[float] = mapped_column(Float)
    # The conversation's focus (domain.Focus as JSON): what a follow-up question refers to.
    focus: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)


class MessageRow(Base):
    __tablename__ = "copilot_messages"

    conversation_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("copilot_conversations.id", ondelete="CASCADE"), primary_key=True
    )
    index: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    role: Mapped[str] = mapped_column(String(16))
    kind: Mapped[str] = mapped_column(String(16))
    text: Mapped[str] = mapped_column(Text)
    program: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    created_at: Mapped[float] = mapped_column(Float)

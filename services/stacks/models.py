"""Tables of the stacks service; only store.py touches them (the hook tables: hooks/store.py)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from services.common.db import new_metadata
from services.common.hook_events import outbox_table


def name_column_type(length: int) -> String:
    """Names sort bytewise on every backend, so listings and keyset tokens agree everywhere."""
    return String(length).with_variant(String(length, collation="C"), "postgresql")


class Base(DeclarativeBase):
    metadata = new_metadata()


class StackRow(Base):
    __tablename__ = "stacks_stacks"
    __table_args__ = (UniqueConstraint("organization", "project", "name"),)

    # Stable across renames; other services key their data on it.
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    organization: Mapped[str] = mapped_column(name_column_type(100))
    project: Mapped[str] = mapped_column(name_column_type(100))
    name: Mapped[str] = mapped_column(name_column_type(100))
    config: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    teams: Mapped[list[str]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # The creator until ownership is reassigned; empty for stacks older than the column.
    owner_login: Mapped[str] = mapped_column(String(100), server_default="")
    notify_update_failure: Mapped[bool] = mapped_column(Boolean, server_default=false())
    notify_update_success: Mapped[bool] = mapped_column(Boolean, server_default=false())
    # Whether the switches were ever set: until then webhooks get every update outcome.
    notifications_set: Mapped[bool] = mapped_column(Boolean, server_default=false())


class StackTagRow(Base):
    __tablename__ = "stacks_stack_tags"
    # Serves the listing's tag filters, which look tags up by name (and value) across stacks.
    __table_args__ = (Index("ix_stacks_stack_tags_name_value", "name", "value"),)

    stack_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("stacks_stacks.id", ondelete="CASCADE"), primary_key=True
    )
    name: Mapped[str] = mapped_column(String(40), primary_key=True)
    value: Mapped[str] = mapped_column(String(256))


class StackAnnotationRow(Base):
    """One version of a stack annotation; versions count up per (stack, kind)."""

    __tablename__ = "stacks_stack_annotations"

    stack_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("stacks_stacks.id", ondelete="CASCADE"), primary_key=True
    )
    kind: Mapped[str] = mapped_column(String(40), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    source: Mapped[str] = mapped_column(String(100))
    # The client's JSON bytes, returned as received.
    content: Mapped[bytes] = mapped_column(LargeBinary)
    modified_by: Mapped[str] = mapped_column(String(100))
    modified_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class HookRow(Base):
    """A webhook of an organization (`stack_id` empty) or of one stack."""

    __tablename__ = "stacks_hooks"
    __table_args__ = (UniqueConstraint("organization", "stack_id", "name"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    organization: Mapped[str] = mapped_column(name_column_type(100))
    stack_id: Mapped[str] = mapped_column(String(32))
    name: Mapped[str] = mapped_column(name_column_type(100))
    display_name: Mapped[str] = mapped_column(String(255))
    payload_url: Mapped[str] = mapped_column(String(2048))
    active: Mapped[bool] = mapped_column(Boolean)
    format: Mapped[str] = mapped_column(String(16))
    filters: Mapped[list[str]] = mapped_column(JSON)
    groups: Mapped[list[str]] = mapped_column(JSON)
    # Encrypted by the secrets service under the hook's own key; never answered.
    secret: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class HookDeliveryRow(Base):
    """One attempt to deliver an event to a hook."""

    __tablename__ = "stacks_hook_deliveries"
    __table_args__ = (Index("ix_stacks_hook_deliveries_hook_id_timestamp", "hook_id", "timestamp"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    hook_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("stacks_hooks.id", ondelete="CASCADE")
    )
    kind: Mapped[str] = mapped_column(String(32))
    event: Mapped[str] = mapped_column(String(40))
    payload: Mapped[str] = mapped_column(Text)
    # Unix milliseconds.
    timestamp: Mapped[int] = mapped_column(BigInteger)
    duration_ms: Mapped[int] = mapped_column(Integer)
    request_url: Mapped[str] = mapped_column(String(2048))
    request_headers: Mapped[str] = mapped_column(Text)
    response_code: Mapped[int] = mapped_column(Integer)
    response_headers: Mapped[str] = mapped_column(Text)
    response_body: Mapped[str] = mapped_column(Text)


class DeletedStackRow(Base):
    """A deleted stack inside its restore window: the stack row, tags and annotations as they
    were. Other services keep their rows under the same stable id until the window ends."""

    __tablename__ = "stacks_deleted_stacks"
    __table_args__ = (Index("ix_stacks_deleted_stacks_organization", "organization"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    organization: Mapped[str] = mapped_column(name_column_type(100))
    project: Mapped[str] = mapped_column(name_column_type(100))
    name: Mapped[str] = mapped_column(name_column_type(100))
    deleted_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    deleted_by: Mapped[str] = mapped_column(String(100))
    # The stack row's other columns, its tags and its annotations (content base64).
    snapshot: Mapped[dict[str, Any]] = mapped_column(JSON)


# Webhook events of stack changes and those other services publish, until delivered.
HOOK_OUTBOX = outbox_table(Base.metadata, "stacks_hook_outbox")

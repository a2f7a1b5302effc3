"""Tables owned by the secrets service."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, DateTime, Index, Integer, LargeBinary, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from services.common.db import new_metadata

# SQLite only auto-increments a column declared exactly INTEGER PRIMARY KEY.
EventId = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    metadata = new_metadata()


class StackKeyRow(Base):
    """One data key per stable stack id, wrapped by the master key named by master_key_id."""

    __tablename__ = "secrets_stack_keys"

    stack_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    wrapped_key: Mapped[bytes] = mapped_column(LargeBinary)
    master_key_id: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class DecryptionEventRow(Base):
    """Audit history; kept when a stack's key is deleted."""

    __tablename__ = "secrets_decryption_events"
    __table_args__ = (Index(None, "stack_id"),)

    id: Mapped[int] = mapped_column(EventId, primary_key=True, autoincrement=True)
    stack_id: Mapped[str] = mapped_column(String(255))
    kind: Mapped[str] = mapped_column(String(32))
    user_login: Mapped[str] = mapped_column(String(255))
    secret_name: Mapped[str] = mapped_column(Text)
    command_name: Mapped[str] = mapped_column(Text)
    value_count: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

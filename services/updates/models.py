"""Tables of the updates service; only store.py touches them.

Times are Unix seconds (floats) so lease arithmetic uses the injected clock directly.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from services.common.db import new_metadata
from services.common.hook_events import outbox_table


def update_fk() -> ForeignKey:
    """Child rows go with their update."""
    return ForeignKey("updates_updates.id", ondelete="CASCADE")


class Base(DeclarativeBase):
    metadata = new_metadata()


class StackStateRow(Base):
    """Per stack: its version and which update holds it (the lock's truth)."""

    __tablename__ = "updates_stacks"

    stack_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    # Highest version handed out (a started non-preview update reserves the next one).
    version: Mapped[int] = mapped_column(BigInteger)
    active_update_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    last_update_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    resource_count: Mapped[int] = mapped_column(Integer)


class UpdateRow(Base):
    __tablename__ = "updates_updates"
    __table_args__ = (Index("ix_updates_updates_stack_id_version", "stack_id", "version"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    stack_id: Mapped[str] = mapped_column(String(255))
    kind: Mapped[str] = mapped_column(String(16))
    is_dry_run: Mapped[bool] = mapped_column(Boolean)
    # not-started | running | succeeded | failed | cancelled
    status: Mapped[str] = mapped_column(String(16))
    # True once an ended update's final state is stored and the stack released.
    is_finalised: Mapped[bool] = mapped_column(Boolean)
    program: Mapped[bytes] = mapped_column(LargeBinary)
    config: Mapped[bytes] = mapped_column(LargeBinary)
    message: Mapped[str] = mapped_column(Text)
    environment: Mapped[dict[str, Any]] = mapped_column(JSON)
    requested_by: Mapped[str] = mapped_column(String(255))
    version: Mapped[int] = mapped_column(BigInteger)
    base_version: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[float] = mapped_column(Float)
    started_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    ended_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    lease_token_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)
    lease_expires_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    journal_version: Mapped[int] = mapped_column(Integer)
    # Last applied checkpoint sequence number (verbatim/delta; a counter for full writes).
    checkpoint_sequence: Mapped[int] = mapped_column(BigInteger)
    checkpoint_hash: Mapped[str] = mapped_column(String(64))
    # Sequence of the stored working text; deltas after it complete the current text.
    materialised_sequence: Mapped[int] = mapped_column(BigInteger)
    pending_delta_bytes: Mapped[int] = mapped_column(BigInteger)
    pending_delta_count: Mapped[int] = mapped_column(Integer)
    journal_entry_count: Mapped[int] = mapped_column(BigInteger)
    resource_changes: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    resource_count: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # The stack path the update was created under (the CLI addresses every update-token call
    # to it); empty for rows made before it was recorded, which no such call then matches.
    stack_organization: Mapped[str] = mapped_column(String(255), server_default="")
    stack_project: Mapped[str] = mapped_column(String(255), server_default="")
    stack_name: Mapped[str] = mapped_column(String(255), server_default="")
    # The id of the access token the update was created with (never its value): a deployment's
    # job creates its updates with a token minted for it, so this links them to the deployment.
    requested_by_token: Mapped[str] = mapped_column(String(64), server_default="")


class WorkingCheckpointRow(Base):
    """The last full checkpoint text of a running update (zstd)."""

    __tablename__ = "updates_working_checkpoints"

    update_id: Mapped[str] = mapped_column(String(32), update_fk(), primary_key=True)
    sequence: Mapped[int] = mapped_column(BigInteger)
    data: Mapped[bytes] = mapped_column(LargeBinary)
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))


class CheckpointDeltaRow(Base):
    """One accepted delta (its edits as received, zstd) after the working text."""

    __tablename__ = "updates_checkpoint_deltas"

    update_id: Mapped[str] = mapped_column(String(32), update_fk(), primary_key=True)
    sequence: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    edits: Mapped[bytes] = mapped_column(LargeBinary)
    sha256: Mapped[str] = mapped_column(String(64))


class JournalEntryRow(Base):
    __tablename__ = "updates_journal_entries"

    update_id: Mapped[str] = mapped_column(String(32), update_fk(), primary_key=True)
    sequence_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    data: Mapped[bytes] = mapped_column(LargeBinary)


class EngineEventRow(Base):
    __tablename__ = "updates_engine_events"

    update_id: Mapped[str] = mapped_column(String(32), update_fk(), primary_key=True)
    sequence: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    timestamp: Mapped[int] = mapped_column(BigInteger)
    kind: Mapped[str] = mapped_column(String(64))
    data: Mapped[bytes] = mapped_column(LargeBinary)


class LogEntryRow(Base):
    """Update-status lines (`GET …/update/{id}` events): legacy log calls."""

    __tablename__ = "updates_log_entries"

    update_id: Mapped[str] = mapped_column(String(32), update_fk(), primary_key=True)
    index: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    fields: Mapped[bytes] = mapped_column(LargeBinary)


class StackVersionRow(Base):
    """The deployment a stack version ended with (zstd), exportable until retention prunes it.

    The compressed text is the blob named `blob_digest` (the SHA-256 of the compressed bytes)
    in the blob store; `data` holds it only for rows written before the blob store, until
    `cairn migrate` moves it. A pruned version keeps this row (size, hash, resource count)
    without any text: `pruned_at` says when its text was let go.
    """

    __tablename__ = "updates_stack_versions"
    __table_args__ = (Index("ix_updates_stack_versions_blob_digest", "blob_digest"),)

    stack_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    version: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    update_id: Mapped[str] = mapped_column(String(32))
    data: Mapped[bytes] = mapped_column(LargeBinary)
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    resource_count: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[float] = mapped_column(Float)
    blob_digest: Mapped[str | None] = mapped_column(String(64), nullable=True)
    pruned_at: Mapped[float | None] = mapped_column(Float, nullable=True)


class BlobCandidateRow(Base):
    """A blob the garbage collector found no row naming, and when it first found so.

    It is deleted only once a later pass finds it still unnamed after the grace period.
    """

    __tablename__ = "updates_blob_candidates"

    digest: Mapped[str] = mapped_column(String(64), primary_key=True)
    first_seen: Mapped[float] = mapped_column(Float)


class RetentionRow(Base):
    """How many newest versions keep their full state: per organization (`stack_id` '')
    or per stack (overriding its organization's)."""

    __tablename__ = "updates_retention"

    organization: Mapped[str] = mapped_column(String(255), primary_key=True)
    stack_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    keep_versions: Mapped[int] = mapped_column(Integer)


class StackReferenceRow(Base):
    """A StackReference name the stack's newest version reads (replaced with each version)."""

    __tablename__ = "updates_stack_references"
    __table_args__ = (Index("ix_updates_stack_references_name", "name"),)

    stack_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    name: Mapped[str] = mapped_column(String(512), primary_key=True)
    version: Mapped[int] = mapped_column(BigInteger)


# Webhook events of update starts and ends, until the stacks service has them.
HOOK_OUTBOX = outbox_table(Base.metadata, "updates_hook_outbox")

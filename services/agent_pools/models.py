"""Tables of the agent_pools service; only store.py touches them.

Times are Unix seconds (floats), compared with the injected clock.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, Float, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from services.common.db import new_metadata
from services.common.hook_events import outbox_table


class Base(DeclarativeBase):
    metadata = new_metadata()


class PoolRow(Base):
    __tablename__ = "agent_pools_pools"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    organization: Mapped[str] = mapped_column(String(100), index=True)
    name: Mapped[str] = mapped_column(String(255))
    description: Mapped[str] = mapped_column(Text)
    # Only the hash of the pool's token is kept; the token is shown once.
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[float] = mapped_column(Float)


class AgentRow(Base):
    __tablename__ = "agent_pools_agents"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    pool_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("agent_pools_pools.id", ondelete="CASCADE"), index=True
    )
    version: Mapped[str] = mapped_column(String(64))
    platform: Mapped[str] = mapped_column(String(64))
    hostname: Mapped[str] = mapped_column(String(255))
    ip: Mapped[str] = mapped_column(String(64))
    pid: Mapped[str] = mapped_column(String(32))
    registered_at: Mapped[float] = mapped_column(Float)
    last_seen_at: Mapped[float] = mapped_column(Float)


class SettingsRow(Base):
    """A stack's deployment settings (secret values encrypted)."""

    __tablename__ = "agent_pools_settings"

    stack_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    organization: Mapped[str] = mapped_column(String(100))
    settings: Mapped[dict[str, Any]] = mapped_column(JSON)
    # Kept beside the JSON so "is this pool in use" is one indexed query.
    agent_pool_id: Mapped[str | None] = mapped_column(String(32), nullable=True, index=True)
    updated_at: Mapped[float] = mapped_column(Float)


class DeploymentRow(Base):
    __tablename__ = "agent_pools_deployments"
    __table_args__ = (
        Index("ix_agent_pools_deployments_stack_id_version", "stack_id", "version", unique=True),
        Index("ix_agent_pools_deployments_pool_id_status", "pool_id", "status"),
        Index("ix_agent_pools_deployments_organization_created_at", "organization", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    stack_id: Mapped[str] = mapped_column(String(255))
    organization: Mapped[str] = mapped_column(String(100))
    project: Mapped[str] = mapped_column(String(100))
    stack: Mapped[str] = mapped_column(String(100))
    version: Mapped[int] = mapped_column(BigInteger)
    operation: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))
    pool_id: Mapped[str] = mapped_column(String(32))
    agent_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    requested_by: Mapped[str] = mapped_column(String(255))
    # Empty when an organization or team token queued the deployment: no user to act for.
    requested_by_user_id: Mapped[str] = mapped_column(String(64), server_default="")
    # What queued it: api (a caller of the REST API), schedule, drift-detection,
    # drift-remediation or ttl.
    initiator: Mapped[str] = mapped_column(String(32), server_default="api")
    # The identity service's id of the access token minted for the running job; cleared once
    # the token is revoked after the deployment ended (the token itself is never stored).
    access_token_id: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    # The effective settings at creation (secret values still encrypted).
    settings: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[float] = mapped_column(Float)
    modified_at: Mapped[float] = mapped_column(Float)
    started_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    finished_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    # While running: when the job is given up unless its agent heartbeats.
    lease_expires_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    attempts: Mapped[int] = mapped_column(Integer)
    is_cancel_requested: Mapped[bool] = mapped_column(Boolean)
    message: Mapped[str] = mapped_column(Text)


class JobTokenRow(Base):
    """An access token minted for a run of a deployment's job (its id; never its value).

    Kept after the token is revoked: updates record the token id they were created with, and
    this is how such an update finds the deployment that caused it.
    """

    __tablename__ = "agent_pools_job_tokens"

    token_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    deployment_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("agent_pools_deployments.id", ondelete="CASCADE"), index=True
    )
    created_at: Mapped[float] = mapped_column(Float)


class LogLineRow(Base):
    __tablename__ = "agent_pools_log_lines"

    deployment_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("agent_pools_deployments.id", ondelete="CASCADE"), primary_key=True
    )
    index: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    timestamp: Mapped[float] = mapped_column(Float)
    text: Mapped[str] = mapped_column(Text)


# -- schedules, drift runs and pauses (services/agent_pools/schedule_store.py) ----------------


class ScheduleRow(Base):
    """A stack's scheduled deployment: cron (UTC) or one time; drift and TTL are kinds."""

    __tablename__ = "agent_pools_schedules"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    stack_id: Mapped[str] = mapped_column(String(255), index=True)
    organization: Mapped[str] = mapped_column(String(100))
    project: Mapped[str] = mapped_column(String(100))
    stack: Mapped[str] = mapped_column(String(100))
    kind: Mapped[str] = mapped_column(String(16))
    cron: Mapped[str | None] = mapped_column(String(255), nullable=True)
    once_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    # The next due time; null once a one-time schedule fired. Replicas claim a firing by
    # moving it forward from the value they read (compare and set).
    next_at: Mapped[float | None] = mapped_column(Float, nullable=True, index=True)
    paused: Mapped[bool] = mapped_column(Boolean)
    # The deployment request (secret values encrypted) or the drift / TTL options.
    definition: Mapped[dict[str, Any]] = mapped_column(JSON)
    requested_by: Mapped[str] = mapped_column(String(255))
    requested_by_user_id: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[float] = mapped_column(Float)
    modified_at: Mapped[float] = mapped_column(Float)
    last_executed_at: Mapped[float | None] = mapped_column(Float, nullable=True)


class ScheduleFiringRow(Base):
    """One firing of a schedule: at most one per schedule and due time."""

    __tablename__ = "agent_pools_schedule_firings"
    __table_args__ = (
        Index(
            "ix_agent_pools_schedule_firings_schedule_id_due_at",
            "schedule_id",
            "due_at",
            unique=True,
        ),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    schedule_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("agent_pools_schedules.id", ondelete="CASCADE")
    )
    stack_id: Mapped[str] = mapped_column(String(255), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    due_at: Mapped[float] = mapped_column(Float)
    executed_at: Mapped[float] = mapped_column(Float)
    deployment_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    version: Mapped[int] = mapped_column(BigInteger)
    # claimed (being queued) | succeeded (a deployment was queued) | failed
    result: Mapped[str] = mapped_column(String(16))
    message: Mapped[str] = mapped_column(Text)
    # False while the queued deployment's outcome (drift, TTL deletion) is still to handle.
    is_followed_up: Mapped[bool] = mapped_column(Boolean, index=True)
    # When a replica took the follow-up; a claim older than STALE_CLAIM_SECONDS is taken again.
    follow_up_claimed_at: Mapped[float | None] = mapped_column(Float, nullable=True)


class DriftRunRow(Base):
    __tablename__ = "agent_pools_drift_runs"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    stack_id: Mapped[str] = mapped_column(String(255), index=True)
    schedule_id: Mapped[str] = mapped_column(String(32))
    deployment_id: Mapped[str] = mapped_column(String(32), unique=True)
    auto_remediate: Mapped[bool] = mapped_column(Boolean)
    created_at: Mapped[float] = mapped_column(Float)
    finished_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    # Null until the detecting deployment ended.
    drift_detected: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    resource_changes: Mapped[dict[str, Any]] = mapped_column(JSON)
    remediation_deployment_id: Mapped[str | None] = mapped_column(String(32), nullable=True)


class DeploymentPauseRow(Base):
    """Paused deployments of one stack, or of a whole organization (stack_id '')."""

    __tablename__ = "agent_pools_deployment_pauses"

    organization: Mapped[str] = mapped_column(String(100), primary_key=True)
    stack_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    paused_at: Mapped[float] = mapped_column(Float)


# Webhook events of deployments, until the stacks service has them.
HOOK_OUTBOX = outbox_table(Base.metadata, "agent_pools_hook_outbox")

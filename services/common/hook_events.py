"""Webhook events through a durable outbox: written with the change that caused them, sent
after it, at least once.

A service adds an event row to its own outbox table inside the transaction of the change
(`add_event`), so a change that rolls back leaves no event and a committed one keeps its event
whatever happens to the process next; `Outbox.publish` does the same in a transaction of its
own for a caller that owns none. One `OutboxDispatcher` per process claims due rows, hands
each to a `send` callable and deletes it once sent; a row whose send failed comes back after
an exponential backoff with jitter, one whose dispatcher died comes back when its claim
expires. A claim moves the row's `available_at` past the claim's lease in a transaction that
selects rows with `FOR UPDATE SKIP LOCKED` on PostgreSQL, so replicas never hold the same row
at the same time; on SQLite the file's single writer serialises claims.

The producing services (updates, agent_pools) send their rows to the stacks process's
`HookService.PublishEvent` (`forward_to_hooks`), which stores them in its own outbox; the
stacks process's dispatcher resolves the matching hooks and delivers.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import grpc
from sqlalchemy import (
    Column,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    delete,
    insert,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession

from protos.cairn.v1 import hooks_pb2, hooks_pb2_grpc
from services.common.db import Sessions
from services.common.logging import get_logger

if TYPE_CHECKING:
    from protos.cairn.v1.hooks_pb2_grpc import HookServiceAsyncStub

log = get_logger("cairn.hook_events")

# Rows claimed by one dispatcher at once (and so sends under way at once).
DEFAULT_BATCH = 16
# How often a dispatcher looks for rows nobody woke it for (other replicas' expired claims,
# rows left by a process that stopped).
DEFAULT_POLL_SECONDS = 1.0
# Backoff of a row whose send failed: doubling from this, capped.
RETRY_BASE_SECONDS = 1.0
RETRY_MAX_SECONDS = 300.0

# Event kinds other work publishes (filter names as Pulumi's CLI spells them).
DEPLOYMENT_QUEUED = "deployment_queued"
DEPLOYMENT_STARTED = "deployment_started"
DEPLOYMENT_SUCCEEDED = "deployment_succeeded"
DEPLOYMENT_FAILED = "deployment_failed"
DRIFT_DETECTED = "drift_detected"
DRIFT_DETECTION_SUCCEEDED = "drift_detection_succeeded"
DRIFT_DETECTION_FAILED = "drift_detection_failed"
DRIFT_REMEDIATION_SUCCEEDED = "drift_remediation_succeeded"
DRIFT_REMEDIATION_FAILED = "drift_remediation_failed"


def outbox_table(metadata: MetaData, name: str) -> Table:
    """A service's outbox table (each service names its own, prefixed like its other tables)."""
    return Table(
        name,
        metadata,
        Column("id", String(64), primary_key=True),
        Column("stack_id", String(64), nullable=False),
        Column("event", String(64), nullable=False),
        # The serialized PublishEventRequest.
        Column("body", LargeBinary, nullable=False),
        Column("created_at", Float, nullable=False),
        # Due from then on: creation, the end of a claim's lease, or a retry's backoff.
        Column("available_at", Float, nullable=False),
        Column("attempts", Integer, nullable=False, default=0),
        Column("claimed_by", String(64), nullable=False, default=""),
        Index(f"ix_{name}_available_at", "available_at"),
    )


def hook_event(
    stack_id: str,
    event: str,
    *,
    at: float,
    user_login: str = "",
    organization: str = "",
    project: str = "",
    stack_name: str = "",
    update: hooks_pb2.UpdateOutcome | None = None,
    deployment: hooks_pb2.DeploymentOutcome | None = None,
    drift: hooks_pb2.DriftOutcome | None = None,
) -> hooks_pb2.PublishEventRequest:
    """An event of any kind, with a fresh id: what `add_event` and `Outbox.publish` take.
    `at` is when it happened, on the publishing service's clock (Unix seconds)."""
    request = hooks_pb2.PublishEventRequest(
        id=uuid.uuid4().hex,
        stack_id=stack_id,
        event=event,
        user_login=user_login,
        organization=organization,
        project=project,
        stack_name=stack_name,
        timestamp=int(at),
        occurred_at_us=round(at * 1_000_000),
    )
    if update is not None:
        request.update.CopyFrom(update)
    if deployment is not None:
        request.deployment.CopyFrom(deployment)
    if drift is not None:
        request.drift.CopyFrom(drift)
    return request


def _values(request: hooks_pb2.PublishEventRequest, now: float) -> dict[str, object]:
    return {
        "id": request.id or uuid.uuid4().hex,
        "stack_id": request.stack_id,
        "event": request.event,
        "body": request.SerializeToString(),
        "created_at": now,
        "available_at": now,
        "attempts": 0,
        "claimed_by": "",
    }


async def add_event(
    session: AsyncSession, table: Table, request: hooks_pb2.PublishEventRequest
) -> None:
    """Write an event into the outbox in the caller's (open) transaction."""
    await session.execute(insert(table).values(_values(request, time.time())))


@dataclass(frozen=True)
class Claimed:
    id: str
    request: hooks_pb2.PublishEventRequest
    attempts: int


class Outbox:
    """The SQL of one outbox table."""

    def __init__(self, sessions: Sessions, reads: Sessions, table: Table, dialect: str) -> None:
        self._sessions = sessions
        self._reads = reads
        self.table = table
        self._skip_locked = dialect == "postgresql"

    async def publish(self, request: hooks_pb2.PublishEventRequest) -> None:
        """Store an event in a transaction of its own; an id stored before is kept as is."""
        async with self._sessions.begin() as session:
            if request.id:
                known = await session.scalar(
                    select(self.table.c.id).where(self.table.c.id == request.id)
                )
                if known is not None:
                    return
            await add_event(session, self.table, request)

    async def has_due(self, now: float) -> bool:
        async with self._reads.begin() as session:
            found = await session.scalar(
                select(self.table.c.id).where(self.table.c.available_at <= now).limit(1)
            )
            return found is not None

    async def claim(self, owner: str, now: float, lease: float, limit: int) -> list[Claimed]:
        """Take up to `limit` due rows, oldest first, until `now + lease`."""
        table = self.table
        query = (
            select(table.c.id, table.c.body, table.c.attempts)
            .where(table.c.available_at <= now)
            .order_by(table.c.created_at, table.c.id)
            .limit(limit)
        )
        if self._skip_locked:
            query = query.with_for_update(skip_locked=True)
        async with self._sessions.begin() as session:
            rows = (await session.execute(query)).all()
            if not rows:
                return []
            await session.execute(
                update(table)
                .where(table.c.id.in_([row.id for row in rows]))
                .values(
                    available_at=now + lease,
                    claimed_by=owner,
                    attempts=table.c.attempts + 1,
                )
            )
        claimed = []
        for row in rows:
            request = hooks_pb2.PublishEventRequest()
            request.ParseFromString(row.body)
            if not request.id:
                request.id = row.id
            claimed.append(Claimed(row.id, request, row.attempts + 1))
        return claimed

    async def done(self, event_id: str) -> None:
        async with self._sessions.begin() as session:
            await session.execute(delete(self.table).where(self.table.c.id == event_id))

    async def later(self, event_id: str, owner: str, at: float) -> None:
        """Give a claimed row back, due at `at` (only while this owner still holds it)."""
        async with self._sessions.begin() as session:
            await session.execute(
                update(self.table)
                .where(self.table.c.id == event_id, self.table.c.claimed_by == owner)
                .values(available_at=at, claimed_by="")
            )


Send = Callable[[hooks_pb2.PublishEventRequest], Awaitable[None]]


def retry_delay(attempts: int, rng: random.Random | None = None) -> float:
    """Exponential backoff with full jitter over the upper half."""
    ceiling = min(RETRY_MAX_SECONDS, RETRY_BASE_SECONDS * 2.0 ** min(attempts - 1, 16))
    jitter: float = (rng or random).random()
    return ceiling / 2 + jitter * ceiling / 2


class OutboxDispatcher:
    """Claims and sends one outbox's rows in the background; `wake` after a commit."""

    def __init__(
        self,
        outbox: Outbox,
        send: Send,
        *,
        lease_seconds: float,
        poll_seconds: float = DEFAULT_POLL_SECONDS,
        batch: int = DEFAULT_BATCH,
        name: str = "",
    ) -> None:
        self._outbox = outbox
        self._send = send
        self._lease = lease_seconds
        self._poll = poll_seconds
        self._batch = batch
        self.owner = f"{name or 'outbox'}-{uuid.uuid4().hex[:12]}"
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._running: set[asyncio.Task[None]] = set()
        self._closed = False

    def start(self) -> None:
        if self._task is None and not self._closed:
            self._task = asyncio.get_running_loop().create_task(self._run())

    def wake(self) -> None:
        self._wakeup.set()

    async def _run(self) -> None:
        while not self._closed:
            try:
                await self._pass()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("hook_outbox_pass_failed", owner=self.owner)
            try:
                async with asyncio.timeout(self._poll):
                    await self._wakeup.wait()
            except TimeoutError:
                pass
            self._wakeup.clear()

    async def _pass(self) -> None:
        """Claim and start sends while rows are due and places are free."""
        while not self._closed:
            free = self._batch - len(self._running)
            if free <= 0:
                await asyncio.wait(self._running, return_when=asyncio.FIRST_COMPLETED)
                continue
            now = time.time()
            if not await self._outbox.has_due(now):
                return
            claimed = await self._outbox.claim(self.owner, now, self._lease, free)
            if not claimed:
                return
            for row in claimed:
                task = asyncio.get_running_loop().create_task(self._handle(row))
                self._running.add(task)
                task.add_done_callback(self._running.discard)

    async def _handle(self, row: Claimed) -> None:
        try:
            await self._send(row.request)
        except Exception as error:
            delay = retry_delay(row.attempts)
            log.warning(
                "hook_event_send_failed",
                hook_event=row.request.event,
                event_id=row.id,
                attempts=row.attempts,
                retry_in_seconds=round(delay, 1),
                error=type(error).__name__,
            )
            try:
                await self._outbox.later(row.id, self.owner, time.time() + delay)
            except Exception:
                log.exception("hook_outbox_release_failed", event_id=row.id)
            return
        try:
            await self._outbox.done(row.id)
        except Exception:
            # Sent but still claimed: sent again once the claim expires (at least once).
            log.exception("hook_outbox_done_failed", event_id=row.id)

    async def drain(self, timeout: float) -> None:
        """Wait (bounded) until no row is due and no send is under way (tests, shutdown)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self._running and not await self._outbox.has_due(time.time()):
                return
            self.wake()
            await asyncio.sleep(0.02)

    async def close(self, grace: float = 2.0) -> None:
        """Stop claiming; sends under way get `grace` seconds, then are cancelled (their rows
        come back when the claim expires)."""
        self._closed = True
        self._wakeup.set()
        if self._running:
            await asyncio.wait(list(self._running), timeout=grace)
        for task in [*self._running, *([self._task] if self._task else [])]:
            task.cancel()
        await asyncio.gather(
            *self._running, *([self._task] if self._task else []), return_exceptions=True
        )


def forward_to_hooks(channel: grpc.aio.Channel, timeout: float) -> Send:
    """A producing service's `send`: store the event in the stacks process's outbox."""
    stub: HookServiceAsyncStub = hooks_pb2_grpc.HookServiceStub(channel)

    async def send(request: hooks_pb2.PublishEventRequest) -> None:
        reply = await stub.PublishEvent(request, timeout=timeout)
        if not reply.accepted:
            raise RuntimeError("the event was not stored")

    return send


def forward_lease(timeout: float) -> float:
    """A forwarding claim outlives its call's deadline."""
    return timeout * 2 + 5.0

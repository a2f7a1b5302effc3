"""The audit recorder: entries go through a bounded in-memory queue to the audit service in
batches, after the response is decided.

Auditing fails open: a record that cannot be written (the identity service away for all
retries, or the queue full) is logged as an error and dropped; it never delays the call
beyond building the entry, and never turns its answer into an error. Which calls are recorded,
and as what, is said by the route table (`Route.audit`) and applied by
gateway/audit_middleware.py.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import grpc
from aiohttp import web

from gateway.context import BACKENDS, SETTINGS
from protos.cairn.v1 import audit_pb2
from services.common.logging import get_logger

if TYPE_CHECKING:
    from protos.cairn.v1.audit_pb2_grpc import AuditServiceAsyncStub

log = get_logger("cairn.audit")

# Reads wait this long for the entries this gateway still has queued, so a caller sees what
# they just did.
FLUSH_BEFORE_READ_SECONDS = 2.0


class AuditRecorder:
    """A bounded queue drained in batches into the audit service by one background task."""

    def __init__(
        self,
        *,
        capacity: int = 10_000,
        batch_size: int = 500,
        attempts: int = 3,
        retry_seconds: float = 0.2,
    ) -> None:
        self._queue: asyncio.Queue[audit_pb2.AuditEvent] = asyncio.Queue(capacity)
        self._batch_size = batch_size
        self._attempts = attempts
        self._retry_seconds = retry_seconds
        self._task: asyncio.Task[None] | None = None
        self.dropped = 0

    def submit(self, event: audit_pb2.AuditEvent) -> None:
        try:
            self._queue.put_nowait(event)
        except asyncio.QueueFull:
            self.dropped += 1
            log.error("audit_event_dropped", audit_event=event.event, reason="queue full")

    def start(self, stub: AuditServiceAsyncStub, timeout: float) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._drain(stub, timeout))

    async def flush(self, timeout: float) -> bool:
        """Wait until everything submitted so far was written (or given up); False on timeout."""
        try:
            await asyncio.wait_for(self._queue.join(), timeout)
        except TimeoutError:
            return False
        return True

    async def close(self, timeout: float) -> None:
        if self._task is None:
            return
        if not await self.flush(timeout):
            log.error("audit_events_lost_at_shutdown", events=self._queue.qsize())
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None

    async def _drain(self, stub: AuditServiceAsyncStub, timeout: float) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < self._batch_size and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            try:
                await self._write(stub, batch, timeout)
            finally:
                for _ in batch:
                    self._queue.task_done()

    async def _write(
        self, stub: AuditServiceAsyncStub, batch: list[audit_pb2.AuditEvent], timeout: float
    ) -> None:
        request = audit_pb2.RecordAuditEventsRequest(events=batch)
        failure = ""
        for attempt in range(self._attempts):
            try:
                await stub.RecordAuditEvents(request, timeout=timeout)
                return
            except grpc.aio.AioRpcError as error:
                failure = error.code().name
            except Exception as error:  # the writer must outlive any one failure
                failure = type(error).__name__
            if attempt + 1 < self._attempts:
                await asyncio.sleep(self._retry_seconds * (attempt + 1))
        log.error(
            "audit_record_failed",
            events=len(batch),
            audit_events=sorted({event.event for event in batch}),
            error=failure,
        )


AUDIT_RECORDER = web.AppKey("audit_recorder", AuditRecorder)


async def recording(app: web.Application) -> AsyncIterator[None]:
    """cleanup_ctx: run the recorder while the app runs; write what is queued on the way out."""
    recorder = app[AUDIT_RECORDER]
    timeout = app[SETTINGS].grpc_timeout_seconds
    recorder.start(app[BACKENDS].audit, timeout)
    yield
    await recorder.close(timeout)


async def flush_recent(request: web.Request) -> None:
    """Wait briefly for the entries this gateway still has queued (the console reads too)."""
    await request.app[AUDIT_RECORDER].flush(FLUSH_BEFORE_READ_SECONDS)

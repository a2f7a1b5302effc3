"""Use cases of the audit log: append, read within bounds, export, and the retention prune."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

from services.common.clock import Clock
from services.common.logging import get_logger
from services.common.loop import cancel_and_wait
from services.identity.audit.domain import (
    MAX_EXPORT_EVENTS,
    MICROS_PER_SECOND,
    AuditEntry,
    AuditPage,
    AuditQuery,
    bounded_entry,
    page_size,
    parse_continuation_token,
    retention_cutoff,
    too_many_to_export,
    validate_export,
    validate_query,
)
from services.identity.audit.store import AuditStore

# Pruning is cheap (one indexed DELETE); hourly keeps the table within a day of the setting.
PRUNE_INTERVAL_SECONDS = 3600.0

log = get_logger("cairn.audit")


class AuditLog:
    """Append and read; there is deliberately no use case that changes or deletes an entry."""

    def __init__(self, store: AuditStore, clock: Clock) -> None:
        self._store = store
        self._clock = clock

    def now_micros(self) -> int:
        """When an entry that names no time of its own is recorded."""
        return int(self._clock.now() * MICROS_PER_SECOND)

    async def record(self, entries: Sequence[AuditEntry]) -> int:
        """Store entries, each cut to what its columns hold; returns how many were stored."""
        return await self._store.record([bounded_entry(e) for e in entries])

    async def page(
        self, query: AuditQuery, continuation_token: str, requested_size: int
    ) -> AuditPage:
        """One page of matching entries, newest first."""
        return await self._store.page(
            validate_query(query),
            after=parse_continuation_token(continuation_token),
            limit=page_size(requested_size),
        )

    async def export(self, query: AuditQuery) -> tuple[AuditEntry, ...]:
        """Every entry of a bounded time window; refused when there are too many."""
        entries = await self._store.export(validate_export(query), limit=MAX_EXPORT_EVENTS)
        if entries is None:
            raise too_many_to_export()
        return entries


class RetentionPruner:
    """Deletes entries older than the retention setting: once at start, then periodically."""

    def __init__(
        self,
        store: AuditStore,
        clock: Clock,
        retention_days: int,
        *,
        interval_seconds: float = PRUNE_INTERVAL_SECONDS,
        sleep: Callable[[float], Any] = asyncio.sleep,
    ) -> None:
        self._store = store
        self._clock = clock
        self._retention_days = retention_days
        self._interval = interval_seconds
        self._sleep = sleep
        self._task: asyncio.Task[None] | None = None

    async def prune_once(self) -> int:
        """Prune now; returns how many entries went."""
        cutoff = retention_cutoff(self._clock.now(), self._retention_days)
        if cutoff is None:
            return 0
        pruned = await self._store.prune(cutoff)
        if pruned:
            log.info("audit_pruned", entries=pruned, retention_days=self._retention_days)
        return pruned

    def start(self) -> None:
        if self._retention_days > 0 and self._task is None:
            self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None

    async def _run(self) -> None:
        while True:
            try:
                await self.prune_once()
            except Exception:
                # The database may be away for a while; the next round tries again.
                log.exception("audit_prune_failed")
            await self._sleep(self._interval)

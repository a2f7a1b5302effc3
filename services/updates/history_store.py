"""SQL for the updates service's read views: history, previews, versions' updates, engine
events, status lines and StackReference names; returns frozen records, never rows."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import func, select

from services.common.db import Sessions
from services.updates.domain import (
    NOT_STARTED,
    EngineEvent,
    HistoryPage,
    StackReference,
    StatusEvent,
    UpdateRecord,
)
from services.updates.models import EngineEventRow, LogEntryRow, StackReferenceRow, UpdateRow
from services.updates.store import update_record


class HistoryStore:
    """Read-only queries over updates, their events and the stacks' references."""

    def __init__(self, reads: Sessions) -> None:
        self._reads = reads  # read-only transactions

    async def history(self, stack_id: str, limit: int, offset: int) -> HistoryPage:
        """Started non-preview updates, newest first."""
        condition = (
            (UpdateRow.stack_id == stack_id)
            & (UpdateRow.is_dry_run.is_(False))
            & (UpdateRow.kind != "preview")
            & (UpdateRow.status != NOT_STARTED)
        )
        async with self._reads.begin() as session:
            total = await session.scalar(select(func.count()).where(condition))
            rows = await session.scalars(
                select(UpdateRow)
                .where(condition)
                .order_by(UpdateRow.version.desc(), UpdateRow.created_at.desc())
                .limit(limit)
                .offset(offset)
            )
            return HistoryPage(
                updates=tuple(update_record(row) for row in rows), total=int(total or 0)
            )

    async def by_version(self, stack_id: str, version: int) -> UpdateRecord | None:
        """The non-preview update that produced a version (0: the newest)."""
        statement = select(UpdateRow).where(
            UpdateRow.stack_id == stack_id,
            UpdateRow.is_dry_run.is_(False),
            UpdateRow.kind != "preview",
            UpdateRow.status != NOT_STARTED,
        )
        if version:
            statement = statement.where(UpdateRow.version == version)
        statement = statement.order_by(UpdateRow.version.desc()).limit(1)
        async with self._reads.begin() as session:
            row = await session.scalar(statement)
            return None if row is None else update_record(row)

    async def previews(
        self, stack_id: str, version: int, limit: int, offset: int, *, ascending: bool
    ) -> HistoryPage:
        """Started previews run while the stack was at `version`, by start time."""
        condition = (
            (UpdateRow.stack_id == stack_id)
            & (UpdateRow.is_dry_run.is_(True) | (UpdateRow.kind == "preview"))
            & (UpdateRow.status != NOT_STARTED)
            & (UpdateRow.version == version)
        )
        order = (UpdateRow.created_at, UpdateRow.id)
        async with self._reads.begin() as session:
            total = await session.scalar(select(func.count()).where(condition))
            rows = await session.scalars(
                select(UpdateRow)
                .where(condition)
                .order_by(*(order if ascending else (column.desc() for column in order)))
                .limit(limit)
                .offset(offset)
            )
            return HistoryPage(
                updates=tuple(update_record(row) for row in rows), total=int(total or 0)
            )

    async def by_tokens(
        self, token_ids: Sequence[str], stack_ids: Sequence[str], limit: int
    ) -> list[UpdateRecord]:
        """Updates of these stacks created with one of these tokens, oldest first."""
        if not token_ids:
            return []
        async with self._reads.begin() as session:
            rows = await session.scalars(
                select(UpdateRow)
                .where(
                    UpdateRow.stack_id.in_(sorted(set(stack_ids))),
                    UpdateRow.requested_by_token.in_(sorted(set(token_ids))),
                )
                .order_by(UpdateRow.created_at, UpdateRow.id)
                .limit(limit)
            )
            return [update_record(row) for row in rows]

    async def references(self, stack_id: str) -> list[StackReference]:
        """The StackReference names the stack's newest version reads."""
        async with self._reads.begin() as session:
            rows = await session.scalars(
                select(StackReferenceRow)
                .where(StackReferenceRow.stack_id == stack_id)
                .order_by(StackReferenceRow.name)
            )
            return [StackReference(row.stack_id, row.version, row.name) for row in rows]

    async def referencing(self, names: Sequence[str], limit: int) -> list[StackReference]:
        """Stacks whose newest version reads one of `names`."""
        if not names:
            return []
        async with self._reads.begin() as session:
            rows = await session.scalars(
                select(StackReferenceRow)
                .where(StackReferenceRow.name.in_(sorted(set(names))))
                .order_by(StackReferenceRow.stack_id, StackReferenceRow.name)
                .limit(limit)
            )
            return [StackReference(row.stack_id, row.version, row.name) for row in rows]

    async def log_entries(self, update_id: str, after: int, limit: int) -> list[StatusEvent]:
        async with self._reads.begin() as session:
            rows = await session.scalars(
                select(LogEntryRow)
                .where(LogEntryRow.update_id == update_id, LogEntryRow.index > after)
                .order_by(LogEntryRow.index)
                .limit(limit)
            )
            return [StatusEvent(row.index, row.kind, row.fields) for row in rows]

    async def engine_events(
        self, update_id: str, after: int, limit: int, kinds: Sequence[str] = ()
    ) -> list[EngineEvent]:
        """Stored events after sequence `after`, oldest first; with `kinds`, only those."""
        query = select(EngineEventRow).where(
            EngineEventRow.update_id == update_id, EngineEventRow.sequence > after
        )
        if kinds:
            query = query.where(EngineEventRow.kind.in_(kinds))
        async with self._reads.begin() as session:
            rows = await session.scalars(query.order_by(EngineEventRow.sequence).limit(limit))
            return [EngineEvent(row.sequence, row.timestamp, row.kind, row.data) for row in rows]

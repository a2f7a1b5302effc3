"""The only code issuing SQL for the stacks tables; returns frozen records, never rows."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, exists, select, tuple_
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.common.clock import Clock
from services.common.errors import AlreadyExists, NotFound
from services.stacks.domain import (
    NewStack,
    StackConfig,
    StackPage,
    StackPath,
    StackQuery,
    StackRecord,
    encode_continuation_token,
)
from services.stacks.models import StackRow, StackTagRow


def not_found(path: StackPath) -> NotFound:
    return NotFound(f"Not Found: stack '{path}' not found")


def already_exists(path: StackPath) -> AlreadyExists:
    # The CLI recognises a duplicate stack by the words "already exists".
    return AlreadyExists(f"Conflict: stack '{path}' already exists")


class StackStore:
    """Stacks and their tags; one session and one transaction per call."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], clock: Clock) -> None:
        self._sessions = sessions
        self._clock = clock

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock.now(), tz=UTC)

    async def create(self, stack: NewStack) -> StackRecord:
        """Insert a stack; AlreadyExists when the name is taken, even by a concurrent create."""
        now = self._now()
        row = StackRow(
            id=uuid.uuid4().hex,
            organization=stack.path.organization,
            project=stack.path.project,
            name=stack.path.stack,
            config=None if stack.config is None else dataclasses.asdict(stack.config),
            teams=list(stack.teams),
            created_at=now,
            updated_at=now,
        )
        try:
            async with self._sessions.begin() as session:
                session.add(row)
                # The stack row goes first so its foreign key exists for the tags.
                await session.flush()
                session.add_all(_tag_rows(row.id, stack.tags))
        except IntegrityError:
            raise already_exists(stack.path) from None
        return _record(row, stack.tags)

    async def get(self, path: StackPath) -> StackRecord:
        """The stack at a path, with its tags; NotFound when there is none."""
        async with self._sessions.begin() as session:
            row = await _find(session, path)
            return _record(row, (await _tags(session, [row.id]))[row.id])

    async def project_exists(self, organization: str, project: str) -> bool:
        """A project exists exactly while a stack is in it."""
        async with self._sessions.begin() as session:
            query = select(
                exists().where(StackRow.organization == organization, StackRow.project == project)
            )
            return bool(await session.scalar(query))

    async def delete(self, stack: StackRecord) -> None:
        """Delete a stack by its stable id (tags cascade); NotFound when already gone."""
        async with self._sessions.begin() as session:
            deleted = await session.scalar(
                delete(StackRow).where(StackRow.id == stack.id).returning(StackRow.id)
            )
        if deleted is None:
            raise not_found(stack.path)

    async def list_stacks(self, query: StackQuery) -> StackPage:
        """One page in (organization, project, name) order, after the query's keyset position."""
        if not query.visible_organizations:
            return StackPage(stacks=())
        order = (StackRow.organization, StackRow.project, StackRow.name)
        statement = select(StackRow).where(
            StackRow.organization.in_(sorted(query.visible_organizations))
        )
        if query.organization:
            statement = statement.where(StackRow.organization == query.organization)
        if query.project:
            statement = statement.where(StackRow.project == query.project)
        if query.stack_ids:
            statement = statement.where(StackRow.id.in_(sorted(query.stack_ids)))
        if query.tag_name:
            tag = exists().where(
                StackTagRow.stack_id == StackRow.id, StackTagRow.name == query.tag_name
            )
            if query.tag_value is not None:
                tag = tag.where(StackTagRow.value == query.tag_value)
            statement = statement.where(tag)
        if query.after is not None:
            after = query.after
            statement = statement.where(
                tuple_(*order) > tuple_(after.organization, after.project, after.stack)
            )
        # One extra row tells whether another page follows.
        statement = statement.order_by(*order).limit(query.page_size + 1)
        async with self._sessions.begin() as session:
            rows = list((await session.scalars(statement)).all())
            page = rows[: query.page_size]
            tags = await _tags(session, [row.id for row in page])
        records = [_record(row, tags[row.id]) for row in page]
        token = ""
        if len(rows) > query.page_size:
            token = encode_continuation_token(records[-1].path)
        return StackPage(stacks=records, continuation_token=token)

    async def rename(self, path: StackPath, target: StackPath) -> StackRecord:
        """Move a stack to a new project and/or name; its id, tags and creation time stay."""
        try:
            async with self._sessions.begin() as session:
                row = await _find(session, path, for_update=True)
                row.project = target.project
                row.name = target.stack
                row.updated_at = self._now()
                # Flush here so a taken name surfaces as IntegrityError inside the try.
                await session.flush()
                tags = (await _tags(session, [row.id]))[row.id]
        except IntegrityError:
            raise already_exists(target) from None
        return _record(row, tags)

    async def replace_tags(self, path: StackPath, tags: Mapping[str, str]) -> StackRecord:
        """Swap the whole tag set in one transaction."""
        async with self._sessions.begin() as session:
            # The row lock serialises concurrent replacements of the same stack's tags.
            row = await _find(session, path, for_update=True)
            await session.execute(delete(StackTagRow).where(StackTagRow.stack_id == row.id))
            session.add_all(_tag_rows(row.id, tags))
            row.updated_at = self._now()
        return _record(row, tags)


async def _find(session: AsyncSession, path: StackPath, *, for_update: bool = False) -> StackRow:
    statement = select(StackRow).where(
        StackRow.organization == path.organization,
        StackRow.project == path.project,
        StackRow.name == path.stack,
    )
    if for_update:
        statement = statement.with_for_update()
    row = await session.scalar(statement)
    if row is None:
        raise not_found(path)
    return row


async def _tags(session: AsyncSession, stack_ids: list[str]) -> dict[str, dict[str, str]]:
    """Tags of several stacks at once, keyed by stack id (every id present)."""
    found: dict[str, dict[str, str]] = {stack_id: {} for stack_id in stack_ids}
    if not stack_ids:
        return found
    rows = await session.execute(
        select(StackTagRow.stack_id, StackTagRow.name, StackTagRow.value).where(
            StackTagRow.stack_id.in_(stack_ids)
        )
    )
    for stack_id, name, value in rows:
        found[stack_id][name] = value
    return found


def _tag_rows(stack_id: str, tags: Mapping[str, str]) -> Iterable[StackTagRow]:
    return [StackTagRow(stack_id=stack_id, name=name, value=value) for name, value in tags.items()]


def _utc(value: datetime) -> datetime:
    # SQLite hands timestamps back without a zone; they were written in UTC.
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _config(value: dict[str, Any] | None) -> StackConfig | None:
    if value is None:
        return None
    return StackConfig(
        environment=str(value.get("environment", "")),
        secrets_provider=str(value.get("secrets_provider", "")),
        encrypted_key=str(value.get("encrypted_key", "")),
        encryption_salt=str(value.get("encryption_salt", "")),
    )


def _record(row: StackRow, tags: Mapping[str, str]) -> StackRecord:
    return StackRecord(
        id=row.id,
        path=StackPath(organization=row.organization, project=row.project, stack=row.name),
        tags=dict(tags),
        config=_config(row.config),
        teams=tuple(row.teams),
        created_at=_utc(row.created_at),
        updated_at=_utc(row.updated_at),
    )

"""The only code issuing SQL for the stacks tables; returns frozen records, never rows."""

from __future__ import annotations

import base64
import dataclasses
import uuid
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, exists, func, select, tuple_
from sqlalchemy import update as sa_update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from protos.cairn.v1.hooks_pb2 import PublishEventRequest
from services.common.clock import Clock, aware
from services.common.db import Sessions
from services.common.errors import Aborted, AlreadyExists, NotFound
from services.common.hook_events import add_event
from services.stacks.domain import (
    MAX_ANNOTATION_VERSIONS,
    Annotation,
    AnnotationQuery,
    DeletedStack,
    NewAnnotation,
    NewStack,
    NotificationSettings,
    StackConfig,
    StackPage,
    StackPath,
    StackQuery,
    StackRecord,
    encode_continuation_token,
)
from services.stacks.models import (
    HOOK_OUTBOX,
    DeletedStackRow,
    HookRow,
    StackAnnotationRow,
    StackRow,
    StackTagRow,
)

# The webhook event of a stack change, built from the stack as the change leaves it.
Announce = Callable[[StackRecord], PublishEventRequest | None]

ANNOTATION_CHANGED = "Conflict: the annotation has changed since it was read"


def not_found(path: StackPath) -> NotFound:
    return NotFound(f"Not Found: stack '{path}' not found")


def already_exists(path: StackPath) -> AlreadyExists:
    # The CLI recognises a duplicate stack by the words "already exists".
    return AlreadyExists(f"Conflict: stack '{path}' already exists")


class StackStore:
    """Stacks and their tags; one session and one transaction per call."""

    def __init__(self, sessions: Sessions, clock: Clock, reads: Sessions | None = None) -> None:
        self._sessions = sessions
        # Read-only transactions (on SQLite they neither take nor wait for the write lock).
        self._reads = reads or sessions
        self._clock = clock

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock.now(), tz=UTC)

    async def create(self, stack: NewStack, announce: Announce | None = None) -> StackRecord:
        """Insert a stack; AlreadyExists when the name is taken, even by a concurrent create.
        `announce` gives the webhook event written in the same transaction."""
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
            owner_login=stack.owner_login,
            notify_update_failure=False,
            notify_update_success=False,
        )
        try:
            async with self._sessions.begin() as session:
                session.add(row)
                # The stack row goes first so its foreign key exists for the tags.
                await session.flush()
                session.add_all(_tag_rows(row.id, stack.tags))
                await _announce(session, announce, _record(row, stack.tags))
        except IntegrityError:
            raise already_exists(stack.path) from None
        return _record(row, stack.tags)

    async def announce(self, stack: StackRecord, announce: Announce) -> None:
        """Write a webhook event on its own (for a change committed in several steps)."""
        async with self._sessions.begin() as session:
            await _announce(session, announce, stack)

    async def get(self, path: StackPath) -> StackRecord:
        """The stack at a path, with its tags; NotFound when there is none."""
        async with self._reads.begin() as session:
            row = await _find(session, path)
            return _record(row, (await _tags(session, [row.id]))[row.id])

    async def get_by_id(self, stack_id: str) -> StackRecord:
        """The stack with a stable id, with its tags; NotFound when there is none."""
        async with self._reads.begin() as session:
            row = await session.get(StackRow, stack_id)
            if row is None:
                raise NotFound(f"Not Found: no stack with id '{stack_id}'")
            return _record(row, (await _tags(session, [row.id]))[row.id])

    async def project_exists(self, organization: str, project: str) -> bool:
        """A project exists exactly while a stack is in it."""
        async with self._reads.begin() as session:
            query = select(
                exists().where(StackRow.organization == organization, StackRow.project == project)
            )
            return bool(await session.scalar(query))

    async def delete(self, stack: StackRecord, announce: Announce | None = None) -> None:
        """Delete a stack by its stable id (tags cascade); NotFound when already gone."""
        async with self._sessions.begin() as session:
            deleted = await session.scalar(
                delete(StackRow).where(StackRow.id == stack.id).returning(StackRow.id)
            )
            if deleted is not None:
                await _announce(session, announce, stack)
        if deleted is None:
            raise not_found(stack.path)

    async def tombstone(
        self, stack: StackRecord, deleted_by: str, announce: Announce | None = None
    ) -> None:
        """Move a stack, by its stable id, out of the live table into a tombstone holding its
        row, tags and annotations, in one transaction (with its webhook event); NotFound when
        already gone."""
        async with self._sessions.begin() as session:
            row = await session.get(StackRow, stack.id, with_for_update=True)
            if row is None:
                raise not_found(stack.path)
            tags = (await _tags(session, [row.id]))[row.id]
            annotations = (
                await session.scalars(
                    select(StackAnnotationRow).where(StackAnnotationRow.stack_id == row.id)
                )
            ).all()
            session.add(
                DeletedStackRow(
                    id=row.id,
                    organization=row.organization,
                    project=row.project,
                    name=row.name,
                    deleted_at=self._now(),
                    deleted_by=deleted_by,
                    snapshot=_snapshot(row, tags, annotations),
                )
            )
            await session.delete(row)
            await _announce(session, announce, stack)

    async def list_deleted(self, organization: str, after: float) -> list[DeletedStack]:
        """An organization's tombstones deleted after a time (Unix seconds), newest first."""
        statement = (
            select(DeletedStackRow)
            .where(
                DeletedStackRow.organization == organization,
                DeletedStackRow.deleted_at > _timestamp(after),
            )
            .order_by(DeletedStackRow.deleted_at.desc(), DeletedStackRow.id)
        )
        async with self._reads.begin() as session:
            rows = (await session.scalars(statement)).all()
        return [_deleted(row) for row in rows]

    async def restore(
        self, organization: str, stack_id: str, name: str, after: float
    ) -> StackRecord:
        """Put a tombstone (deleted after `after`) back as a live stack named `name` (empty:
        its old name); NotFound without one, AlreadyExists when a live stack holds the name."""
        try:
            async with self._sessions.begin() as session:
                tomb = await session.get(DeletedStackRow, stack_id, with_for_update=True)
                if (
                    tomb is None
                    or tomb.organization != organization
                    or aware(tomb.deleted_at) <= _timestamp(after)
                ):
                    raise NotFound(f"Not Found: no deleted stack with id '{stack_id}'")
                path = StackPath(
                    organization=tomb.organization, project=tomb.project, stack=name or tomb.name
                )
                row, tags, annotations = _from_snapshot(tomb, path, self._now())
                await session.delete(tomb)
                session.add(row)
                await session.flush()
                session.add_all(_tag_rows(row.id, tags))
                session.add_all(annotations)
        except IntegrityError:
            raise already_exists(path) from None
        return _record(row, tags)

    async def expired_tombstones(self, cutoff: float, limit: int) -> list[StackRecord]:
        """Tombstones deleted at or before a time (Unix seconds), oldest first."""
        statement = (
            select(DeletedStackRow)
            .where(DeletedStackRow.deleted_at <= _timestamp(cutoff))
            .order_by(DeletedStackRow.deleted_at, DeletedStackRow.id)
            .limit(limit)
        )
        async with self._reads.begin() as session:
            rows = (await session.scalars(statement)).all()
        records = []
        for row in rows:
            stack, tags, _ = _from_snapshot(row, _tomb_path(row), aware(row.deleted_at))
            records.append(_record(stack, tags))
        return records

    async def forget_tombstone(self, stack_id: str) -> None:
        """Drop a tombstone once everything kept for it elsewhere is purged."""
        async with self._sessions.begin() as session:
            await session.execute(delete(DeletedStackRow).where(DeletedStackRow.id == stack_id))

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
        async with self._reads.begin() as session:
            rows = list((await session.scalars(statement)).all())
            page = rows[: query.page_size]
            tags = await _tags(session, [row.id for row in page])
        records = [_record(row, tags[row.id]) for row in page]
        token = ""
        if len(rows) > query.page_size:
            token = encode_continuation_token(records[-1].path)
        return StackPage(stacks=records, continuation_token=token)

    async def rename(
        self, path: StackPath, target: StackPath, announce: Announce | None = None
    ) -> StackRecord:
        """Move a stack to a new project and/or name; its id, tags, creation time and webhooks
        stay (hooks are keyed by the id)."""
        try:
            async with self._sessions.begin() as session:
                row = await _find(session, path, for_update=True)
                row.project = target.project
                row.name = target.stack
                row.updated_at = self._now()
                # Flush here so a taken name surfaces as IntegrityError inside the try.
                await session.flush()
                tags = (await _tags(session, [row.id]))[row.id]
                await _announce(session, announce, _record(row, tags))
        except IntegrityError:
            raise already_exists(target) from None
        return _record(row, tags)

    async def transfer(
        self,
        stack: StackRecord,
        target: StackPath,
        owner_login: str,
        announce: Announce | None = None,
    ) -> StackRecord:
        """Move a stack, found by its stable id, to another organization.

        Team grants belong to the old organization's teams, so they stay behind; the stack's
        own webhooks move with it (the old organization's hooks stay there).
        """
        try:
            async with self._sessions.begin() as session:
                row = await session.get(StackRow, stack.id, with_for_update=True)
                if row is None or _path(row) != stack.path:
                    # Deleted, renamed or moved since it was read: the caller's name is stale.
                    raise not_found(stack.path)
                row.organization = target.organization
                row.teams = []
                row.owner_login = owner_login
                row.updated_at = self._now()
                await session.flush()
                await session.execute(
                    sa_update(HookRow)
                    .where(HookRow.stack_id == stack.id)
                    .values(organization=target.organization)
                )
                tags = (await _tags(session, [row.id]))[row.id]
                await _announce(session, announce, _record(row, tags))
        except IntegrityError:
            raise already_exists(target) from None
        return _record(row, tags)

    async def set_owner(self, path: StackPath, owner_login: str) -> tuple[StackRecord, str]:
        """Give the stack a new owner; returns the stack and the previous owner's login."""
        async with self._sessions.begin() as session:
            row = await _find(session, path, for_update=True)
            previous = row.owner_login
            row.owner_login = owner_login
            row.updated_at = self._now()
            tags = (await _tags(session, [row.id]))[row.id]
        return _record(row, tags), previous

    async def set_notifications(
        self, path: StackPath, settings: NotificationSettings
    ) -> StackRecord:
        async with self._sessions.begin() as session:
            row = await _find(session, path, for_update=True)
            row.notify_update_failure = settings.notify_update_failure
            row.notify_update_success = settings.notify_update_success
            row.notifications_set = True
            row.updated_at = self._now()
            tags = (await _tags(session, [row.id]))[row.id]
        return _record(row, tags)

    async def get_annotation(self, path: StackPath, query: AnnotationQuery) -> Annotation | None:
        """The newest version matching the query, or None (the stack must exist)."""
        async with self._reads.begin() as session:
            row = await _find(session, path)
            statement = select(StackAnnotationRow).where(
                StackAnnotationRow.stack_id == row.id, StackAnnotationRow.kind == query.kind
            )
            if query.source:
                statement = statement.where(StackAnnotationRow.source == query.source)
            if query.version:
                statement = statement.where(StackAnnotationRow.version == query.version)
            found = await session.scalar(
                statement.order_by(StackAnnotationRow.version.desc()).limit(1)
            )
            return None if found is None else _annotation(found)

    async def put_annotation(self, path: StackPath, annotation: NewAnnotation) -> Annotation:
        """Write the next version; Aborted when the writer's expected version is stale."""
        try:
            async with self._sessions.begin() as session:
                # The stack row lock serialises writers of the same stack's annotations.
                stack = await _find(session, path, for_update=True)
                current = await session.scalar(
                    select(func.max(StackAnnotationRow.version)).where(
                        StackAnnotationRow.stack_id == stack.id,
                        StackAnnotationRow.kind == annotation.kind,
                    )
                )
                latest = int(current or 0)
                expected = annotation.expected_version
                if expected is not None and expected != latest:
                    raise Aborted(ANNOTATION_CHANGED)
                row = StackAnnotationRow(
                    stack_id=stack.id,
                    kind=annotation.kind,
                    version=latest + 1,
                    source=annotation.source,
                    content=annotation.content,
                    modified_by=annotation.modified_by,
                    modified_at=self._now(),
                )
                session.add(row)
                await session.execute(
                    delete(StackAnnotationRow).where(
                        StackAnnotationRow.stack_id == stack.id,
                        StackAnnotationRow.kind == annotation.kind,
                        StackAnnotationRow.version <= latest + 1 - MAX_ANNOTATION_VERSIONS,
                    )
                )
                await session.flush()
        except IntegrityError:
            # A concurrent writer took this version number first.
            raise Aborted(ANNOTATION_CHANGED) from None
        return _annotation(row)

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


async def _announce(session: AsyncSession, announce: Announce | None, stack: StackRecord) -> None:
    event = None if announce is None else announce(stack)
    if event is not None:
        await add_event(session, HOOK_OUTBOX, event)


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


def _config(value: dict[str, Any] | None) -> StackConfig | None:
    if value is None:
        return None
    return StackConfig(
        environment=str(value.get("environment", "")),
        secrets_provider=str(value.get("secrets_provider", "")),
        encrypted_key=str(value.get("encrypted_key", "")),
        encryption_salt=str(value.get("encryption_salt", "")),
    )


def _path(row: StackRow) -> StackPath:
    return StackPath(organization=row.organization, project=row.project, stack=row.name)


def _annotation(row: StackAnnotationRow) -> Annotation:
    return Annotation(
        kind=row.kind,
        source=row.source,
        version=row.version,
        content=row.content,
        modified_by=row.modified_by,
        modified_at=aware(row.modified_at),
    )


def _record(row: StackRow, tags: Mapping[str, str]) -> StackRecord:
    return StackRecord(
        id=row.id,
        path=_path(row),
        tags=dict(tags),
        config=_config(row.config),
        teams=tuple(row.teams),
        created_at=aware(row.created_at),
        updated_at=aware(row.updated_at),
        owner_login=row.owner_login,
        notifications=NotificationSettings(
            notify_update_failure=row.notify_update_failure,
            notify_update_success=row.notify_update_success,
            configured=bool(row.notifications_set),
        ),
    )


def _timestamp(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, tz=UTC)


def _tomb_path(row: DeletedStackRow) -> StackPath:
    return StackPath(organization=row.organization, project=row.project, stack=row.name)


def _deleted(row: DeletedStackRow) -> DeletedStack:
    return DeletedStack(
        id=row.id, path=_tomb_path(row), deleted_at=aware(row.deleted_at), deleted_by=row.deleted_by
    )


def _snapshot(
    row: StackRow, tags: Mapping[str, str], annotations: Iterable[StackAnnotationRow]
) -> dict[str, Any]:
    """What a restore needs to put the stack back as it was (JSON-safe)."""
    return {
        "config": row.config,
        "teams": list(row.teams),
        "created_at": aware(row.created_at).timestamp(),
        "owner_login": row.owner_login,
        "notify_update_failure": row.notify_update_failure,
        "notify_update_success": row.notify_update_success,
        "notifications_set": bool(row.notifications_set),
        "tags": dict(tags),
        "annotations": [
            {
                "kind": annotation.kind,
                "version": annotation.version,
                "source": annotation.source,
                "content": base64.b64encode(annotation.content).decode("ascii"),
                "modified_by": annotation.modified_by,
                "modified_at": aware(annotation.modified_at).timestamp(),
            }
            for annotation in annotations
        ],
    }


def _from_snapshot(
    tomb: DeletedStackRow, path: StackPath, now: datetime
) -> tuple[StackRow, dict[str, str], list[StackAnnotationRow]]:
    snapshot = tomb.snapshot
    row = StackRow(
        id=tomb.id,
        organization=path.organization,
        project=path.project,
        name=path.stack,
        config=snapshot.get("config"),
        teams=list(snapshot.get("teams", [])),
        created_at=_timestamp(float(snapshot["created_at"])),
        updated_at=now,
        owner_login=str(snapshot.get("owner_login", "")),
        notify_update_failure=bool(snapshot.get("notify_update_failure", False)),
        notify_update_success=bool(snapshot.get("notify_update_success", False)),
        notifications_set=bool(snapshot.get("notifications_set", False)),
    )
    tags = {str(name): str(value) for name, value in snapshot.get("tags", {}).items()}
    annotations = [
        StackAnnotationRow(
            stack_id=tomb.id,
            kind=item["kind"],
            version=int(item["version"]),
            source=item["source"],
            content=base64.b64decode(item["content"]),
            modified_by=item["modified_by"],
            modified_at=_timestamp(float(item["modified_at"])),
        )
        for item in snapshot.get("annotations", [])
    ]
    return row, tags, annotations

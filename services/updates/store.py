"""SQL for the update lifecycle: updates, the stack lock row, checkpoints, journal, events
and stored versions; returns frozen records, never rows. History reads are in `history_store`.

Rules that must hold in the transaction that writes (the lease fencing check, who may start
or end an update) are pure functions of `domain`, applied here to the rows just locked.
"""

from __future__ import annotations

import sqlite3
import uuid
from collections import namedtuple
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    BigInteger,
    Float,
    LargeBinary,
    Row,
    String,
    bindparam,
    delete,
    func,
    select,
    text,
)
from sqlalchemy import update as sql_update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from protos.cairn.v1.hooks_pb2 import PublishEventRequest
from services.common.batching import Batches
from services.common.db import DriverStatement, DriverStatements, GroupWriter, Sessions
from services.common.errors import Aborted, DomainError
from services.common.hook_events import add_event
from services.updates.domain import (
    ENDED,
    NOT_STARTED,
    RUNNING,
    SUCCEEDED,
    EngineEvent,
    FinalState,
    LeaseRef,
    NewUpdate,
    StackPath,
    StackState,
    UpdateRecord,
    end_refusal,
    holder_refusal,
    journal_refusal,
    lease_refusal,
    start_refusal,
    update_not_found,
)
from services.updates.models import (
    HOOK_OUTBOX,
    Base,
    CheckpointDeltaRow,
    EngineEventRow,
    JournalEntryRow,
    LogEntryRow,
    StackReferenceRow,
    StackStateRow,
    StackVersionRow,
    UpdateRow,
    WorkingCheckpointRow,
)

UPDATES = Base.metadata.tables[UpdateRow.__tablename__]
JOURNAL_ENTRIES = Base.metadata.tables[JournalEntryRow.__tablename__]
ENGINE_EVENTS = Base.metadata.tables[EngineEventRow.__tablename__]
# What `update_record` reads (not the program, which may be large).
_RECORD_COLUMNS = tuple(column for column in UPDATES.c if column.key != "program")
_THIS_UPDATE = UPDATES.c.id == bindparam("update_id")
# Appends lock the update's row with an UPDATE that returns it for the fencing check.
# Counts appended journal entries.
_COUNT_JOURNAL = (
    sql_update(UPDATES)
    .where(_THIS_UPDATE)
    .values(journal_entry_count=UPDATES.c.journal_entry_count + bindparam("count"))
    .returning(*_RECORD_COLUMNS)
)
# Engine events: a batch's resource changes, or no change at all (the row lock only).
_SET_RESOURCE_CHANGES = (
    sql_update(UPDATES)
    .where(_THIS_UPDATE)
    .values(resource_changes=bindparam("resource_changes", type_=UPDATES.c.resource_changes.type))
    .returning(*_RECORD_COLUMNS)
)
_LOCK_UPDATE = (
    sql_update(UPDATES)
    .where(_THIS_UPDATE)
    .values(resource_changes=UPDATES.c.resource_changes)
    .returning(*_RECORD_COLUMNS)
)


class _GroupedStatements:
    """The journal and event appends as SQLite SQL for a `GroupWriter`'s connection: the same
    Core statements, compiled once with named parameters, and the column types' own
    conversions (booleans, JSON) applied to what goes in and comes back."""

    def __init__(self) -> None:
        dialect = sqlite.dialect(paramstyle="named")
        self.count_journal = str(_COUNT_JOURNAL.compile(dialect=dialect))
        self.set_resource_changes = str(_SET_RESOURCE_CHANGES.compile(dialect=dialect))
        self.lock_update = str(_LOCK_UPDATE.compile(dialect=dialect))
        self.insert_journal = str(
            sqlite.insert(JOURNAL_ENTRIES)
            .on_conflict_do_nothing(index_elements=["update_id", "sequence_id"])
            .compile(dialect=dialect, column_keys=["update_id", "sequence_id", "data"])
        )
        self.insert_events = str(
            sqlite.insert(ENGINE_EVENTS)
            .on_conflict_do_nothing(index_elements=["update_id", "sequence"])
            .compile(
                dialect=dialect,
                column_keys=["update_id", "sequence", "timestamp", "kind", "data"],
            )
        )
        keys = [column.key for column in _RECORD_COLUMNS]
        self._row: Any = namedtuple("_UpdateColumns", keys)  # type: ignore[misc]
        self._processors = [
            column.type.dialect_impl(dialect).result_processor(dialect, None)
            for column in _RECORD_COLUMNS
        ]
        changes = UPDATES.c.resource_changes.type.dialect_impl(dialect)
        self._changes = changes.bind_processor(dialect)
        for column in (*JOURNAL_ENTRIES.c, *ENGINE_EVENTS.c):
            # The inserted values go in as they are: no column of them converts.
            assert column.type.dialect_impl(dialect).bind_processor(dialect) is None, column

    def record(self, row: tuple[Any, ...] | None) -> UpdateRecord | None:
        if row is None:
            return None
        values = [
            value if process is None or value is None else process(value)
            for process, value in zip(self._processors, row, strict=True)
        ]
        return update_record(self._row(*values))

    def resource_changes(self, changes: Mapping[str, int]) -> Any:
        value = dict(changes)
        return value if self._changes is None else self._changes(value)


_GROUPED = _GroupedStatements()

_BIGINTS = postgresql.ARRAY(BigInteger)
_BLOBS = postgresql.ARRAY(LargeBinary)
_STRINGS = postgresql.ARRAY(String)
_FLOATS = postgresql.ARRAY(Float)
# `claim_refusal` and `lease_is_valid` of `domain` as conditions on the update row, for the
# fenced appends in one statement (PostgreSQL); `_lease_params` gives their values.
_LEASE_IS_CURRENT = (
    _THIS_UPDATE,
    UPDATES.c.stack_organization == bindparam("organization"),
    UPDATES.c.stack_project == bindparam("project"),
    UPDATES.c.stack_name == bindparam("stack"),
    UPDATES.c.lease_token_hash == bindparam("token_hash"),
    UPDATES.c.status == RUNNING,
    UPDATES.c.lease_expires_at > bindparam("now", type_=UPDATES.c.lease_expires_at.type),
)


def _lease_params(lease: LeaseRef, now: float) -> dict[str, Any]:
    path = lease.stack_path
    return {
        "update_id": lease.update_id,
        "organization": path.organization,
        "project": path.project,
        "stack": path.stack,
        "token_hash": lease.token_hash,
        "now": now,
    }


def _fenced_insert(fence: Any, insert: Any) -> Any:
    """`fence` (an UPDATE … RETURNING id, as a CTE) and `insert` (rows selected from it) as
    one statement that says how many update rows the fence matched (0 or 1)."""
    return select(func.count()).select_from(fence).add_cte(insert.cte("inserted"))


def _journal_at_once() -> Any:
    """The journal's fenced append: count the entries on the row (a running journal update
    that is no preview, under a current lease) and insert them, skipping stored sequences."""
    fence = (
        sql_update(UPDATES)
        .where(
            *_LEASE_IS_CURRENT,
            UPDATES.c.journal_version == 1,
            UPDATES.c.is_dry_run.is_(False),
            UPDATES.c.kind != "preview",
        )
        .values(journal_entry_count=UPDATES.c.journal_entry_count + bindparam("count"))
        .returning(UPDATES.c.id)
        .cte("fence")
    )
    rows = select(
        fence.c.id,
        func.unnest(bindparam("sequences", type_=_BIGINTS)),
        func.unnest(bindparam("datas", type_=_BLOBS)),
    )
    insert = (
        postgresql.insert(JOURNAL_ENTRIES)
        .from_select(["update_id", "sequence_id", "data"], rows)
        .on_conflict_do_nothing(index_elements=["update_id", "sequence_id"])
    )
    return _fenced_insert(fence, insert)


def _events_at_once(*, with_changes: bool) -> Any:
    """The engine events' fenced append: lock the row under a current lease (setting the
    batch's resource changes when it has them) and insert the events, skipping stored ones."""
    fence = sql_update(UPDATES).where(*_LEASE_IS_CURRENT)
    if with_changes:
        changes = bindparam("resource_changes", type_=UPDATES.c.resource_changes.type)
        fence = fence.values(resource_changes=changes)
    else:
        fence = fence.values(id=UPDATES.c.id)  # no change: the update only locks the row
    fenced = fence.returning(UPDATES.c.id).cte("fence")
    rows = select(
        fenced.c.id,
        func.unnest(bindparam("sequences", type_=_BIGINTS)),
        func.unnest(bindparam("timestamps", type_=_BIGINTS)),
        func.unnest(bindparam("kinds", type_=_STRINGS)),
        func.unnest(bindparam("datas", type_=_BLOBS)),
    )
    insert = (
        postgresql.insert(ENGINE_EVENTS)
        .from_select(["update_id", "sequence", "timestamp", "kind", "data"], rows)
        .on_conflict_do_nothing(index_elements=["update_id", "sequence"])
    )
    return _fenced_insert(fenced, insert)


def _journals_at_once() -> Any:
    """Several journal appends (of one or more updates) in one statement: each append (an
    item, numbered) checked as `_journal_at_once` checks it, the update rows of those that
    pass locked in id order (two such statements never wait for each other crosswise), their
    counts added and their entries inserted. It returns the numbers of the appends that
    passed."""
    asked: dict[str, tuple[str, postgresql.ARRAY[Any]]] = {
        "items": ("item", _BIGINTS),
        "update_ids": ("update_id", _STRINGS),
        "organizations": ("organization", _STRINGS),
        "projects": ("project", _STRINGS),
        "stacks": ("stack", _STRINGS),
        "token_hashes": ("token_hash", _STRINGS),
        "nows": ("now", _FLOATS),
        "counts": ("count", _BIGINTS),
    }
    entries: dict[str, tuple[str, postgresql.ARRAY[Any]]] = {
        "entry_items": ("item", _BIGINTS),
        "entry_sequences": ("sequence_id", _BIGINTS),
        "entry_datas": ("data", _BLOBS),
    }

    def unnest(arrays: dict[str, tuple[str, postgresql.ARRAY[Any]]], alias: str) -> str:
        return "unnest({}) AS {}({})".format(
            ", ".join(f":{name}" for name in arrays),
            alias,
            ", ".join(column for column, _ in arrays.values()),
        )

    updates, journal = UPDATES.name, JOURNAL_ENTRIES.name
    statement = text(
        f"""
        WITH asked AS (
            SELECT * FROM {unnest(asked, "a")}
        ), held AS (
            SELECT a.item, u.id AS update_id
            FROM {updates} AS u JOIN asked AS a ON u.id = a.update_id
            WHERE u.stack_organization = a.organization
              AND u.stack_project = a.project
              AND u.stack_name = a.stack
              AND u.lease_token_hash = a.token_hash
              AND u.status = :running
              AND u.lease_expires_at > a.now
              AND u.journal_version = 1
              AND u.is_dry_run IS false
              AND u.kind <> 'preview'
            ORDER BY u.id
            FOR UPDATE OF u
        ), counted AS (
            UPDATE {updates} AS u SET journal_entry_count = u.journal_entry_count + a.count
            FROM (
                SELECT asked.update_id, sum(asked.count) AS count
                FROM asked JOIN held ON held.item = asked.item
                GROUP BY asked.update_id
            ) AS a
            WHERE u.id = a.update_id
        ), inserted AS (
            INSERT INTO {journal} (update_id, sequence_id, data)
            SELECT held.update_id, e.sequence_id, e.data
            FROM {unnest(entries, "e")} JOIN held ON held.item = e.item
            ON CONFLICT (update_id, sequence_id) DO NOTHING
        )
        SELECT item FROM held
        """
    )
    return statement.bindparams(
        bindparam("running", RUNNING),
        *(bindparam(name, type_=kind) for name, (_, kind) in (asked | entries).items()),
    )


@dataclass(frozen=True)
class _JournalAppend:
    lease: LeaseRef
    now: float
    entries: Sequence[tuple[int, bytes]]


# Journal appends taken together in one statement at most (each a few entries, as the CLI
# sends them one step at a time).
JOURNAL_APPENDS_PER_STATEMENT = 32


class _AtOnce:
    """The fenced appends in one statement, compiled once to the driver's SQL."""

    def __init__(self, statements: DriverStatements) -> None:
        self.journal: DriverStatement = statements.compile(_journal_at_once())
        self.journals: DriverStatement = statements.compile(_journals_at_once())
        self.events: DriverStatement = statements.compile(_events_at_once(with_changes=False))
        self.events_with_changes: DriverStatement = statements.compile(
            _events_at_once(with_changes=True)
        )


@dataclass(frozen=True)
class Blocked:
    """A start or import found the stack held by an update whose lease is gone."""

    holder: UpdateRecord


@dataclass(frozen=True)
class Started:
    version: int
    journal_version: int


@dataclass(frozen=True)
class StoredVersion:
    version: int
    # The compressed text when the row still holds it (before `cairn migrate`), else b"".
    text_compressed: bytes
    size: int
    sha256: str
    resource_count: int
    # The blob holding the compressed text (None: in `text_compressed`, or pruned).
    blob_digest: str | None = None
    pruned_at: float | None = None


@dataclass(frozen=True)
class StoredDelta:
    sequence: int
    edits_compressed: bytes
    sha256: str


@dataclass(frozen=True)
class StoredWorking:
    sequence: int
    text_compressed: bytes
    sha256: str


# The webhook event of an update's start or end (None: no event), from the update as the
# transaction leaves it and the result (started, succeeded, failed, cancelled).
Announce = Callable[[UpdateRecord, str], PublishEventRequest | None]


async def _announce(
    session: AsyncSession, announce: Announce | None, row: UpdateRow, result: str
) -> UpdateRecord:
    record = update_record(row)
    event = None if announce is None else announce(record, result)
    if event is not None:
        await add_event(session, HOOK_OUTBOX, event)
    return record


class UpdateStore:
    """Updates, their checkpoints, journal and events, and the per-stack lock row."""

    def __init__(
        self,
        sessions: Sessions,
        dialect: str,
        reads: Sessions | None = None,
        statements: DriverStatements | None = None,
        group: GroupWriter | None = None,
    ) -> None:
        self._sessions = sessions
        # SQLite: journal and event appends committed in groups (`GroupWriter`).
        self._group = group if dialect == "sqlite" else None
        # Read-only transactions (on SQLite they neither take nor wait for the write lock).
        self._reads = reads or sessions
        # Statements that commit on their own (PostgreSQL): a fenced append in one round trip,
        # run by the driver itself.
        self._statements = statements if dialect == "postgresql" else None
        if self._statements is not None:
            self._at_once = _AtOnce(self._statements)
        # PostgreSQL: the journal appends that arrive while one is being written go together
        # in the next statement (one round trip and one commit for all of them); its counts
        # of runs and appends are for tests and metrics.
        self.journal_appends: Batches[_JournalAppend, bool] = Batches(
            self._append_journals, max_items=JOURNAL_APPENDS_PER_STATEMENT
        )
        self._dialect = dialect
        # The journal write's statements, built once: SQLAlchemy then reuses their compiled
        # form instead of building and keying a new statement per write.
        insert: Any = postgresql.insert if dialect == "postgresql" else sqlite.insert
        self._insert_journal = insert(JOURNAL_ENTRIES).on_conflict_do_nothing(
            index_elements=["update_id", "sequence_id"]
        )
        self._insert_events = insert(ENGINE_EVENTS).on_conflict_do_nothing(
            index_elements=["update_id", "sequence"]
        )

    # -- creating, starting, ending --------------------------------------------------------

    async def create(self, new: NewUpdate, now: float) -> UpdateRecord:
        row = _new_row(
            stack_id=new.stack_id,
            kind=new.kind,
            is_dry_run=new.is_dry_run,
            status=NOT_STARTED,
            program=new.program,
            config=new.config,
            message=new.message,
            environment=dict(new.environment),
            requested_by=new.requested_by,
            created_at=now,
            stack_organization=new.stack_path.organization,
            stack_project=new.stack_path.project,
            stack_name=new.stack_path.stack,
            requested_by_token=new.requested_by_token,
        )
        async with self._sessions.begin() as session:
            session.add(row)
        return update_record(row)

    async def get(self, stack_id: str, update_id: str) -> UpdateRecord:
        """An update of this stack; NotFound for unknown ids and other stacks' updates."""
        async with self._reads.begin() as session:
            row = await session.get(UpdateRow, update_id)
            if row is None or row.stack_id != stack_id:
                raise update_not_found()
            return update_record(row)

    async def start(
        self,
        stack_id: str,
        update_id: str,
        *,
        token_hash: str,
        expires_at: float,
        journal_version: int,
        now: float,
        announce: Announce | None = None,
    ) -> Started | Blocked:
        """Take the stack (non-previews) and start the update, or say who blocks it; the
        webhook event `announce` gives is written in the same transaction."""
        async with self._sessions.begin() as session:
            state = await self._lock_stack(session, stack_id)
            row = await _update_row(session, update_id, for_update=True)
            if row is None or row.stack_id != stack_id:
                raise update_not_found()
            _refuse(start_refusal(row.status))
            is_preview = row.is_dry_run or row.kind == "preview"
            if is_preview:
                version = base = state.version
            else:
                blocked = await _holder(session, state, now)
                if blocked is not None:
                    return blocked
                base = state.version
                version = base + 1
                state.version = version
                state.active_update_id = row.id
            row.status = RUNNING
            row.started_at = now
            row.version = version
            row.base_version = base
            row.lease_token_hash = token_hash
            row.lease_expires_at = expires_at
            row.journal_version = 0 if is_preview else journal_version
            await _announce(session, announce, row, "started")
        return Started(version=version, journal_version=row.journal_version)

    async def end(
        self,
        update_id: str,
        *,
        status: str,
        now: float,
        lease: LeaseRef | None,
        announce: Announce | None = None,
    ) -> UpdateRecord:
        """Phase one of ending: fence, then set the final status and revoke the lease.

        With a lease this is `complete` (idempotent for the same status); without one it is
        `cancel`, which works whatever the lease says.
        """
        async with self._sessions.begin() as session:
            row = await _update_row(session, update_id, for_update=True)
            if row is None:
                raise update_not_found()
            record = update_record(row)
            _refuse(end_refusal(record, status, lease, now))
            if row.status in ENDED:
                return record  # a repeated complete
            _close(row, status, now)
            return await _announce(session, announce, row, status)

    async def expire(
        self, update_id: str, now: float, announce: Announce | None = None
    ) -> UpdateRecord:
        """Phase one for an abandoned update: a running update whose lease ran out fails."""
        async with self._sessions.begin() as session:
            row = await _update_row(session, update_id, for_update=True)
            if row is None:
                raise update_not_found()
            record = update_record(row)
            if row.status == RUNNING:
                _refuse(holder_refusal(record, now))
                _close(row, "failed", now)
                return await _announce(session, announce, row, "failed")
            return update_record(row)

    async def finalise(self, update: UpdateRecord, final: FinalState | None, now: float) -> None:
        """Phase two: store the version's deployment, release the stack, drop working data."""
        async with self._sessions.begin() as session:
            state = await self._lock_stack(session, update.stack_id)
            row = await _update_row(session, update.id, for_update=True)
            if row is None or row.is_finalised:
                return
            if final is not None and not (row.is_dry_run or row.kind == "preview"):
                await self._insert_ignore(
                    session,
                    StackVersionRow,
                    [
                        {
                            "stack_id": row.stack_id,
                            "version": row.version,
                            "update_id": row.id,
                            "data": _row_text(final),
                            "size": final.size,
                            "sha256": final.sha256,
                            "resource_count": final.resource_count,
                            "created_at": now,
                            "blob_digest": final.blob_digest,
                        }
                    ],
                    ["stack_id", "version"],
                )
                state.resource_count = final.resource_count
                state.last_update_at = row.ended_at or now
                row.resource_count = final.resource_count
                await _replace_references(session, row.stack_id, row.version, final.references)
            if state.active_update_id == row.id:
                state.active_update_id = None
            row.is_finalised = True
            await _drop_working_data(session, row.id)

    async def record_finished(
        self,
        stack_id: str,
        *,
        kind: str,
        requested_by: str,
        final: FinalState,
        now: float,
        expected_version: int | None = None,
        stack_path: StackPath | None = None,
    ) -> str | Blocked:
        """Record an import or rename as a finished update with the next version, at once.

        With `expected_version`, refuse (Aborted) if the stack moved on since `final` was read.
        """
        async with self._sessions.begin() as session:
            state = await self._lock_stack(session, stack_id)
            blocked = await _holder(session, state, now)
            if blocked is not None:
                return blocked
            if expected_version is not None and state.version != expected_version:
                raise Aborted("Conflict: the stack changed meanwhile; try again")
            version = state.version + 1
            row = _new_row(
                stack_id=stack_id,
                kind=kind,
                status=SUCCEEDED,
                is_finalised=True,
                requested_by=requested_by,
                version=version,
                base_version=state.version,
                created_at=now,
                started_at=now,
                ended_at=now,
                resource_count=final.resource_count,
                **_path_columns(stack_path or StackPath()),
            )
            session.add(row)
            session.add(
                StackVersionRow(
                    stack_id=stack_id,
                    version=version,
                    update_id=row.id,
                    data=_row_text(final),
                    size=final.size,
                    sha256=final.sha256,
                    resource_count=final.resource_count,
                    created_at=now,
                    blob_digest=final.blob_digest,
                )
            )
            state.version = version
            state.last_update_at = now
            state.resource_count = final.resource_count
            await _replace_references(session, stack_id, version, final.references)
            return row.id

    # -- fenced writes ---------------------------------------------------------------------

    @asynccontextmanager
    async def fenced(self, lease: LeaseRef, now: float) -> AsyncIterator[FencedUpdate]:
        """A transaction holding the update's row, entered only with a current lease of that
        update under the stack path the call named (checked on the row read here)."""
        async with self._sessions.begin() as session:
            row = await _update_row(session, lease.update_id, for_update=True)
            record = None if row is None else update_record(row)
            _refuse(lease_refusal(record, lease, now))
            assert row is not None
            yield FencedUpdate(self, session, row)

    async def append_journal(
        self, lease: LeaseRef, now: float, entries: Sequence[tuple[int, bytes]]
    ) -> None:
        """Append (sequence, compressed entry) pairs, skipping sequences already stored, in
        one transaction that counts them on the update's row and checks `journal_refusal` on
        it: the count's UPDATE takes the row lock the fencing check needs and returns the row,
        so the write needs no ORM row and no separate read (the journal is the CLI's
        per-step write, its hottest path). On SQLite with a group writer, the same statements
        run in the writer's next group, in a savepoint of their own."""
        if self._group is not None:
            await self._group.write(_grouped_journal(lease, now, entries))
            return
        async with self._sessions.begin() as session:
            connection = await session.connection()
            counted = await connection.execute(
                _COUNT_JOURNAL, {"update_id": lease.update_id, "count": len(entries)}
            )
            row = counted.first()
            _refuse(journal_refusal(None if row is None else update_record(row), lease, now))
            values = [
                {"update_id": lease.update_id, "sequence_id": sequence, "data": data}
                for sequence, data in entries
            ]
            if values:
                await connection.execute(self._insert_journal, values)

    async def append_events(
        self,
        lease: LeaseRef,
        now: float,
        events: Sequence[EngineEvent],
        resource_changes: Mapping[str, int] | None,
    ) -> None:
        """Store engine events by sequence, skipping those already stored, and the batch's
        resource changes when it has them, fenced like `append_journal` (`lease_refusal` on
        the row the locking UPDATE returns); grouped on SQLite like `append_journal`."""
        if self._group is not None:
            await self._group.write(_grouped_events(lease, now, events, resource_changes))
            return
        async with self._sessions.begin() as session:
            connection = await session.connection()
            if resource_changes is None:
                locked = await connection.execute(_LOCK_UPDATE, {"update_id": lease.update_id})
            else:
                locked = await connection.execute(
                    _SET_RESOURCE_CHANGES,
                    {"update_id": lease.update_id, "resource_changes": dict(resource_changes)},
                )
            row = locked.first()
            _refuse(lease_refusal(None if row is None else update_record(row), lease, now))
            values = [
                {
                    "update_id": lease.update_id,
                    "sequence": event.sequence,
                    "timestamp": event.timestamp,
                    "kind": event.kind,
                    "data": event.data,
                }
                for event in events
            ]
            if values:
                await connection.execute(self._insert_events, values)

    # -- fenced appends in one statement (PostgreSQL) --------------------------------------

    async def append_journal_at_once(
        self, lease: LeaseRef, now: float, entries: Sequence[tuple[int, bytes]]
    ) -> bool:
        """Store journal entries in one statement that checks the lease on the update row it
        locks (the SQL form of `lease_refusal` being None, for a running journal update that
        is no preview). False, with nothing written, when that check fails or there is no
        such statement here: the caller then takes `fenced`, which says why. Appends that
        arrive together share a statement; each is checked on its own."""
        if self._statements is None:
            return False
        return await self.journal_appends.submit(_JournalAppend(lease, now, entries))

    async def _append_journals(self, appends: list[_JournalAppend]) -> list[bool]:
        assert self._statements is not None
        if len(appends) == 1:
            (append,) = appends
            matched = await self._statements.value(
                self._at_once.journal,
                {
                    **_lease_params(append.lease, append.now),
                    "count": len(append.entries),
                    "sequences": [sequence for sequence, _ in append.entries],
                    "datas": [data for _, data in append.entries],
                },
            )
            return [bool(matched)]
        paths = [append.lease.stack_path for append in appends]
        passed = await self._statements.column(
            self._at_once.journals,
            {
                "items": list(range(len(appends))),
                "update_ids": [append.lease.update_id for append in appends],
                "organizations": [path.organization for path in paths],
                "projects": [path.project for path in paths],
                "stacks": [path.stack for path in paths],
                "token_hashes": [append.lease.token_hash for append in appends],
                "nows": [append.now for append in appends],
                "counts": [len(append.entries) for append in appends],
                "entry_items": [
                    item for item, append in enumerate(appends) for _ in append.entries
                ],
                "entry_sequences": [
                    sequence for append in appends for sequence, _ in append.entries
                ],
                "entry_datas": [data for append in appends for _, data in append.entries],
            },
        )
        held = set(passed)
        return [item in held for item in range(len(appends))]

    async def add_events_at_once(
        self,
        lease: LeaseRef,
        now: float,
        events: Sequence[EngineEvent],
        resource_changes: Mapping[str, int] | None,
    ) -> bool:
        """Store engine events in one statement that checks the lease on the update row it
        locks; False, with nothing written, when it fails (see `append_journal_at_once`)."""
        if self._statements is None:
            return False
        params: dict[str, Any] = {
            **_lease_params(lease, now),
            "sequences": [event.sequence for event in events],
            "timestamps": [event.timestamp for event in events],
            "kinds": [event.kind for event in events],
            "datas": [event.data for event in events],
        }
        if resource_changes is None:
            statement = self._at_once.events
        else:
            statement = self._at_once.events_with_changes
            params["resource_changes"] = dict(resource_changes)
        return bool(await self._statements.value(statement, params))

    # -- reads -----------------------------------------------------------------------------

    async def working(self, update_id: str) -> tuple[StoredWorking | None, list[StoredDelta]]:
        async with self._reads.begin() as session:
            return await _working(session, update_id, after=None)

    async def journal(self, update_id: str) -> list[bytes]:
        async with self._reads.begin() as session:
            rows = await session.execute(
                select(JournalEntryRow.data)
                .where(JournalEntryRow.update_id == update_id)
                .order_by(JournalEntryRow.sequence_id)
            )
            return [data for (data,) in rows]

    async def version(self, stack_id: str, version: int) -> StoredVersion | None:
        """A stored version; `0` means the newest one."""
        statement = select(StackVersionRow).where(StackVersionRow.stack_id == stack_id)
        if version:
            statement = statement.where(StackVersionRow.version == version)
        else:
            statement = statement.order_by(StackVersionRow.version.desc()).limit(1)
        async with self._reads.begin() as session:
            row = await session.scalar(statement)
            if row is None:
                return None
            return StoredVersion(
                row.version,
                row.data,
                row.size,
                row.sha256,
                row.resource_count,
                row.blob_digest,
                row.pruned_at,
            )

    async def stack_states(self, stack_ids: Sequence[str]) -> list[StackState]:
        if not stack_ids:
            return []
        async with self._reads.begin() as session:
            rows = {
                row.stack_id: row
                for row in await session.scalars(
                    select(StackStateRow).where(StackStateRow.stack_id.in_(list(stack_ids)))
                )
            }
            active_ids = [r.active_update_id for r in rows.values() if r.active_update_id]
            active = {}
            if active_ids:
                active = {
                    row.id: update_record(row)
                    for row in await session.scalars(
                        select(UpdateRow).where(UpdateRow.id.in_(active_ids))
                    )
                }
        states = []
        for stack_id in stack_ids:
            found = rows.get(stack_id)
            if found is None:
                states.append(StackState(stack_id=stack_id))
                continue
            states.append(
                StackState(
                    stack_id=stack_id,
                    version=found.version,
                    active_update=active.get(found.active_update_id or ""),
                    last_update_at=found.last_update_at,
                    resource_count=found.resource_count,
                )
            )
        return states

    async def purge(self, stack_id: str) -> None:
        """Forget everything kept for a stack (child rows cascade from the updates)."""
        async with self._sessions.begin() as session:
            update_ids = select(UpdateRow.id).where(UpdateRow.stack_id == stack_id)
            for model in (
                WorkingCheckpointRow,
                CheckpointDeltaRow,
                JournalEntryRow,
                EngineEventRow,
                LogEntryRow,
            ):
                await session.execute(delete(model).where(model.update_id.in_(update_ids)))
            await session.execute(delete(UpdateRow).where(UpdateRow.stack_id == stack_id))
            await session.execute(
                delete(StackVersionRow).where(StackVersionRow.stack_id == stack_id)
            )
            await session.execute(
                delete(StackReferenceRow).where(StackReferenceRow.stack_id == stack_id)
            )
            await session.execute(delete(StackStateRow).where(StackStateRow.stack_id == stack_id))

    # -- helpers ---------------------------------------------------------------------------

    async def _lock_stack(self, session: AsyncSession, stack_id: str) -> StackStateRow:
        """The stack's lock row, created on first use and held until the transaction ends."""
        await self._insert_ignore(
            session,
            StackStateRow,
            [{"stack_id": stack_id, "version": 0, "resource_count": 0}],
            ["stack_id"],
        )
        row = await session.scalar(
            select(StackStateRow).where(StackStateRow.stack_id == stack_id).with_for_update()
        )
        assert row is not None
        return row

    async def _insert_ignore(
        self,
        session: AsyncSession,
        model: type[Any],
        rows: list[dict[str, Any]],
        keys: list[str],
    ) -> None:
        """Insert rows, skipping those whose key exists (retries and duplicates)."""
        if not rows:
            return
        dialect: Any = postgresql if self._dialect == "postgresql" else sqlite
        statement = dialect.insert(model).on_conflict_do_nothing(index_elements=keys)
        await session.execute(statement, rows)


class FencedUpdate:
    """Writes allowed while the transaction in `UpdateStore.fenced` holds the update row."""

    def __init__(self, store: UpdateStore, session: AsyncSession, row: UpdateRow) -> None:
        self._store = store
        self._session = session
        self._row = row

    @property
    def record(self) -> UpdateRecord:
        return update_record(self._row)

    def is_due_for_materialising(self, text_size: int, every: int) -> bool:
        """Fold deltas into a stored text once they are many or add up to the text's size."""
        row = self._row
        return row.pending_delta_count >= every or row.pending_delta_bytes >= text_size

    def renew(self, expires_at: float) -> None:
        self._row.lease_expires_at = max(self._row.lease_expires_at or 0.0, expires_at)

    async def working_after(
        self, sequence: int | None
    ) -> tuple[StoredWorking | None, list[StoredDelta]]:
        """The stored text and deltas, or only the deltas after `sequence` when that suffices."""
        return await _working(
            self._session,
            self._row.id,
            after=sequence,
            materialised=self._row.materialised_sequence,
        )

    async def put_working(
        self, sequence: int, text_compressed: bytes, size: int, sha256: str
    ) -> None:
        """Store a whole text as the update's current state; older deltas become useless."""
        await self._session.execute(
            delete(WorkingCheckpointRow).where(WorkingCheckpointRow.update_id == self._row.id)
        )
        await self._session.execute(
            delete(CheckpointDeltaRow).where(CheckpointDeltaRow.update_id == self._row.id)
        )
        self._session.add(
            WorkingCheckpointRow(
                update_id=self._row.id,
                sequence=sequence,
                data=text_compressed,
                size=size,
                sha256=sha256,
            )
        )
        row = self._row
        row.checkpoint_sequence = sequence
        row.checkpoint_hash = sha256
        row.materialised_sequence = sequence
        row.pending_delta_bytes = 0
        row.pending_delta_count = 0

    async def add_delta(self, sequence: int, edits_compressed: bytes, sha256: str) -> None:
        self._session.add(
            CheckpointDeltaRow(
                update_id=self._row.id, sequence=sequence, edits=edits_compressed, sha256=sha256
            )
        )
        row = self._row
        row.checkpoint_sequence = sequence
        row.checkpoint_hash = sha256
        row.pending_delta_bytes += len(edits_compressed)
        row.pending_delta_count += 1

    async def add_log_entry(self, kind: str, fields: bytes) -> None:
        last = await self._session.scalar(
            select(func.max(LogEntryRow.index)).where(LogEntryRow.update_id == self._row.id)
        )
        self._session.add(
            LogEntryRow(
                update_id=self._row.id,
                index=0 if last is None else int(last) + 1,
                kind=kind,
                fields=fields,
            )
        )


def _path_columns(path: StackPath) -> dict[str, str]:
    return {
        "stack_organization": path.organization,
        "stack_project": path.project,
        "stack_name": path.stack,
    }


def _row_text(final: FinalState) -> bytes:
    """What a version row holds itself: nothing once the text is in the blob store."""
    return b"" if final.blob_digest else final.compressed


def _grouped_journal(
    lease: LeaseRef, now: float, entries: Sequence[tuple[int, bytes]]
) -> Callable[[sqlite3.Connection], None]:
    """`append_journal` as a group writer's write: count on the row, check, insert."""

    def write(connection: sqlite3.Connection) -> None:
        counted = connection.execute(
            _GROUPED.count_journal, {"update_id": lease.update_id, "count": len(entries)}
        )
        _refuse(journal_refusal(_GROUPED.record(counted.fetchone()), lease, now))
        counted.close()
        if entries:
            connection.executemany(
                _GROUPED.insert_journal,
                [
                    {"update_id": lease.update_id, "sequence_id": sequence, "data": data}
                    for sequence, data in entries
                ],
            )

    return write


def _grouped_events(
    lease: LeaseRef,
    now: float,
    events: Sequence[EngineEvent],
    resource_changes: Mapping[str, int] | None,
) -> Callable[[sqlite3.Connection], None]:
    """`append_events` as a group writer's write: lock (or set changes on) the row, check,
    insert."""

    def write(connection: sqlite3.Connection) -> None:
        if resource_changes is None:
            locked = connection.execute(_GROUPED.lock_update, {"update_id": lease.update_id})
        else:
            locked = connection.execute(
                _GROUPED.set_resource_changes,
                {
                    "update_id": lease.update_id,
                    "resource_changes": _GROUPED.resource_changes(resource_changes),
                },
            )
        _refuse(lease_refusal(_GROUPED.record(locked.fetchone()), lease, now))
        locked.close()
        if events:
            connection.executemany(
                _GROUPED.insert_events,
                [
                    {
                        "update_id": lease.update_id,
                        "sequence": event.sequence,
                        "timestamp": event.timestamp,
                        "kind": event.kind,
                        "data": event.data,
                    }
                    for event in events
                ],
            )

    return write


def _refuse(refused: DomainError | None) -> None:
    """Raise what a rule of `domain` refused, inside the transaction that read its data."""
    if refused is not None:
        raise refused


def _new_row(**values: Any) -> UpdateRow:
    """A fresh update row: an id, empty checkpoint bookkeeping, then the given values."""
    defaults: dict[str, Any] = {
        "id": uuid.uuid4().hex,
        "is_dry_run": False,
        "is_finalised": False,
        "program": b"{}",
        "config": b"{}",
        "message": "",
        "environment": {},
        "version": 0,
        "base_version": 0,
        "journal_version": 0,
        "checkpoint_sequence": 0,
        "checkpoint_hash": "",
        "materialised_sequence": 0,
        "pending_delta_bytes": 0,
        "pending_delta_count": 0,
        "journal_entry_count": 0,
        "requested_by_token": "",
    }
    return UpdateRow(**{**defaults, **values})


async def _update_row(
    session: AsyncSession, update_id: str, *, for_update: bool = False
) -> UpdateRow | None:
    statement = select(UpdateRow).where(UpdateRow.id == update_id)
    if for_update:
        statement = statement.with_for_update()
    row: UpdateRow | None = await session.scalar(statement)
    return row


async def _holder(session: AsyncSession, state: StackStateRow, now: float) -> Blocked | None:
    """Refuse (409) while another update holds a live lease; report one that must be ended."""
    if not state.active_update_id:
        return None
    holder = await session.get(UpdateRow, state.active_update_id)
    if holder is None or holder.is_finalised:
        state.active_update_id = None
        return None
    record = update_record(holder)
    _refuse(holder_refusal(record, now))
    return Blocked(record)


async def _working(
    session: AsyncSession, update_id: str, *, after: int | None, materialised: int | None = None
) -> tuple[StoredWorking | None, list[StoredDelta]]:
    working: StoredWorking | None = None
    start = after
    if after is None or materialised is None or after < materialised:
        row = await session.get(WorkingCheckpointRow, update_id)
        if row is not None:
            working = StoredWorking(row.sequence, row.data, row.sha256)
            start = row.sequence
        else:
            start = 0
    rows = await session.scalars(
        select(CheckpointDeltaRow)
        .where(
            CheckpointDeltaRow.update_id == update_id, CheckpointDeltaRow.sequence > (start or 0)
        )
        .order_by(CheckpointDeltaRow.sequence)
    )
    return working, [StoredDelta(row.sequence, row.edits, row.sha256) for row in rows]


async def _replace_references(
    session: AsyncSession, stack_id: str, version: int, names: Sequence[str] | None
) -> None:
    """Record the names a newly stored version reads (None: unchanged from its base)."""
    if names is None:
        await session.execute(
            sql_update(StackReferenceRow)
            .where(StackReferenceRow.stack_id == stack_id)
            .values(version=version)
        )
        return
    await session.execute(delete(StackReferenceRow).where(StackReferenceRow.stack_id == stack_id))
    session.add_all(
        StackReferenceRow(stack_id=stack_id, name=name, version=version) for name in names
    )


async def _drop_working_data(session: AsyncSession, update_id: str) -> None:
    for model in (WorkingCheckpointRow, CheckpointDeltaRow, JournalEntryRow):
        await session.execute(delete(model).where(model.update_id == update_id))


def _close(row: UpdateRow, status: str, now: float) -> None:
    row.status = status
    row.ended_at = now
    # The lease ends now; the token hash stays so a retried `complete` is recognised.
    row.lease_expires_at = now
    if row.is_dry_run or row.kind == "preview":
        row.is_finalised = True


def update_record(row: UpdateRow | Row[Any]) -> UpdateRecord:
    """The frozen record of an update row (an ORM row or a Core row of its columns)."""
    return UpdateRecord(
        id=row.id,
        stack_id=row.stack_id,
        kind=row.kind,
        is_dry_run=row.is_dry_run,
        status=row.status,
        is_finalised=row.is_finalised,
        config=row.config,
        message=row.message,
        environment=dict(row.environment or {}),
        requested_by=row.requested_by,
        version=row.version,
        base_version=row.base_version,
        created_at=row.created_at,
        started_at=row.started_at,
        ended_at=row.ended_at,
        lease_expires_at=row.lease_expires_at,
        lease_token_hash=row.lease_token_hash,
        journal_version=row.journal_version,
        checkpoint_sequence=row.checkpoint_sequence,
        materialised_sequence=row.materialised_sequence,
        journal_entry_count=row.journal_entry_count,
        resource_changes=dict(row.resource_changes or {}),
        resource_count=row.resource_count,
        stack_path=StackPath(row.stack_organization, row.stack_project, row.stack_name),
        requested_by_token=row.requested_by_token,
    )

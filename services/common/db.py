"""Async engine and session factories: SQLite (WAL, foreign keys, busy timeout) or PostgreSQL.

Two kinds of transaction. Writes (`session_factory`): on SQLite `BEGIN IMMEDIATE`, which takes
the file's one write lock up front, and before that a turn among this process's writers to
that file (`WriteTurns`: first come, first served, the update path's appends in a line of their
own), so concurrent writers wait in order on the event loop instead of sleeping and polling in
SQLite's busy handler (which stays the fallback against other processes). Reads
(`read_session_factory`): a deferred `BEGIN` that in WAL mode reads a snapshot and never takes
nor waits for the write lock. A read session must not write.

Hot writes of one statement pair or so (the journal and engine events of a running update) can
go through a `GroupWriter` instead: the writes that queued while the file's write lock was
busy are committed together in one transaction, each inside its own savepoint, run in one hop
to a thread that owns a connection of its own (see `GroupWriter`).
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
import weakref
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, Protocol, TypeVar

from sqlalchemy import ClauseElement, MetaData, event
from sqlalchemy.engine import ExceptionContext, make_url
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import Session
from sqlalchemy.pool import NullPool
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.util.concurrency import greenlet_spawn

from services.common.config import Settings
from services.common.errors import Unavailable
from services.common.logging import get_logger
from services.common.sqlite_driver import OneTripConnection, aiosqlite_module

log = get_logger("cairn.db")

T = TypeVar("T")

# Said to the API caller (503, with Retry-After) when the database refuses new connections.
DATABASE_BUSY = (
    "Service Unavailable: the database has no connection to spare; try again in a few seconds."
)
DATABASE_DOWN = "Service Unavailable: the database is unavailable; try again in a few seconds."
# SQLSTATEs of a database that is out of connections or other resources (class 53: "too many
# clients already", a role's or database's CONNECTION LIMIT, out of memory, disk full), cannot
# take connections yet or is shutting down, or whose connection broke (class 08). asyncpg's
# errors for them are no OperationalError: SQLAlchemy wraps them in a bare DBAPIError.
_BUSY_SQLSTATE_CLASSES = ("53",)
_DOWN_SQLSTATE_CLASSES = ("08",)
_DOWN_SQLSTATES = frozenset({"57P01", "57P02", "57P03"})
# The execution option that marks a read-only engine (a deferred BEGIN on SQLite).
READ_ONLY_OPTION = "cairn_read_only"
# A pooled PostgreSQL connection unused for this long is pinged (one round trip) before it is
# handed out; one used more recently is not, unless the server has closed it (seen without a
# round trip). Pinging every checkout cost three round trips (BEGIN, an empty query,
# ROLLBACK) in front of every transaction and statement.
PING_AFTER_IDLE_SECONDS = 5.0
_RETURNED_AT = "cairn_returned_at"
# WAL pages after which a commit checkpoints the log back into the database file (SQLite's
# default, said explicitly): large enough that checkpoints are rare, small enough that the log
# stays a few MB and reads do not walk a long WAL index.
WAL_AUTOCHECKPOINT_PAGES = 1000

NAMING_CONVENTION: dict[str, str] = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def new_metadata() -> MetaData:
    """Each service gets its own MetaData (and own migration history) with shared naming."""
    return MetaData(naming_convention=NAMING_CONVENTION)


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


class Sessions(Protocol):
    """What stores open transactions with: `async with sessions.begin() as session`."""

    def begin(self) -> AbstractAsyncContextManager[AsyncSession]: ...

    def __call__(self) -> AsyncSession: ...


class WriteTurns:
    """Turns at one SQLite file's write lock: two FIFO lines, taken alternately.

    The update path's appends (a running update's journal and engine events, committed in
    groups) wait in the `update_path` line; every other write transaction (creating a stack or
    an update, starting and completing one, audit records, the outbox...) in the other. While
    both lines have waiters they alternate: a journal write waits for at most one other
    transaction, and an other transaction for at most one group of appends. Within a line the
    order is arrival. (One plain FIFO line made every `pulumi up` in flight wait behind all the
    updates that were being created, started and completed at that moment.)
    """

    def __init__(self) -> None:
        self._held = False
        self._lines: dict[bool, deque[asyncio.Future[None]]] = {True: deque(), False: deque()}
        self._last_was_update_path = False

    async def acquire(self, *, update_path: bool) -> None:
        if not self._held and not self._lines[True] and not self._lines[False]:
            self._held = True
            self._last_was_update_path = update_path
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        line = self._lines[update_path]
        line.append(waiter)
        try:
            await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled():
                # Handed the turn just as its waiter gave up: pass it on.
                self.release()
            elif waiter in line:  # (a release may have dropped it already)
                line.remove(waiter)
            raise

    def release(self) -> None:
        order = (False, True) if self._last_was_update_path else (True, False)
        for update_path in order:
            line = self._lines[update_path]
            while line:
                waiter = line.popleft()
                if not waiter.done():
                    self._last_was_update_path = update_path
                    waiter.set_result(None)
                    return
        self._held = False


class WriterQueue:
    """The writers of one SQLite file in this process, served one at a time (`WriteTurns`).

    One set of turns per file and event loop: every engine of the embedded topology (one per
    service, all on the same file) queues for the same lock. Waiting longer than the database
    timeout is answered as a busy database (503), as SQLite's own busy timeout would be.
    """

    _turns: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, WriteTurns]] = (
        weakref.WeakKeyDictionary()
    )

    def __init__(self, database: str, timeout_seconds: float) -> None:
        self.database = database
        self.timeout_seconds = timeout_seconds

    def _file_turns(self) -> WriteTurns:
        by_file = self._turns.setdefault(asyncio.get_running_loop(), {})
        turns = by_file.get(self.database)
        if turns is None:
            turns = by_file[self.database] = WriteTurns()
        return turns

    @asynccontextmanager
    async def turn(self, *, update_path: bool = False) -> AsyncIterator[None]:
        turns = self._file_turns()
        try:
            async with asyncio.timeout(self.timeout_seconds):
                await turns.acquire(update_path=update_path)
        except TimeoutError:
            log.warning("database_writer_queue_timeout", timeout_seconds=self.timeout_seconds)
            raise Unavailable(DATABASE_BUSY) from None
        try:
            yield
        finally:
            turns.release()


class QueuedSessions:
    """Write transactions that take their turn in a `WriterQueue` before they begin and give
    it up only once they have committed (or rolled back) and closed."""

    def __init__(self, sessions: Sessions, queue: WriterQueue) -> None:
        self._sessions = sessions
        self._queue = queue

    def __call__(self) -> AsyncSession:
        # A session used without begin() autobegins unqueued: BEGIN IMMEDIATE and SQLite's
        # busy handler still serialise it.
        return self._sessions()

    @asynccontextmanager
    async def begin(self) -> AsyncIterator[AsyncSession]:
        async with self._queue.turn(), self._sessions.begin() as session:
            yield session


# Writes committed in one group at most: a bound on how long the first of them waits for the
# last (each is a few statements) and on the size of one transaction.
GROUP_MAX_WRITES = 64
_SAVEPOINT = "cairn_group_write"


class GroupWriter:
    """Group commit for SQLite: writes that arrive while the file's write lock is busy are
    committed together, in one transaction and one WAL append.

    A write is a function of a `sqlite3.Connection` that runs its statements (fencing check
    included) and returns a value or raises. Groups take their turn in the file's
    `WriterQueue`, in the update path's line (`WriteTurns`); whoever holds the turn takes every
    write queued so far (up to `GROUP_MAX_WRITES`), and one hop to this writer's own thread
    runs `BEGIN IMMEDIATE`, each write inside its own savepoint, then `COMMIT`. A write that
    raises is rolled back to its savepoint, so it writes nothing and the others still commit;
    it gets its error. A caller hears its answer only after the group's COMMIT returned (if the
    commit fails, every write of the group fails with that error, and nothing of it is kept).

    The thread's connection has the engine's pragmas (WAL, `synchronous=NORMAL`, busy timeout
    against other processes). A write whose caller gave up before its group was taken is
    skipped; once taken, it commits with its group (as if the answer were lost on the way).
    """

    def __init__(
        self,
        database: str,
        queue: WriterQueue,
        *,
        busy_timeout_seconds: float = 30.0,
        max_writes: int = GROUP_MAX_WRITES,
    ) -> None:
        self.database = database
        self._queue = queue
        self._busy_timeout_seconds = busy_timeout_seconds
        self._max_writes = max_writes
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cairn-db-group")
        self._connection: sqlite3.Connection | None = None
        self._pending: list[tuple[Callable[[sqlite3.Connection], Any], asyncio.Future[Any]]] = []
        self._leader: asyncio.Task[None] | None = None
        self._closed = False
        # Groups committed and writes in them (for tests and metrics).
        self.groups = 0
        self.writes = 0

    @property
    def queued(self) -> int:
        """Writes waiting for their group."""
        return len(self._pending)

    async def write(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """Run `work` in the next group; its value once the group has committed."""
        if self._closed:
            raise Unavailable(DATABASE_DOWN)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._pending.append((work, future))
        if self._leader is None or self._leader.done():
            self._leader = loop.create_task(self._lead())
        return await future

    async def close(self) -> None:
        """Finish the groups under way, then close the connection and the thread (once)."""
        if self._closed:
            return
        self._closed = True
        if self._leader is not None:
            await asyncio.shield(self._leader)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self._close_connection)
        self._executor.shutdown(wait=True)

    async def _lead(self) -> None:
        loop = asyncio.get_running_loop()
        while self._pending:
            group: list[tuple[Callable[[sqlite3.Connection], Any], asyncio.Future[Any]]] = []
            try:
                async with self._queue.turn(update_path=True):
                    taken = self._pending[: self._max_writes]
                    del self._pending[: len(taken)]
                    group = [(work, future) for work, future in taken if not future.done()]
                    if not group:
                        continue
                    outcomes = await loop.run_in_executor(
                        self._executor, self._commit, [work for work, _ in group]
                    )
            except BaseException as error:  # the turn or the commit failed: the whole group
                waiting = group or self._take_all()
                for _, future in waiting:
                    if not future.done():
                        future.set_exception(
                            error if isinstance(error, Exception) else Unavailable(DATABASE_DOWN)
                        )
                if not isinstance(error, Exception):
                    raise
                continue
            self.groups += 1
            self.writes += len(group)
            for (_, future), (ok, value) in zip(group, outcomes, strict=True):
                if future.done():
                    continue
                if ok:
                    future.set_result(value)
                else:
                    future.set_exception(value)

    def _take_all(self) -> list[tuple[Callable[[sqlite3.Connection], Any], asyncio.Future[Any]]]:
        taken, self._pending = self._pending, []
        return taken

    # -- in the writer's thread ----------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        if self._connection is None:
            connection = sqlite3.connect(
                self.database, timeout=self._busy_timeout_seconds, isolation_level=None
            )
            _apply_sqlite_pragmas(connection, self._busy_timeout_seconds)
            self._connection = connection
        return self._connection

    def _commit(self, works: list[Callable[[sqlite3.Connection], Any]]) -> list[tuple[bool, Any]]:
        connection = self._connect()
        outcomes: list[tuple[bool, Any]] = []
        connection.execute("BEGIN IMMEDIATE")
        try:
            for work in works:
                connection.execute(f"SAVEPOINT {_SAVEPOINT}")
                try:
                    value = work(connection)
                except Exception as error:
                    connection.execute(f"ROLLBACK TO {_SAVEPOINT}")
                    connection.execute(f"RELEASE {_SAVEPOINT}")
                    outcomes.append((False, error))
                else:
                    connection.execute(f"RELEASE {_SAVEPOINT}")
                    outcomes.append((True, value))
            connection.execute("COMMIT")
        except BaseException:
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            raise
        return outcomes

    def _close_connection(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None


def group_writer(engine: AsyncEngine, *, queue_timeout_seconds: float = 30.0) -> GroupWriter | None:
    """The group writer of an engine's SQLite file (in the same writer queue as its
    `session_factory`), or None for other databases."""
    if engine.url.get_backend_name() != "sqlite":
        return None
    database = str(engine.url.database)
    return GroupWriter(
        database,
        WriterQueue(database, queue_timeout_seconds),
        busy_timeout_seconds=queue_timeout_seconds,
    )


def create_engine(
    url: str,
    *,
    timeout_seconds: float = 30.0,
    pool_size: int = 10,
    max_overflow: int = 10,
    pool_timeout_seconds: float = 10.0,
) -> AsyncEngine:
    """Build the async engine for a database URL with the pragmas and timeouts we rely on.

    Each process holds at most `pool_size + max_overflow` connections; a call waits up to
    `pool_timeout_seconds` for one of them before it fails as unavailable (503).
    """
    kwargs: dict[str, Any] = {
        "pool_size": pool_size,
        "max_overflow": max_overflow,
        "pool_timeout": pool_timeout_seconds,
    }
    if is_sqlite(url):
        kwargs["connect_args"] = {"timeout": timeout_seconds}
        # No rollback round trip for every connection given back: `_install_sqlite_reset`
        # rolls back only a connection that still has a transaction open.
        kwargs["pool_reset_on_return"] = None
        if make_url(url).get_driver_name() == "aiosqlite":
            # One trip to the driver's thread per statement instead of four.
            kwargs["module"] = aiosqlite_module()
        if ":memory:" in url or make_url(url).database in (None, ""):
            raise ValueError("use a SQLite file, not an in-memory database")
    else:
        kwargs["connect_args"] = {"timeout": timeout_seconds, "command_timeout": timeout_seconds}
    engine = create_async_engine(url, **kwargs)
    if is_sqlite(url):
        _install_sqlite_pragmas(engine, timeout_seconds)
        _install_sqlite_reset(engine)
    else:
        _install_checkout_check(engine)
    _install_unavailable_errors(engine)
    return engine


def create_engine_for(settings: Settings) -> AsyncEngine:
    """The engine of a service process, sized and timed by the settings."""
    return create_engine(
        settings.resolved_database_url(),
        timeout_seconds=settings.database_timeout_seconds,
        pool_size=settings.database_pool_size,
        max_overflow=settings.database_max_overflow,
        pool_timeout_seconds=settings.database_pool_timeout_seconds,
    )


def unavailable_error(error: BaseException) -> Unavailable | None:
    """The 503 a database error amounts to (out of connections, starting, down), else None."""
    sqlstate = sqlstate_of(error)
    if sqlstate is None:
        return None
    if sqlstate.startswith(_BUSY_SQLSTATE_CLASSES):
        return Unavailable(DATABASE_BUSY)
    if sqlstate.startswith(_DOWN_SQLSTATE_CLASSES) or sqlstate in _DOWN_SQLSTATES:
        return Unavailable(DATABASE_DOWN)
    return None


def error_chain(error: BaseException) -> Iterator[BaseException]:
    """The error and what it wraps: SQLAlchemy's `orig`, else `__cause__` (each once)."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = getattr(current, "orig", None) or current.__cause__


def sqlstate_of(error: BaseException) -> str | None:
    """The PostgreSQL SQLSTATE somewhere in the error's chain, if any."""
    for current in error_chain(error):
        sqlstate = getattr(current, "sqlstate", None) or getattr(current, "pgcode", None)
        if isinstance(sqlstate, str) and sqlstate:
            return sqlstate
    return None


def _install_checkout_check(engine: AsyncEngine) -> None:
    """What the pool checks before it hands out a connection (PostgreSQL): one the server has
    closed (a restart, a cut link: the driver already knows) is replaced, and one unused for
    `PING_AFTER_IDLE_SECONDS` is pinged first and replaced if the ping fails. A connection
    that breaks in use fails its statement, and the pool then replaces every connection
    opened before (SQLAlchemy's disconnect handling)."""

    @event.listens_for(engine.sync_engine, "checkin")
    def _on_checkin(dbapi_connection: Any, record: Any) -> None:
        if dbapi_connection is not None:
            record.info[_RETURNED_AT] = time.monotonic()

    @event.listens_for(engine.sync_engine, "checkout")
    def _on_checkout(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        driver = getattr(dbapi_connection, "driver_connection", None)
        if driver is not None and driver.is_closed():
            raise DisconnectionError("the database closed this connection")
        returned = record.info.get(_RETURNED_AT)
        if returned is None or time.monotonic() - returned < PING_AFTER_IDLE_SECONDS:
            return  # just opened, or in use moments ago
        try:
            dbapi_connection.ping()
        except Exception as error:
            raise DisconnectionError("the database did not answer a ping") from error


def _install_unavailable_errors(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "handle_error")
    def _on_error(context: ExceptionContext) -> BaseException | None:
        # A failed pre-ping only makes the pool reconnect; the reconnect's own error counts.
        if context.is_pre_ping:
            return None
        return _as_unavailable(context.original_exception, broken=False)


def create_migration_engine(url: str, *, timeout_seconds: float = 30.0) -> AsyncEngine:
    """A pool-less engine for one-off schema work."""
    connect_args: dict[str, Any] = {"timeout": timeout_seconds}
    engine = create_async_engine(url, poolclass=NullPool, connect_args=connect_args)
    if is_sqlite(url):
        _install_sqlite_pragmas(engine, timeout_seconds)
    return engine


def _apply_sqlite_pragmas(dbapi_connection: Any, timeout_seconds: float) -> None:
    """WAL, foreign keys, `synchronous=NORMAL`, checkpointing and the busy timeout."""
    # Let SQLAlchemy (or the group writer), not the driver, decide where transactions begin.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    # Switching to WAL needs an exclusive lock; only ask when the file is not WAL yet.
    cursor.execute("PRAGMA journal_mode")
    if str(cursor.fetchone()[0]).lower() != "wal":
        cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    # WAL + NORMAL: a commit appends to the log without an fsync (the log is synced at
    # checkpoints), so a power loss can forget the last commits but never corrupts the file.
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute(f"PRAGMA wal_autocheckpoint={WAL_AUTOCHECKPOINT_PAGES}")
    cursor.execute(f"PRAGMA busy_timeout={int(timeout_seconds * 1000)}")
    cursor.close()


def _install_sqlite_reset(engine: AsyncEngine) -> None:
    """What the pool does with a SQLite connection given back: roll back a transaction it
    still has open (the driver knows without a round trip to its thread), else nothing."""

    @event.listens_for(engine.sync_engine, "reset")
    def _on_reset(dbapi_connection: Any, _record: Any, state: Any) -> None:
        if not state.asyncio_safe:  # being thrown away, not reused
            return
        if isinstance(dbapi_connection, OneTripConnection):
            dbapi_connection.take_begin()  # a transaction that never ran a statement
        driver = getattr(dbapi_connection, "driver_connection", dbapi_connection)
        if getattr(driver, "in_transaction", True):
            dbapi_connection.rollback()


def _install_sqlite_pragmas(engine: AsyncEngine, timeout_seconds: float) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        _apply_sqlite_pragmas(dbapi_connection, timeout_seconds)

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection: Any) -> None:
        # Deferred for reads: a WAL snapshot, taken at the first read, without the write
        # lock. IMMEDIATE for writes: the write lock up front, so read-then-write transactions
        # never deadlock on lock upgrade (SQLite has one writer anyway).
        is_read = connection.get_execution_options().get(READ_ONLY_OPTION)
        begin = "BEGIN" if is_read else "BEGIN IMMEDIATE"
        dbapi_connection = connection.connection.dbapi_connection
        if isinstance(dbapi_connection, OneTripConnection):
            dbapi_connection.defer_begin(begin)  # sent with the first statement
        else:
            connection.exec_driver_sql(begin)


def session_factory(engine: AsyncEngine, *, queue_timeout_seconds: float = 30.0) -> Sessions:
    """Write transactions; on SQLite queued behind this process's other writers to the same
    file (`WriterQueue`), for at most `queue_timeout_seconds`."""
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    if engine.url.get_backend_name() != "sqlite":
        return sessions
    return QueuedSessions(sessions, WriterQueue(str(engine.url.database), queue_timeout_seconds))


class ReadOnlySession(Session):
    """The ORM session of `read_session_factory`: flushing a change in one is a bug."""


@event.listens_for(ReadOnlySession, "before_flush")
def _refuse_writes(session: Session, _context: Any, _instances: Any) -> None:
    if session.new or session.dirty or session.deleted:
        raise RuntimeError("a read-only transaction tried to write")


class DriverStatement:
    """A Core statement compiled once to the driver's own SQL (`$1`, `$2`, ... with their
    casts) and the order its parameters go in; the column types' conversions of what goes in
    are applied per call."""

    def __init__(self, statement: ClauseElement, dialect: Any) -> None:
        compiled = statement.compile(dialect=dialect)
        assert isinstance(compiled, SQLCompiler)
        self.sql = str(compiled)
        names = list(compiled.positiontup or ())
        self._defaults = {name: compiled.params.get(name) for name in names}
        self._order = [
            (name, compiled.binds[name].type.dialect_impl(dialect).bind_processor(dialect))
            for name in names
        ]

    def arguments(self, params: Mapping[str, Any]) -> list[Any]:
        arguments = []
        for name, process in self._order:
            value = params[name] if name in params else self._defaults[name]
            arguments.append(value if process is None or value is None else process(value))
        return arguments


class DriverStatements:
    """Statements that commit on their own, each run as one call of a pooled PostgreSQL
    connection's driver (asyncpg): no ORM session, no SQLAlchemy execution layer, no BEGIN
    and COMMIT round trips; the driver prepares a statement once per connection and keeps it
    (its statement cache). For a hot write that is one statement, its checks in its SQL.

    Errors are those of the engine's other statements: a database out of connections or down
    is `Unavailable` (503); a connection that broke is thrown away, not pooled again.
    """

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    def compile(self, statement: ClauseElement) -> DriverStatement:
        return DriverStatement(statement, self._engine.dialect)

    async def value(self, statement: DriverStatement, params: Mapping[str, Any]) -> Any:
        """The first column of the first row the statement returns (None: no row)."""
        return await self._call("fetchval", statement, params)

    async def column(self, statement: DriverStatement, params: Mapping[str, Any]) -> list[Any]:
        """The first column of every row the statement returns."""
        return [row[0] for row in await self._call("fetch", statement, params)]

    async def _call(
        self, method: str, statement: DriverStatement, params: Mapping[str, Any]
    ) -> Any:
        arguments = statement.arguments(params)
        try:
            connection = await self._engine.raw_connection()
        except Exception as error:  # no connection to be had: as the engine's own checkouts
            unavailable = _as_unavailable(error, broken=isinstance(error, OSError))
            if unavailable is None:
                raise
            raise unavailable from None
        try:
            driver = connection.driver_connection
            assert driver is not None
            try:
                return await getattr(driver, method)(statement.sql, *arguments)
            except Exception as error:
                broken = isinstance(error, OSError | TimeoutError) or driver.is_closed()
                if broken:
                    await greenlet_spawn(connection.invalidate, error)
                unavailable = _as_unavailable(error, broken=broken)
                if unavailable is None:
                    raise
                raise unavailable from None
        finally:
            await greenlet_spawn(connection.close)


def _as_unavailable(error: BaseException, *, broken: bool) -> Unavailable | None:
    """`Unavailable` for an error from a database out of connections, starting, down or (when
    `broken`) whose connection broke, logged by kind; None for any other error. One place for
    the engine's statements (`handle_error`) and the driver's own calls (`DriverStatements`)."""
    unavailable = unavailable_error(error)
    if unavailable is None and not broken:
        return None
    log.warning("database_unavailable", sqlstate=sqlstate_of(error), error=type(error).__name__)
    return unavailable or Unavailable(DATABASE_DOWN)


def driver_statements(engine: AsyncEngine) -> DriverStatements | None:
    """`DriverStatements` of a PostgreSQL engine (asyncpg); None for SQLite, whose writes
    queue (`session_factory`, `GroupWriter`)."""
    if engine.url.get_backend_name() != "postgresql" or engine.dialect.driver != "asyncpg":
        return None
    return DriverStatements(engine)


def read_session_factory(engine: AsyncEngine) -> Sessions:
    """Read-only transactions: never queued, and on SQLite a deferred BEGIN (no write lock)."""
    return async_sessionmaker(
        engine.execution_options(**{READ_ONLY_OPTION: True}),
        expire_on_commit=False,
        sync_session_class=ReadOnlySession,
    )

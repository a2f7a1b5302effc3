"""Async engine and session factory: SQLite (WAL, foreign keys, busy timeout) or PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from sqlalchemy import MetaData, event
from sqlalchemy.engine import ExceptionContext, make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.pool import NullPool

from services.common.config import Settings
from services.common.errors import Unavailable
from services.common.logging import get_logger

log = get_logger("cairn.db")

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
        if ":memory:" in url or make_url(url).database in (None, ""):
            raise ValueError("use a SQLite file, not an in-memory database")
    else:
        kwargs["pool_pre_ping"] = True
        kwargs["connect_args"] = {"timeout": timeout_seconds, "command_timeout": timeout_seconds}
    engine = create_async_engine(url, **kwargs)
    if is_sqlite(url):
        _install_sqlite_pragmas(engine, timeout_seconds)
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


def _install_unavailable_errors(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "handle_error")
    def _on_error(context: ExceptionContext) -> BaseException | None:
        # A failed pre-ping only makes the pool reconnect; the reconnect's own error counts.
        if context.is_pre_ping:
            return None
        unavailable = unavailable_error(context.original_exception)
        if unavailable is not None:
            log.warning(
                "database_unavailable",
                sqlstate=sqlstate_of(context.original_exception),
                error=type(context.original_exception).__name__,
            )
        return unavailable


def create_migration_engine(url: str, *, timeout_seconds: float = 30.0) -> AsyncEngine:
    """A pool-less engine for one-off schema work."""
    connect_args: dict[str, Any] = {"timeout": timeout_seconds}
    engine = create_async_engine(url, poolclass=NullPool, connect_args=connect_args)
    if is_sqlite(url):
        _install_sqlite_pragmas(engine, timeout_seconds)
    return engine


def _install_sqlite_pragmas(engine: AsyncEngine, timeout_seconds: float) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the driver, decide where transactions begin.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        # Switching to WAL needs an exclusive lock; only ask when the file is not WAL yet.
        cursor.execute("PRAGMA journal_mode")
        if str(cursor.fetchone()[0]).lower() != "wal":
            cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute(f"PRAGMA busy_timeout={int(timeout_seconds * 1000)}")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection: Any) -> None:
        # IMMEDIATE takes the write lock up front, so read-then-write transactions never
        # deadlock on lock upgrade; SQLite has one writer anyway.
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)

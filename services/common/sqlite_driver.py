"""SQLAlchemy's aiosqlite adapter with one trip to the driver's thread per statement.

aiosqlite runs every call on the connection's own thread, and SQLAlchemy's adapter makes four
such calls per statement: open a cursor, execute, fetch the rows, close the cursor. Each trip
is a queue put, a thread wake-up and an event-loop wake-up, and on this path they cost more CPU
than the statement itself. The cursor here does the four steps in one function run on that
thread and keeps what the statement left (description, rows, row count, last row id), so a
statement is one trip. A transaction's `BEGIN` (deferred or IMMEDIATE) is not a trip of its
own either: it is sent in the trip of the transaction's first statement, just before it, and a
transaction that ran no statement ends without a trip. Transactions, errors and results are
those of the stock adapter: the same sqlite3 calls in the same order on the same thread.
Server-side cursors (streamed results) keep the stock class.

Used through `create_async_engine(..., module=aiosqlite_module())` (`db.create_engine`).
"""

from __future__ import annotations

import collections
import sqlite3
from collections.abc import Sequence
from typing import Any

from sqlalchemy.connectors.asyncio import AsyncAdapt_dbapi_connection
from sqlalchemy.dialects.sqlite.aiosqlite import (
    AsyncAdapt_aiosqlite_connection,
    AsyncAdapt_aiosqlite_cursor,
    AsyncAdapt_aiosqlite_dbapi,
)
from sqlalchemy.util import EMPTY_DICT
from sqlalchemy.util.concurrency import await_

# (description, rows or None, rowcount, lastrowid) of one statement.
Outcome = tuple[Any, list[Any] | None, int, int | None]


def _run(
    connection: sqlite3.Connection,
    operation: str,
    parameters: Any,
    is_many: bool,
    begin: str | None,
) -> Outcome:
    """One statement, on the driver's thread: cursor, the transaction's BEGIN when this is its
    first statement, execute, rows, close."""
    cursor = connection.cursor()
    try:
        if begin is not None:
            cursor.execute(begin)
        if is_many:
            cursor.executemany(operation, parameters)
        elif parameters is None:
            cursor.execute(operation)
        else:
            cursor.execute(operation, parameters)
        description = cursor.description
        rows = cursor.fetchall() if description else None
        return description, rows, cursor.rowcount, cursor.lastrowid
    finally:
        cursor.close()


class OneTripCursor(AsyncAdapt_aiosqlite_cursor):
    """A buffered cursor whose statement takes one trip to the driver's thread."""

    __slots__ = ("_description", "_lastrowid", "_rowcount")

    def __init__(self, adapt_connection: AsyncAdapt_dbapi_connection) -> None:
        # No driver cursor is opened here: `_run` opens and closes one per statement.
        self._adapt_connection = adapt_connection
        self._connection = adapt_connection._connection
        self._cursor = None  # type: ignore[assignment]
        self._soft_closed_memoized = EMPTY_DICT
        self._rows = collections.deque()
        self._description: Any = None
        self._rowcount = -1
        self._lastrowid: int | None = None

    @property
    def description(self) -> Any:
        return self._description

    @property
    def rowcount(self) -> int:
        return self._rowcount

    @property
    def lastrowid(self) -> int:
        return self._lastrowid  # type: ignore[return-value]

    @property
    def arraysize(self) -> int:
        return 1

    @arraysize.setter
    def arraysize(self, value: int) -> None:
        pass

    async def _async_soft_close(self) -> None:
        return None  # nothing is open on the driver's side between statements

    def close(self) -> None:
        self._rows.clear()

    def execute(self, operation: Any, parameters: Any = None) -> Any:
        try:
            return await_(self._run_once(operation, parameters, is_many=False))
        except Exception as error:
            self._adapt_connection._handle_exception(error)

    def executemany(self, operation: Any, seq_of_parameters: Sequence[Any]) -> Any:
        try:
            return await_(self._run_once(operation, seq_of_parameters, is_many=True))
        except Exception as error:
            self._adapt_connection._handle_exception(error)

    async def _run_once(self, operation: Any, parameters: Any, *, is_many: bool) -> None:
        driver = self._connection
        adapted = self._adapt_connection
        async with adapted._execute_mutex:
            begin = adapted.take_begin() if isinstance(adapted, OneTripConnection) else None
            # aiosqlite's own entry point for running a function on its thread (the stock
            # adapter reaches into the same connection for its isolation-level setter).
            description, rows, rowcount, lastrowid = await driver._execute(
                _run, driver._conn, operation, parameters, is_many, begin
            )
        self._description = description
        self._rows = collections.deque(rows) if rows is not None else collections.deque()
        self._rowcount = rowcount
        self._lastrowid = lastrowid

    def nextset(self) -> None:
        return None  # sqlite3 has one result set per statement

    def setinputsizes(self, *inputsizes: Any) -> None:
        return None


class OneTripConnection(AsyncAdapt_aiosqlite_connection):
    __slots__ = ("_begin",)

    _cursor_cls = OneTripCursor

    def __init__(self, dbapi: Any, connection: Any) -> None:
        super().__init__(dbapi, connection)
        self._begin: str | None = None

    def defer_begin(self, statement: str) -> None:
        """Begin a transaction with `statement` (`BEGIN`, `BEGIN IMMEDIATE`) in the trip of
        its first statement. Nothing reaches SQLite before that statement either way: a
        deferred BEGIN takes its snapshot at the first read, and this process's writers take
        their turn before they begin (`db.WriterQueue`)."""
        self._begin = statement

    def cursor(self, server_side: bool = False) -> Any:
        if server_side:
            # A streamed statement runs on the stock cursor, which knows nothing of a pending
            # BEGIN: the transaction begins first, in a trip of its own.
            begin = self.take_begin()
            if begin is not None:
                OneTripCursor(self).execute(begin)
        return super().cursor(server_side=server_side)

    def take_begin(self) -> str | None:
        """The BEGIN to send before the next statement, once."""
        begin, self._begin = self._begin, None
        return begin

    def commit(self) -> None:
        if self.take_begin() is None:
            super().commit()

    def rollback(self) -> None:
        if self.take_begin() is None:
            super().rollback()


class OneTripDbapi(AsyncAdapt_aiosqlite_dbapi):
    """The adapter module handing out `OneTripConnection`s."""

    def connect(self, *arg: Any, **kw: Any) -> OneTripConnection:
        stock = super().connect(*arg, **kw)
        return OneTripConnection(self, stock._connection)


def aiosqlite_module() -> OneTripDbapi:
    """The DBAPI module to give `create_async_engine(module=...)` for `sqlite+aiosqlite`."""
    import aiosqlite

    return OneTripDbapi(aiosqlite, sqlite3)

"""Checks `cairn up`, `serve` and `migrate` run before anything is migrated or written.

Each failure is one line that names the setting to change; the command then exits with 2.
Nothing here creates the data dir, a key file or a table: a refused start leaves the machine
as it found it.
"""

from __future__ import annotations

import asyncio
import errno
import os
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from pydantic import ValidationError
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from services.common.config import Settings
from services.common.db import error_chain, is_sqlite, sqlstate_of
from services.common.keyfile import parse_key
from services.common.signing import INTERNAL_KEY_FILE
from services.secrets.crypto import MASTER_KEY_FILE

CHECK_TIMEOUT_SECONDS: Final = 5.0
# SQLSTATEs PostgreSQL answers a connection with (asyncpg carries them as `sqlstate`).
_MISSING_DATABASE: Final = "3D000"
_BAD_CREDENTIALS: Final = frozenset({"28000", "28P01"})


class StartupProblem(Exception):
    """Why the command cannot start, as one line naming the setting to change."""


@dataclass(frozen=True)
class Listener:
    """An address the command is about to listen on, and the setting that chooses it."""

    host: str
    port: int
    setting: str


def settings_problem(error: ValidationError) -> StartupProblem:
    """One line for the first invalid setting; the rejected value is never repeated (it
    may be a key or a token)."""
    first = error.errors()[0]
    name = "_".join(str(part) for part in first.get("loc", ()) if part != "__root__")
    setting = f"CAIRN_{name.upper()}" if name else "a CAIRN_ setting"
    message = str(first.get("msg", "invalid value")).removeprefix("Value error, ")
    return StartupProblem(f"{setting} is invalid: {message}")


def check_listeners(listeners: Sequence[Listener]) -> None:
    """Every port is free to listen on (0 picks a free one, so it always is)."""
    for listener in listeners:
        if listener.port == 0:
            continue
        family = socket.AF_INET6 if ":" in listener.host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((listener.host, listener.port))
            except OSError as error:
                raise StartupProblem(_listen_problem(listener, error)) from None


def _listen_problem(listener: Listener, error: OSError) -> str:
    where = f"{listener.host}:{listener.port}"
    if error.errno == errno.EADDRINUSE:
        return f"{where} is already in use: stop what listens there or change {listener.setting}"
    if error.errno == errno.EACCES:
        return f"{where} needs privileges: choose a port above 1023 with {listener.setting}"
    if error.errno == errno.EADDRNOTAVAIL or isinstance(error, socket.gaierror):
        return f"{listener.host} is not an address of this machine: fix {listener.setting}"
    return f"cannot listen on {where} ({error.strerror or error}): fix {listener.setting}"


def check_data_dir(settings: Settings) -> None:
    """The embedded data dir can be created or written (only when it holds something)."""
    path = settings.data_dir
    if path.exists() and not path.is_dir():
        raise StartupProblem(f"{path} is a file, not a directory: fix CAIRN_DATA_DIR (--data-dir)")
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not os.access(existing, os.W_OK | os.X_OK):
        raise StartupProblem(f"{existing} is not writable: fix CAIRN_DATA_DIR (--data-dir)")


def check_keys(settings: Settings, *, master: bool) -> None:
    """Configured keys decode, and key files already in the data dir are readable keys."""
    keys = [("CAIRN_INTERNAL_KEY", settings.internal_key, INTERNAL_KEY_FILE)]
    if master:
        keys.append(("CAIRN_MASTER_KEY", settings.master_key, MASTER_KEY_FILE))
    for setting, configured, file_name in keys:
        if configured is not None:
            _decode(configured.get_secret_value(), setting, setting)
            continue
        path = settings.data_dir / file_name
        if not path.exists():
            continue  # generated on first start
        try:
            encoded = path.read_text(encoding="ascii")
        except (OSError, UnicodeDecodeError) as error:
            reason = error.strerror if isinstance(error, OSError) else "not text"
            raise StartupProblem(
                f"{path} cannot be read ({reason}): fix its permissions or set {setting}"
            ) from None
        _decode(encoded, str(path), setting)


def _decode(encoded: str, source: str, setting: str) -> None:
    try:
        parse_key(encoded, source=source)
    except ValueError as error:
        raise StartupProblem(f"{error}: set {setting} to the key this deployment uses") from None


SUPPORTED_DATABASES: Final = frozenset({"sqlite", "postgresql"})


def check_database_url(settings: Settings) -> None:
    """A configured database URL parses and names a database Cairn stores data in."""
    if not settings.database_url:
        return
    try:
        backend = make_url(settings.database_url).get_backend_name()
    except ArgumentError:
        raise StartupProblem(
            "CAIRN_DATABASE_URL is not a database URL: use postgresql+asyncpg://user@host/db"
        ) from None
    if backend not in SUPPORTED_DATABASES:
        raise StartupProblem(
            f"CAIRN_DATABASE_URL names {backend}: Cairn keeps its data in PostgreSQL "
            "(postgresql+asyncpg://user@host/db) or SQLite (leave it unset)"
        )


async def check_database(settings: Settings) -> None:
    """A configured PostgreSQL database exists and accepts these credentials."""
    url = settings.database_url
    if not url or is_sqlite(url):
        return
    shown = make_url(url)
    where = f"{shown.host or 'localhost'}:{shown.port or 5432}"
    try:
        engine = create_async_engine(url, poolclass=NullPool)
    except Exception as error:  # an unknown driver or option in the URL
        raise StartupProblem(
            f"CAIRN_DATABASE_URL cannot be used ({type(error).__name__}): "
            "use postgresql+asyncpg://user@host/db"
        ) from None
    try:
        async with asyncio.timeout(CHECK_TIMEOUT_SECONDS), engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
    except TimeoutError:
        raise StartupProblem(
            f"PostgreSQL at {where} did not answer within {CHECK_TIMEOUT_SECONDS:.0f} s: "
            "check it is running or fix CAIRN_DATABASE_URL"
        ) from None
    except Exception as error:
        raise StartupProblem(
            _database_problem(error, where, shown.database, shown.username)
        ) from None
    finally:
        await engine.dispose()


def _database_problem(
    error: BaseException, where: str, database: str | None, user: str | None
) -> str:
    state = sqlstate_of(error)
    if state == _MISSING_DATABASE:
        name = database or "?"
        return (
            f"PostgreSQL at {where} has no database {name!r}: create it "
            f"(createdb -h {where.rsplit(':', 1)[0]} {name}) or fix CAIRN_DATABASE_URL"
        )
    if state in _BAD_CREDENTIALS:
        return (
            f"PostgreSQL at {where} refused user {user!r}: "
            "fix the user or password in CAIRN_DATABASE_URL"
        )
    if any(isinstance(cause, OSError) for cause in error_chain(error)):
        return f"cannot reach PostgreSQL at {where}: start it or fix CAIRN_DATABASE_URL"
    kind = type(list(error_chain(error))[-1]).__name__
    return f"PostgreSQL at {where} refused the connection ({kind}): fix CAIRN_DATABASE_URL"


async def check_redis(settings: Settings) -> None:
    """A configured Redis answers PING."""
    if not settings.redis_url:
        return
    from redis.asyncio import Redis
    from redis.exceptions import AuthenticationError, RedisError

    try:
        client = Redis.from_url(
            settings.redis_url,
            socket_connect_timeout=CHECK_TIMEOUT_SECONDS,
            socket_timeout=CHECK_TIMEOUT_SECONDS,
        )
    except ValueError:
        raise StartupProblem(
            "CAIRN_REDIS_URL is not a Redis URL: use redis://host:6379/0 (or unset it)"
        ) from None
    where = "{host}:{port}".format(**client.connection_pool.connection_kwargs)
    try:
        async with asyncio.timeout(CHECK_TIMEOUT_SECONDS):
            await client.ping()
    except AuthenticationError:
        raise StartupProblem(
            f"Redis at {where} refused the credentials in CAIRN_REDIS_URL"
        ) from None
    except (TimeoutError, RedisError, OSError):
        raise StartupProblem(
            f"cannot reach Redis at {where}: start it, fix CAIRN_REDIS_URL, or unset it "
            "(embedded mode serialises updates without Redis)"
        ) from None
    finally:
        await client.aclose()


async def check_startup(
    settings: Settings, *, listeners: Sequence[Listener] = (), master_key: bool = True
) -> None:
    """Everything a start needs, checked in the order a newcomer would fix it."""
    check_database_url(settings)
    check_listeners(listeners)
    if not settings.database_url or is_sqlite(settings.database_url):
        check_data_dir(settings)
    check_keys(settings, master=master_key)
    await check_database(settings)
    await check_redis(settings)

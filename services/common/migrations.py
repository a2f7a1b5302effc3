"""Runs one service's alembic history against the shared database, on start or on demand."""

from __future__ import annotations

import asyncio
import functools
import weakref
import zlib
from pathlib import Path

from alembic.config import Config
from alembic.runtime.environment import EnvironmentContext
from alembic.script import ScriptDirectory
from sqlalchemy import MetaData, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

# Alembic keeps the running migration's context in module globals (`alembic.context`), so two
# upgrades in one process (the services of `cairn up`, replicas started together) must not
# interleave: they take turns, one lock per event loop.
_TURNS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
    weakref.WeakKeyDictionary()
)


def _turn() -> asyncio.Lock:
    loop = asyncio.get_running_loop()
    lock = _TURNS.get(loop)
    if lock is None:
        lock = _TURNS[loop] = asyncio.Lock()
    return lock


def version_table(service: str) -> str:
    """Each service keeps its own alembic history in its own version table."""
    return f"alembic_version_{service}"


@functools.cache
def _scripts(script_location: Path) -> tuple[Config, ScriptDirectory]:
    """A service's migration scripts, read once per process (they do not change while it
    runs; every start and every test reads the same ones)."""
    config = Config()
    config.set_main_option("script_location", str(script_location))
    return config, ScriptDirectory.from_config(config)


def _upgrade(
    connection: Connection, service: str, script_location: Path, metadata: MetaData
) -> list[str]:
    config, script = _scripts(script_location)
    applied: list[str] = []

    def do_upgrade(revision: object, _context: object) -> object:
        steps = script._upgrade_revs("head", revision)  # type: ignore[arg-type]
        applied.extend(step.revision.revision for step in steps)
        return steps

    if connection.dialect.name == "postgresql":
        # Replicas starting together migrate one at a time.
        lock_id = zlib.crc32(f"cairn-migrate-{service}".encode())
        connection.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": lock_id})
    with EnvironmentContext(config, script, fn=do_upgrade) as env:
        env.configure(
            connection=connection,
            target_metadata=metadata,
            version_table=version_table(service),
            render_as_batch=connection.dialect.name == "sqlite",
        )
        env.run_migrations()
    return applied


async def upgrade_to_head(
    engine: AsyncEngine, service: str, script_location: Path, metadata: MetaData
) -> list[str]:
    """Bring one service's tables to the newest revision; a no-op when already there.

    Returns the revisions applied, oldest first (empty when there was nothing to do).
    """
    async with _turn(), engine.begin() as connection:
        applied: list[str] = await connection.run_sync(_upgrade, service, script_location, metadata)
    return applied

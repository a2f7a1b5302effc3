"""Every service's migrations produce exactly the tables its models describe."""

from __future__ import annotations

import importlib
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy.engine import Connection

from cairn.cli import START_ORDER, migrate
from services.common.config import Settings
from services.common.db import create_migration_engine
from services.common.migrations import version_table


@pytest.mark.parametrize("service", START_ORDER)
async def test_migrated_schema_matches_the_models(any_settings: Settings, service: str) -> None:
    await migrate(any_settings)
    await migrate(any_settings)  # a second run is a no-op
    metadata = importlib.import_module(f"services.{service}.models").Base.metadata

    def differences(connection: Connection) -> list[Any]:
        context = MigrationContext.configure(
            connection,
            opts={
                "version_table": version_table(service),
                "compare_type": True,
                # One database holds every service's tables; compare only this service's.
                "include_name": lambda name, kind, _parent: (
                    kind != "table" or name in metadata.tables
                ),
            },
        )
        return list(compare_metadata(context, metadata))

    engine = create_migration_engine(any_settings.resolved_database_url())
    try:
        async with engine.connect() as connection:
            assert await connection.run_sync(differences) == []
    finally:
        await engine.dispose()

"""Stack state versions in the blob store: exports through S3, the garbage collector under an
injected crash, `cairn migrate` moving texts out of rows, retention pruning."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import select
from sqlalchemy import update as sql_update

from cairn.cli import migrate
from protos.cairn.v1 import updates_pb2, updates_pb2_grpc
from services.common.blobs import BlobStore, open_blob_store
from services.common.clock import ManualClock
from services.common.config import Settings
from services.common.errors import Gone
from services.common.service import Database, open_database
from services.updates import server as updates_server
from services.updates.domain import FinalState
from services.updates.lease import DatabaseOnlyLock
from services.updates.maintenance import Retentions, collect_garbage, move_texts
from services.updates.models import Base, StackVersionRow
from services.updates.server import MIGRATIONS
from services.updates.service import Updates
from services.updates.state_store import StateStore
from services.updates.states import StateTexts
from services.updates.store import UpdateStore
from tests.blobs.conftest import s3_settings
from tests.conftest import make_settings, signed_channel

GRACE = 3600.0
PATH = ("acme", "web", "dev")


def deployment(marker: str, count: int = 2) -> bytes:
    resources: list[dict[str, Any]] = [
        {
            "urn": f"urn:pulumi:dev::web::pulumi:pulumi:Stack::web-dev-{marker}",
            "type": "pulumi:pulumi:Stack",
        }
    ]
    for index in range(count - 1):
        resources.append(
            {
                "urn": f"urn:pulumi:dev::web::random:index/randomPet:RandomPet::pet-{index}",
                "custom": True,
                "id": f"{marker}-{index}",
                "type": "random:index/randomPet:RandomPet",
                "inputs": {"length": 2, "prefix": marker},
                "outputs": {"id": f"{marker}-{index}", "length": 2, "separator": "-"},
                "parent": f"urn:pulumi:dev::web::pulumi:pulumi:Stack::web-dev-{marker}",
            }
        )
    return orjson.dumps(
        {
            "version": 3,
            "deployment": {
                "manifest": {"time": "2026-11-22T10:00:00Z", "magic": "", "version": "v"},
                "resources": resources,
            },
        }
    )


class CrashingStore(UpdateStore):
    """Fails (as a process dying would) after the blob is written, before the row commits;
    or runs `before` first and then commits."""

    crash = False
    before: Any = None

    async def record_finished(self, *args: Any, **kwargs: Any) -> Any:
        if self.crash:
            raise RuntimeError("injected crash between blob write and row commit")
        if self.before is not None:
            await self.before(kwargs["final"])
        return await super().record_finished(*args, **kwargs)


@dataclass
class Parts:
    database: Database
    store: CrashingStore
    state_store: StateStore
    blobs: BlobStore
    states: StateTexts
    updates: Updates
    clock: ManualClock

    async def collect(self) -> Any:
        return await collect_garbage(
            self.blobs, self.state_store, now=self.clock.now(), grace_seconds=GRACE
        )

    async def digests(self) -> set[str]:
        return {digest async for digest in self.blobs.list_digests()}

    async def rows(self) -> list[StackVersionRow]:
        async with self.database.reads.begin() as session:
            return list(await session.scalars(select(StackVersionRow).order_by("version")))


@pytest.fixture(params=["filesystem", "s3"])
async def parts(request: pytest.FixtureRequest, any_settings: Settings) -> AsyncIterator[Parts]:
    settings = any_settings
    if request.param == "s3":
        endpoint = request.getfixturevalue("s3_endpoint")
        settings = settings.model_copy(update=s3_settings(endpoint, settings.data_dir))
    database = await open_database(settings, "updates", MIGRATIONS, Base.metadata)
    dialect = database.engine.dialect.name
    store = CrashingStore(database.sessions, dialect, database.reads)
    state_store = StateStore(database.sessions, dialect, database.reads)
    blobs = open_blob_store(settings)
    states = StateTexts(blobs, state_store)
    clock = ManualClock()
    updates = Updates(store, DatabaseOnlyLock(), clock, states)
    try:
        yield Parts(database, store, state_store, blobs, states, updates, clock)
    finally:
        await database.engine.dispose()


async def test_gc_removes_a_blob_whose_row_never_committed_and_never_a_named_one(
    parts: Parts,
) -> None:
    parts.store.crash = True
    with pytest.raises(RuntimeError, match="injected crash"):
        await parts.updates.import_deployment("stack-1", PATH, deployment("orphan"), "alice")
    parts.store.crash = False
    [orphan] = await parts.digests()
    assert await parts.rows() == []
    await parts.updates.import_deployment("stack-1", PATH, deployment("kept"), "alice")
    [row] = await parts.rows()
    assert row.blob_digest and row.data == b""
    assert await parts.digests() == {orphan, row.blob_digest}

    # The first pass only notes the orphan: its row might still be on its way.
    first = await parts.collect()
    assert (first.listed, first.named, first.noted, first.deleted) == (2, 1, 1, 0)
    parts.clock.advance(GRACE / 2)
    assert (await parts.collect()).deleted == 0
    assert orphan in await parts.digests()
    # Past the grace period (counted from when it was first seen unnamed) it goes.
    parts.clock.advance(GRACE / 2 + 1)
    assert (await parts.collect()).deleted == 1
    assert await parts.digests() == {row.blob_digest}
    for _ in range(3):
        parts.clock.advance(GRACE * 10)
        assert (await parts.collect()).deleted == 0
    assert await parts.updates.export("stack-1", 1) == deployment("kept")


async def test_a_noted_blob_named_again_before_the_grace_period_ends_is_kept(parts: Parts) -> None:
    parts.store.crash = True
    with pytest.raises(RuntimeError):
        await parts.updates.import_deployment("stack-1", PATH, deployment("same"), "alice")
    parts.store.crash = False
    await parts.collect()  # noted
    parts.clock.advance(GRACE - 10)
    # The same bytes are written again, and this time their row commits.
    await parts.updates.import_deployment("stack-1", PATH, deployment("same"), "alice")
    parts.clock.advance(GRACE)
    assert (await parts.collect()).deleted == 0
    assert await parts.updates.export("stack-1", 0) == deployment("same")


async def test_a_blob_collected_between_write_and_commit_is_written_again(parts: Parts) -> None:
    async def collected_meanwhile(final: FinalState) -> None:
        assert final.blob_digest
        await parts.blobs.delete(final.blob_digest)

    parts.store.before = collected_meanwhile
    await parts.updates.import_deployment("stack-1", PATH, deployment("raced"), "alice")
    parts.store.before = None
    assert await parts.updates.export("stack-1", 1) == deployment("raced")


async def test_migrate_moves_texts_out_of_rows_idempotently(parts: Parts) -> None:
    texts = [deployment(f"v{index}") for index in range(3)]
    for text in texts:
        await parts.updates.import_deployment("stack-1", PATH, text, "alice")
    # Make the rows look like rows written before the blob store: text inline, no blob.
    for row in await parts.rows():
        assert row.blob_digest
        compressed = await parts.blobs.get(row.blob_digest)
        async with parts.database.sessions.begin() as session:
            await session.execute(
                sql_update(StackVersionRow)
                .where(StackVersionRow.version == row.version)
                .values(data=compressed, blob_digest=None)
            )
        await parts.blobs.delete(row.blob_digest)
    assert await parts.digests() == set()
    # Reads work from rows meanwhile.
    assert await parts.updates.export("stack-1", 2) == texts[1]
    assert await move_texts(parts.blobs, parts.state_store, batch=2) == 3
    assert await move_texts(parts.blobs, parts.state_store) == 0
    rows = await parts.rows()
    assert all(row.data == b"" and row.blob_digest for row in rows)
    assert await parts.digests() == {row.blob_digest for row in rows}
    for version, text in enumerate(texts, start=1):
        assert await parts.updates.export("stack-1", version) == text


async def test_cairn_migrate_moves_existing_texts(data_dir: Path) -> None:
    settings = make_settings(data_dir, f"sqlite+aiosqlite:///{data_dir / 'cairn.db'}")
    await migrate(settings)
    database = await open_database(settings, "updates", MIGRATIONS, Base.metadata)
    try:
        async with database.sessions.begin() as session:
            session.add(
                StackVersionRow(
                    stack_id="stack-1",
                    version=1,
                    update_id="u1",
                    data=b"old compressed text",
                    size=10,
                    sha256="0" * 64,
                    resource_count=0,
                    created_at=1.0,
                )
            )
        await migrate(settings)
        await migrate(settings)
        async with database.reads.begin() as session:
            row = await session.scalar(select(StackVersionRow))
        assert row is not None and row.data == b"" and row.blob_digest
        assert await open_blob_store(settings).get(row.blob_digest) == b"old compressed text"
    finally:
        await database.engine.dispose()


async def test_retention_prunes_old_versions_and_export_says_gone(parts: Parts) -> None:
    retentions = Retentions(parts.state_store, parts.states, parts.clock.now)
    texts = [deployment(f"v{index}") for index in range(4)]
    for text in texts[:3]:
        await parts.updates.import_deployment("stack-1", PATH, text, "alice")
    await parts.updates.import_deployment("stack-2", PATH, texts[0], "alice")
    # The organization keeps 2, stack-1 keeps 1; stack-2 follows the organization.
    await retentions.set_organization("acme", 2)
    settings = await retentions.set_stack("acme", "stack-1", 1)
    assert (settings.keep_versions, settings.stacks) == (2, {"stack-1": 1})
    for version in (1, 2):
        with pytest.raises(Gone, match=f"version {version} was removed"):
            await parts.updates.export("stack-1", version)
    assert await parts.updates.export("stack-1", 3) == texts[2]
    assert await parts.updates.export("stack-2", 1) == texts[0]
    # Later versions prune as they come.
    await parts.updates.import_deployment("stack-1", PATH, texts[3], "alice")
    with pytest.raises(Gone):
        await parts.updates.export("stack-1", 3)
    assert await parts.updates.export("stack-1", 0) == texts[3]
    pruned = [row for row in await parts.rows() if row.pruned_at is not None]
    assert sorted((row.stack_id, row.version) for row in pruned) == [
        ("stack-1", v) for v in (1, 2, 3)
    ]
    assert all(row.size > 0 and row.blob_digest is None for row in pruned)
    # Their blobs are garbage now (texts[0]'s bytes stay: stack-2 names them).
    await parts.collect()
    parts.clock.advance(GRACE + 1)
    assert (await parts.collect()).deleted == 2
    assert await parts.updates.export("stack-2", 1) == texts[0]
    # Clearing the setting keeps every later version again.
    await retentions.set_stack("acme", "stack-1", None)
    await retentions.set_organization("acme", None)
    await parts.updates.import_deployment("stack-1", PATH, texts[1], "alice")
    assert await parts.updates.export("stack-1", 4) == texts[3]


async def test_an_update_of_5000_resources_with_state_in_s3_exports_what_was_written(
    data_dir: Path, s3_endpoint: str
) -> None:
    settings = make_settings(
        data_dir,
        f"sqlite+aiosqlite:///{data_dir / 'cairn.db'}",
        **s3_settings(s3_endpoint, data_dir),
    )
    service = await updates_server.start(settings, host="127.0.0.1", port=0, clock=ManualClock())
    channel = signed_channel(settings, f"127.0.0.1:{service.port}")
    try:
        stub = updates_pb2_grpc.UpdatesServiceStub(channel)
        text = deployment("big", 5000)
        created = await stub.CreateUpdate(
            updates_pb2.CreateUpdateRequest(stack_id="stack-1", kind="update", program=b"{}")
        )
        started = await stub.StartUpdate(
            updates_pb2.StartUpdateRequest(stack_id="stack-1", update_id=created.update_id)
        )
        lease = updates_pb2.LeaseRef(update_id=created.update_id, token=started.token)
        await stub.PatchCheckpoint(
            updates_pb2.PatchCheckpointRequest(lease=lease, untyped_deployment=text)
        )
        await stub.CompleteUpdate(
            updates_pb2.CompleteUpdateRequest(lease=lease, status="succeeded")
        )
        for version in (0, 1):
            exported = await stub.ExportDeployment(
                updates_pb2.ExportDeploymentRequest(stack_id="stack-1", version=version)
            )
            assert exported.untyped_deployment == text
    finally:
        await channel.close(None)
        await service.stop(0)
    # The text is in the bucket, and the database row holds none of it.
    blobs = open_blob_store(settings)
    [digest] = [d async for d in blobs.list_digests()]
    database = await open_database(settings, "updates", MIGRATIONS, Base.metadata)
    try:
        async with database.reads.begin() as session:
            row = await session.scalar(select(StackVersionRow))
        assert row is not None and row.blob_digest == digest and row.data == b""
        assert row.resource_count == 5000
    finally:
        await database.engine.dispose()

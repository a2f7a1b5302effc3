"""`cairn backup` while an update writes checkpoints, then `cairn restore --verify` into a
fresh database of the other engine: every stack, version and secret comes back, exports
are identical, and a non-empty target is refused."""

from __future__ import annotations

import asyncio
import base64
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest
from pydantic import SecretStr

from cairn.backup import (
    MANIFEST,
    BackupError,
    TargetNotEmpty,
    backup,
    read_manifest,
    restore,
    service_schemas,
    verify_restored,
)
from services.common.blobs import open_blob_store
from services.common.config import Settings
from services.common.db import create_migration_engine
from services.secrets.crypto import load_master_key
from tests.conftest import make_settings
from tests.gateway.cli import Run, begin, create_stack, resource, summary
from tests.gateway.conftest import AiohttpClient, Cairn, running_cairn

ORG, PROJECT, STACK = "admin", "web", "dev"
S = f"/api/stacks/{ORG}/{PROJECT}/{STACK}"
ENGINES = [("sqlite", "postgres"), ("postgres", "sqlite")]


def _sqlite(directory: Path) -> str:
    return f"sqlite+aiosqlite:///{directory / 'cairn.db'}"


@pytest.fixture(params=ENGINES, ids=["sqlite-to-postgres", "postgres-to-sqlite"])
def engines(
    request: pytest.FixtureRequest, tmp_path: Path, postgres_url: str
) -> tuple[Settings, Settings]:
    """Settings of the source system and of the restore target, on different engines."""
    source_dir, target_dir = tmp_path / "source", tmp_path / "target"
    source_dir.mkdir()
    target_dir.mkdir()
    source, target = request.param
    source_url = _sqlite(source_dir) if source == "sqlite" else postgres_url
    target_url = _sqlite(target_dir) if target == "sqlite" else postgres_url
    return make_settings(source_dir, source_url), make_settings(target_dir, target_url)


async def _completed_update(cairn: Cairn, count: int) -> None:
    run = await begin(cairn, S)
    run.resources = [resource(PROJECT, STACK, f"r{i}") for i in range(count)]
    await run.full_checkpoint({})
    await run.send_events([summary({"create": count})])
    await run.complete()


async def _write_checkpoints(run: Run, written: list[int]) -> None:
    """Checkpoints of 41 to 60 resources, one after the other."""
    for count in range(41, 61):
        run.resources = [resource(PROJECT, STACK, f"r{i}") for i in range(count)]
        await run.full_checkpoint({})
        written.append(count)
        await asyncio.sleep(0)


async def _seal(cairn: Cairn, plaintext: bytes) -> str:
    body = {"plaintext": base64.b64encode(plaintext).decode()}
    sealed = await cairn.json("POST", f"{S}/encrypt", body=body)
    ciphertext: str = sealed["ciphertext"]
    return ciphertext


async def test_backup_while_updating_then_restore_into_the_other_engine(
    engines: tuple[Settings, Settings], tmp_path: Path, aiohttp_client: AiohttpClient
) -> None:
    source_settings, target_settings = engines
    archive = tmp_path / "archive"
    async for source in running_cairn(source_settings, aiohttp_client):
        await create_stack(source, PROJECT, STACK)
        await _completed_update(source, 3)
        await _completed_update(source, 40)
        ciphertext = await _seal(source, b"hunter2")
        exported = {v: await source.json("GET", f"{S}/export/{v}") for v in (1, 2)}
        history = await source.json("GET", f"{S}/updates")

        # An update writes checkpoints while the backup reads its snapshot.
        run = await begin(source, S)
        checkpoints: list[int] = []
        made, _ = await asyncio.gather(
            backup(source_settings, archive), _write_checkpoints(run, checkpoints)
        )
        await run.complete()
        assert made.rows > 0 and made.blobs >= 2
        master_key = load_master_key(None, source_settings.data_dir)

    manifest = read_manifest(archive)
    is_sqlite = source_settings.resolved_database_url().startswith("sqlite")
    assert manifest["engine"] == ("sqlite" if is_sqlite else "postgresql")
    versions = manifest["services"]["updates"]["tables"]["updates_stack_versions"]
    assert versions["rows"] >= 2 and len(versions["sha256"]) == 64
    # The master key is not in the archive.
    key_text = base64.b64encode(master_key)
    for path in archive.rglob("*"):
        if path.is_file():
            assert key_text not in path.read_bytes() and master_key not in path.read_bytes()

    target_settings = target_settings.model_copy(
        update={"master_key": SecretStr(base64.b64encode(master_key).decode())}
    )
    done = await restore(target_settings, archive, verify=True)
    assert done.verified and done.rows == made.rows and done.blobs == made.blobs

    # A second restore into the now populated database is refused, and changes nothing.
    with pytest.raises(TargetNotEmpty):
        await restore(target_settings, archive)

    async for restored in running_cairn(target_settings, aiohttp_client, with_admin=False):
        for version, body in exported.items():
            assert await restored.json("GET", f"{S}/export/{version}") == body
        restored_history = await restored.json("GET", f"{S}/updates")
        # The running update may or may not have been in the snapshot; the rest is identical.
        completed = [u for u in restored_history["updates"] if u["version"] in (1, 2)]
        before = [u for u in history["updates"] if u["version"] in (1, 2)]
        for new, old in zip(completed, before, strict=True):
            # `latestVersion` counts the update that was running during the backup.
            changed = {k for k, v in new.items() if v != old.get(k)}
            assert changed <= {"latestVersion"}, changed
        latest = await restored.json("GET", f"{S}/export")
        assert len(latest["deployment"]["resources"]) in (40, *checkpoints)
        opened = await restored.json("POST", f"{S}/decrypt", body={"ciphertext": ciphertext})
        assert base64.b64decode(opened["plaintext"]) == b"hunter2"


async def test_a_damaged_archive_or_a_non_empty_target_is_refused(
    tmp_path: Path, aiohttp_client: AiohttpClient
) -> None:
    settings = make_settings(tmp_path, _sqlite(tmp_path))
    archive = tmp_path / "archive"
    async for cairn in running_cairn(settings, aiohttp_client):
        await create_stack(cairn, PROJECT, STACK)
        await _completed_update(cairn, 2)
        await backup(settings, archive)
    with pytest.raises(BackupError, match="not empty"):
        await backup(settings, archive)

    # Restoring onto the source itself: its database holds rows. The CLI says so in one
    # line and exits 2.
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("CAIRN_")},
        "CAIRN_DATA_DIR": str(tmp_path),
        "CAIRN_DATABASE_URL": settings.resolved_database_url(),
    }
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "cairn", "restore", "--from", str(archive)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "not empty" in lines[0], done.stderr

    # --verify finds a row that differs from the backup's.
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    fresh_settings = make_settings(fresh, _sqlite(fresh))
    assert (await restore(fresh_settings, archive, verify=True)).verified
    with sqlite3.connect(fresh / "cairn.db") as connection:
        connection.execute("UPDATE stacks_stacks SET owner_login = 'mallory'")
    engine = create_migration_engine(fresh_settings.resolved_database_url())
    try:
        with pytest.raises(BackupError, match="stacks_stacks differ"):
            await verify_restored(
                engine, service_schemas(), read_manifest(archive), open_blob_store(fresh_settings)
            )
    finally:
        await engine.dispose()

    # A changed rows file is found before anything is written.
    fresh = tmp_path / "fresher"
    fresh.mkdir()
    table = archive / "tables" / "stacks_stacks.jsonl"
    table.write_bytes(table.read_bytes().replace(b'"dev"', b'"prod"'))
    with pytest.raises(BackupError, match="damaged"):
        await restore(make_settings(fresh, _sqlite(fresh)), archive)
    manifest: dict[str, Any] = orjson.loads((archive / MANIFEST).read_bytes())
    assert manifest["format"] == "cairn-backup" and manifest["format_version"] == 1

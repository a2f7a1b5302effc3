"""`cairn backup --to s3://…` of a running system and `cairn restore --from s3://… --verify`
into a fresh database of the other engine, through the blob store's client settings (a moto
server on loopback): every table, version and secret comes back."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic import SecretStr

from cairn.archives import ObjectLocation, open_location
from cairn.backup import MANIFEST, BackupError, backup, load_manifest, restore
from cairn.cli import archive_command, migrate, parse_args
from cairn.scheduled import list_archives, scheduled_backups
from services.common.clock import ManualClock
from services.common.config import Settings
from services.secrets.crypto import load_master_key
from tests.blobs.conftest import make_bucket, s3_settings
from tests.conftest import make_settings
from tests.gateway.cli import create_stack
from tests.gateway.conftest import AiohttpClient, running_cairn
from tests.operations.test_backup import PROJECT, STACK, S, _completed_update, _seal


def _s3_client(endpoint: str) -> dict[str, object]:
    """The blob store's S3 client settings, without moving the blobs themselves."""
    fields = s3_settings(endpoint, Path("."))
    return {key: value for key, value in fields.items() if key != "blob_url"}


async def test_backup_to_s3_then_restore_into_postgres(
    tmp_path: Path, s3_endpoint: str, postgres_url: str, aiohttp_client: AiohttpClient
) -> None:
    client = _s3_client(s3_endpoint)
    source_dir, target_dir = tmp_path / "source", tmp_path / "target"
    source_dir.mkdir()
    target_dir.mkdir()
    # Blobs on the source's disk; the archive in a bucket of its own.
    source = make_settings(source_dir, f"sqlite+aiosqlite:///{source_dir / 'cairn.db'}", **client)
    archive = f"s3://{make_bucket(s3_endpoint)}/cairn/nightly"
    async for cairn in running_cairn(source, aiohttp_client):
        await create_stack(cairn, PROJECT, STACK)
        await _completed_update(cairn, 3)
        await _completed_update(cairn, 25)
        ciphertext = await _seal(cairn, b"correct horse")
        exported = {v: await cairn.json("GET", f"{S}/export/{v}") for v in (1, 2)}
        made = await backup(source, archive)
        master_key = load_master_key(None, source_dir)
    assert made.blobs >= 2

    location = open_location(archive, source)
    assert isinstance(location, ObjectLocation)
    manifest = await load_manifest(location)
    assert manifest["engine"] == "sqlite" and len(manifest["blobs"]) == made.blobs
    # A prefix that already holds an archive is refused.
    with pytest.raises(BackupError, match="not empty"):
        await backup(source, archive)

    # The target keeps its blobs in S3 too, in another bucket.
    target = make_settings(
        target_dir,
        postgres_url,
        **s3_settings(s3_endpoint, target_dir),
        master_key=SecretStr(base64.b64encode(master_key).decode()),
    )
    done = await restore(target, archive, verify=True)
    assert done.verified and done.rows == made.rows and done.blobs == made.blobs

    async for restored in running_cairn(target, aiohttp_client, with_admin=False):
        for version, body in exported.items():
            assert await restored.json("GET", f"{S}/export/{version}") == body
        opened = await restored.json("POST", f"{S}/decrypt", body={"ciphertext": ciphertext})
        assert base64.b64decode(opened["plaintext"]) == b"correct horse"


async def test_the_cli_restores_from_s3_and_refuses_a_damaged_object(
    tmp_path: Path, s3_endpoint: str, capsys: pytest.CaptureFixture[str]
) -> None:
    client = _s3_client(s3_endpoint)
    source = make_settings(tmp_path, f"sqlite+aiosqlite:///{tmp_path / 'cairn.db'}", **client)
    await migrate(source)
    archive = f"s3://{make_bucket(s3_endpoint)}/one"
    await archive_command(parse_args(["backup", "--to", archive]), source)
    assert f"to {archive}" in capsys.readouterr().out

    # A changed rows object: one line, exit 2, nothing written to the target.
    location = open_location(archive, source)
    table = "tables/stacks_stacks.jsonl"
    await location.put_bytes(table, b'{"id": "forged"}\n')
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    target: Settings = make_settings(fresh, f"sqlite+aiosqlite:///{fresh / 'cairn.db'}", **client)
    with pytest.raises(SystemExit) as exit_info:
        await archive_command(parse_args(["restore", "--from", archive, "--verify"]), target)
    assert exit_info.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "stacks_stacks" in lines[0] and "damaged" in lines[0]
    assert not (fresh / "cairn.db").exists()

    # Without its manifest the prefix is not an archive.
    empty = f"s3://{make_bucket(s3_endpoint)}/none"
    with pytest.raises(SystemExit):
        await archive_command(parse_args(["restore", "--from", empty]), target)
    assert MANIFEST in capsys.readouterr().err


async def test_scheduled_backups_to_s3_keep_the_newest(
    tmp_path: Path, s3_endpoint: str, capsys: pytest.CaptureFixture[str]
) -> None:
    target = f"s3://{make_bucket(s3_endpoint)}/cairn"
    settings = make_settings(
        tmp_path,
        f"sqlite+aiosqlite:///{tmp_path / 'cairn.db'}",
        backup_to=target,
        backup_keep=1,
        **_s3_client(s3_endpoint),
    )
    await migrate(settings)
    location = open_location(target, settings)
    # Something else under the prefix is never touched.
    await location.put_bytes("notes/readme.txt", b"keep me")
    clock = ManualClock(datetime(2026, 12, 2, 2, 30, tzinfo=UTC).timestamp())
    backups = scheduled_backups(settings, clock)
    assert backups is not None
    scheduler = backups.scheduler
    assert await scheduler.run_firing(clock.now()) == "made"
    clock.advance(3600)
    assert await scheduler.run_firing(clock.now()) == "made"
    await backups.stop()
    entries = await list_archives(location)
    assert [(e.name, e.is_complete) for e in entries] == [("cairn-20261202T033000Z", True)]
    assert await location.children() == ["cairn-20261202T033000Z", "notes"]
    capsys.readouterr()
    await archive_command(parse_args(["backup", "--list"]), settings)
    assert capsys.readouterr().out.startswith("cairn-20261202T033000Z  complete")
    restored = tmp_path / "restored"
    restored.mkdir()
    fresh = make_settings(
        restored, f"sqlite+aiosqlite:///{restored / 'cairn.db'}", **_s3_client(s3_endpoint)
    )
    done = await restore(fresh, f"{target}/cairn-20261202T033000Z", verify=True)
    assert done.verified

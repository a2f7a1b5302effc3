"""A restore refuses, in one line with exit status 2 and before writing anything, an archive
whose manifest format version it does not know, a damaged manifest, and a missing or changed
file."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from cairn.backup import MANIFEST, backup
from cairn.cli import archive_command, migrate, parse_args
from tests.conftest import make_settings


def _sqlite(directory: Path) -> str:
    return f"sqlite+aiosqlite:///{directory / 'cairn.db'}"


def _edit_manifest(change: Callable[[dict[str, Any]], object]) -> Callable[[Path], object]:
    def edit(archive: Path) -> None:
        manifest = orjson.loads((archive / MANIFEST).read_bytes())
        change(manifest)
        (archive / MANIFEST).write_bytes(orjson.dumps(manifest))

    return edit


def _first_blob(archive: Path) -> Path:
    return next((archive / "blobs").iterdir())


DAMAGES: dict[str, tuple[Callable[[Path], object], str]] = {
    "unknown version": (
        _edit_manifest(lambda m: m.update(format_version=2)),
        "format version 2, which this Cairn does not know",
    ),
    "not json": (lambda a: (a / MANIFEST).write_bytes(b"{not json"), "not valid JSON"),
    "no manifest": (lambda a: (a / MANIFEST).unlink(), "holds no manifest.json"),
    "incomplete manifest": (_edit_manifest(lambda m: m.pop("blobs")), "incomplete or damaged"),
    "escaping file name": (
        _edit_manifest(
            lambda m: m["services"]["stacks"]["tables"]["stacks_stacks"].update(
                file="../../etc/passwd"
            )
        ),
        "incomplete or damaged",
    ),
    "missing rows": (lambda a: (a / "tables" / "stacks_stacks.jsonl").unlink(), "stacks_stacks"),
    "changed blob": (lambda a: _first_blob(a).write_bytes(b"forged"), "damaged"),
    "missing blob": (lambda a: _first_blob(a).unlink(), "missing or damaged"),
}


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An archive of a database holding one blob (a stored state version)."""
    import asyncio

    from services.common.blobs import digest_of, open_blob_store
    from services.common.db import create_migration_engine

    directory = tmp_path_factory.mktemp("source")
    settings = make_settings(directory, _sqlite(directory))

    async def make() -> None:
        await migrate(settings)
        blob = b"compressed state"
        await open_blob_store(settings).put(digest_of(blob), blob)
        engine = create_migration_engine(settings.resolved_database_url())
        try:
            async with engine.begin() as connection:
                await connection.exec_driver_sql(
                    "INSERT INTO updates_stack_versions (stack_id, version, update_id, data, "
                    "size, sha256, resource_count, created_at, blob_digest) "
                    f"VALUES ('s1', 1, 'u1', x'', 0, '', 0, 0, '{digest_of(blob)}')"
                )
        finally:
            await engine.dispose()
        await backup(settings, directory / "archive")

    asyncio.run(make())
    return directory / "archive"


@pytest.mark.parametrize("damage", sorted(DAMAGES))
async def test_a_damaged_archive_is_refused_before_anything_is_written(
    damage: str, pristine: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    archive = tmp_path / "archive"
    shutil.copytree(pristine, archive)
    change, expected = DAMAGES[damage]
    change(archive)
    target = tmp_path / "target"
    target.mkdir()
    settings = make_settings(target, _sqlite(target))
    with pytest.raises(SystemExit) as exit_info:
        await archive_command(parse_args(["restore", "--from", str(archive), "--verify"]), settings)
    assert exit_info.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], lines
    assert list(target.iterdir()) == []

"""The data directory is private: 0700, and every file Cairn writes there 0600 (the SQLite
database, its WAL and SHM, the generated master key), also when it already exists looser."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from cairn.cli import start_services
from services.common.datadir import prepare_database_files
from tests.conftest import make_settings

EXPECTED_FILES = {"cairn.db", "cairn.db-wal", "cairn.db-shm", "master.key"}


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def open_umask() -> Iterator[None]:
    """A permissive umask, so only Cairn's own choice of modes can keep the files private."""
    previous = os.umask(0o000)
    try:
        yield
    finally:
        os.umask(previous)


async def _start_and_stop(data_dir: Path) -> None:
    settings = make_settings(data_dir, f"sqlite+aiosqlite:///{data_dir / 'cairn.db'}")
    system = await start_services(settings)
    try:
        # Every file SQLite keeps is there while the services hold the database open.
        _assert_private(data_dir)
    finally:
        await system.stop(grace=0)


def _assert_private(data_dir: Path) -> None:
    assert _mode(data_dir) == 0o700
    modes = {path.name: _mode(path) for path in data_dir.iterdir()}
    assert set(modes) >= EXPECTED_FILES, modes
    assert all(mode == 0o600 for mode in modes.values()), modes


@pytest.mark.usefixtures("open_umask")
async def test_a_new_data_dir_and_its_files_are_private(tmp_path: Path) -> None:
    data_dir = tmp_path / "fresh" / "data"
    await _start_and_stop(data_dir)


@pytest.mark.usefixtures("open_umask")
async def test_an_existing_world_readable_data_dir_is_tightened(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    await _start_and_stop(data_dir)
    # As an older Cairn (or a permissive umask) left them.
    data_dir.chmod(0o755)
    for path in data_dir.iterdir():
        path.chmod(0o644)
    await _start_and_stop(data_dir)


@pytest.mark.usefixtures("open_umask")
def test_a_database_outside_the_data_dir_is_created_private_but_never_chmodded(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "data"
    elsewhere = tmp_path / "shared"
    elsewhere.mkdir(mode=0o755)
    created = elsewhere / "new.db"
    prepare_database_files(f"sqlite+aiosqlite:///{created}", data_dir)
    assert _mode(created) == 0o600
    assert _mode(data_dir) == 0o700

    # A user's existing file (and directory) outside the data dir keeps its mode.
    existing = elsewhere / "theirs.db"
    existing.touch(mode=0o644)
    prepare_database_files(f"sqlite+aiosqlite:///{existing}", data_dir)
    assert _mode(existing) == 0o644
    assert _mode(elsewhere) == 0o755

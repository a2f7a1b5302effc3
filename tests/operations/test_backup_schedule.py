"""Scheduled backups on an injected clock: one archive per firing under the target, the newest
CAIRN_BACKUP_KEEP kept once a new one checked out, failures logged in one line and retried at
the next firing, one replica per firing on PostgreSQL, and `cairn backup --list`."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic import ValidationError
from structlog.testing import capture_logs

from cairn.archives import ArchiveLocation, DirectoryLocation
from cairn.backup import BackupError, BackupSummary, backup
from cairn.cli import archive_command, migrate, parse_args
from cairn.scheduled import (
    AdvisoryLock,
    ArchiveEntry,
    BackupScheduler,
    FileLock,
    archive_name,
    archive_time,
    expired,
    list_archives,
    next_firing,
    run_backup_now,
    scheduled_backups,
)
from services.common.clock import ManualClock
from services.common.config import Settings
from services.common.db import create_migration_engine
from tests.conftest import make_settings

# 2026-12-02 01:00:00 UTC.
START = datetime(2026, 12, 2, 1, 0, tzinfo=UTC).timestamp()
HOURLY = "0 * * * *"


def _at(hour: int) -> str:
    return archive_name(datetime(2026, 12, 2, hour, 0, tzinfo=UTC).timestamp())


def test_firings_and_names_are_utc() -> None:
    assert next_firing("0 3 * * *", START) == datetime(2026, 12, 2, 3, tzinfo=UTC).timestamp()
    # Strictly after: a firing's own time gives the next one.
    at_three = datetime(2026, 12, 2, 3, tzinfo=UTC).timestamp()
    assert next_firing("0 3 * * *", at_three) == at_three + 86400
    assert archive_name(at_three) == "cairn-20261202T030000Z"
    assert archive_time("cairn-20261202T030000Z") == datetime(2026, 12, 2, 3, tzinfo=UTC)
    assert archive_time("notes") is None and archive_time("cairn-yesterday") is None


def test_a_schedule_must_be_five_cron_fields(tmp_path: Path) -> None:
    for bad in ("every night", "0 3 * *", "0 3 * * * *", "61 * * * *"):
        with pytest.raises(ValidationError, match="cron"):
            Settings(_env_file=None, data_dir=tmp_path, backup_schedule=bad)  # type: ignore[call-arg]
    with pytest.raises(ValidationError):
        Settings(_env_file=None, data_dir=tmp_path, backup_keep=0)  # type: ignore[call-arg]


def test_retention_keeps_the_newest_complete_archives() -> None:
    entries = [
        ArchiveEntry("cairn-20261201T010000Z", is_complete=True),
        ArchiveEntry("cairn-20261201T020000Z", is_complete=False),
        ArchiveEntry("cairn-20261201T030000Z", is_complete=True),
        ArchiveEntry("cairn-20261201T040000Z", is_complete=True),
    ]
    assert expired(entries, "cairn-20261201T040000Z", 2) == [
        "cairn-20261201T010000Z",
        "cairn-20261201T020000Z",
    ]
    assert expired(entries, "cairn-20261201T040000Z", 5) == ["cairn-20261201T020000Z"]


def _lock(directory: Path) -> FileLock:
    return FileLock(directory / "backup.lock")


def _settings(directory: Path, **overrides: object) -> Settings:
    return make_settings(directory, f"sqlite+aiosqlite:///{directory / 'cairn.db'}", **overrides)


class Failing:
    """A backup that fails for chosen firings, leaving part of an archive behind."""

    def __init__(self, failing: set[int], message: str) -> None:
        self.failing = failing
        self.message = message
        self.calls = 0

    async def __call__(self, settings: Settings, location: ArchiveLocation) -> BackupSummary:
        self.calls += 1
        if self.calls in self.failing:
            await location.put_bytes("tables/identity_users.jsonl", b"{}\n")
            raise OSError(self.message)
        return await backup(settings, location)


async def test_each_firing_makes_one_archive_and_older_ones_go(tmp_path: Path) -> None:
    settings = _settings(tmp_path, backup_keep=2, backup_schedule=HOURLY)
    await migrate(settings)
    target = DirectoryLocation(tmp_path / "backups")
    clock = ManualClock(START + 30 * 60)  # 01:30

    async def sleep(seconds: float) -> None:
        clock.advance(seconds)  # no wall time passes

    # The second firing fails with a message naming a password; the third retries.
    failing = Failing({2}, "connect to postgresql://cairn:hunter2@db failed")
    scheduler = BackupScheduler(settings, target, _lock(tmp_path), clock, sleep, failing)
    with capture_logs() as captured:
        await scheduler.run(firings=2)
    assert [e.name for e in await list_archives(target)] == [_at(2), _at(3)]
    assert [e.is_complete for e in await list_archives(target)] == [True, False]
    failures = [e for e in captured if e["event"] == "scheduled_backup_failed"]
    assert len(failures) == 1 and failures[0]["error"] == "OSError"
    assert "hunter2" not in repr(captured)

    with capture_logs() as captured:
        await scheduler.run(firings=3)
    # 04:00 retried and removed the unfinished 03:00; 05:00 and 06:00 each removed the
    # complete archive beyond the newest two.
    entries = await list_archives(target)
    assert [(e.name, e.is_complete) for e in entries] == [(_at(5), True), (_at(6), True)]
    made = [e for e in captured if e["event"] == "scheduled_backup_made"]
    assert [e["removed"] for e in made] == [[_at(3)], [_at(2)], [_at(4)]]
    assert clock.now() == datetime(2026, 12, 2, 6, tzinfo=UTC).timestamp()


async def test_an_archive_that_does_not_check_out_removes_nothing(tmp_path: Path) -> None:
    settings = _settings(tmp_path, backup_keep=1, backup_schedule=HOURLY)
    await migrate(settings)
    target = DirectoryLocation(tmp_path / "backups")

    async def damaged(settings: Settings, location: ArchiveLocation) -> BackupSummary:
        made = await backup(settings, location)
        assert isinstance(location, DirectoryLocation)
        (location.root / "tables" / "stacks_stacks.jsonl").write_bytes(b"{}\n")
        return made

    good = BackupScheduler(settings, target, _lock(tmp_path), ManualClock(START))
    assert await good.run_firing(START + 3600) == "made"
    bad = BackupScheduler(
        settings, target, _lock(tmp_path), ManualClock(START), make_backup=damaged
    )
    with capture_logs() as captured:
        assert await bad.run_firing(START + 7200) == "failed"
    (failure,) = [e for e in captured if e["event"] == "scheduled_backup_failed"]
    assert "stacks_stacks" in failure["error"] and "damaged" in failure["error"]
    entries = await list_archives(target)
    assert [(e.name, e.is_complete) for e in entries] == [(_at(2), True), (_at(3), True)]
    # The same firing again: its archive is there, so nothing is made twice.
    assert await good.run_firing(START + 3600) == "exists"


async def test_one_replica_makes_a_firing_on_postgres(tmp_path: Path, postgres_url: str) -> None:
    settings = make_settings(tmp_path, postgres_url, backup_schedule=HOURLY)
    await migrate(settings)
    target = DirectoryLocation(tmp_path / "backups")
    engines = [create_migration_engine(postgres_url) for _ in range(2)]
    started, released = asyncio.Event(), asyncio.Event()

    async def held(settings: Settings, location: ArchiveLocation) -> BackupSummary:
        started.set()
        await released.wait()
        return await backup(settings, location)

    clock = ManualClock(START)
    first = BackupScheduler(settings, target, AdvisoryLock(engines[0]), clock, make_backup=held)
    second = BackupScheduler(settings, target, AdvisoryLock(engines[1]), clock)
    try:
        firing = START + 3600
        running = asyncio.create_task(first.run_firing(firing))
        await asyncio.wait_for(started.wait(), 60)
        assert await second.run_firing(firing) == "busy"
        released.set()
        assert await running == "made"
        # Late to the same firing: the archive is complete, nothing more is made.
        assert await second.run_firing(firing) == "exists"
    finally:
        released.set()
        for engine in engines:
            await engine.dispose()
    assert [e.name for e in await list_archives(target)] == [_at(2)]


async def test_the_cli_backs_up_now_and_lists(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "backups"
    settings = _settings(tmp_path, backup_to=str(target), backup_keep=1)
    await migrate(settings)
    clock = ManualClock(START)
    first = await run_backup_now(settings, clock)
    clock.advance(60)
    second = await run_backup_now(settings, clock)
    assert first.endswith("cairn-20261202T010000Z") and second.endswith("cairn-20261202T010100Z")
    (target / "cairn-20261203T000000Z").mkdir()
    (target / "cairn-20261203T000000Z" / "tables").mkdir()
    (target / "cairn-20261203T000000Z" / "tables" / "x.jsonl").write_bytes(b"")
    capsys.readouterr()
    await archive_command(parse_args(["backup", "--list"]), settings)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("cairn-20261202T010100Z  complete  2")
    assert lines[1].startswith("cairn-20261203T000000Z  unfinished")

    # While the running system holds the lock, a backup by hand waits for another time.
    async with _lock(tmp_path).hold() as held:
        assert held
        with pytest.raises(BackupError, match="another process"):
            await run_backup_now(settings, clock)
        async with _lock(tmp_path).hold() as again:
            assert not again

    # A target nothing can be written to is one line at start, never a traceback.
    with pytest.raises(BackupError, match="CAIRN_BACKUP_TO"):
        scheduled_backups(settings.model_copy(update={"backup_to": "ftp://host/x"}))
    assert scheduled_backups(settings.model_copy(update={"backup_to": ""})) is None


async def test_the_lock_follows_the_engine(tmp_path: Path) -> None:
    target = str(tmp_path / "backups")
    on_sqlite = scheduled_backups(_settings(tmp_path, backup_to=target))
    assert on_sqlite is not None and isinstance(on_sqlite.scheduler.lock, FileLock)
    await on_sqlite.stop()
    url = "postgresql+asyncpg://cairn@127.0.0.1:5432/cairn"
    on_postgres = scheduled_backups(make_settings(tmp_path, url, backup_to=target))
    assert on_postgres is not None and isinstance(on_postgres.scheduler.lock, AdvisoryLock)
    # Building it connects to nothing; stopping it disposes of its engine.
    await on_postgres.stop()


async def test_a_lock_that_cannot_be_taken_fails_the_firing_not_the_schedule(
    tmp_path: Path,
) -> None:
    settings = _settings(tmp_path, backup_schedule=HOURLY)
    clock = ManualClock(START)

    async def sleep(seconds: float) -> None:
        clock.advance(seconds)

    # The lock's database refuses connections (a closed port on loopback).
    engine = create_migration_engine("postgresql+asyncpg://cairn:hunter2@127.0.0.1:9/cairn")
    target = DirectoryLocation(tmp_path / "backups")
    scheduler = BackupScheduler(settings, target, AdvisoryLock(engine), clock, sleep)
    try:
        with capture_logs() as captured:
            await scheduler.run(firings=2)
    finally:
        await engine.dispose()
    failures = [e for e in captured if e["event"] == "scheduled_backup_failed"]
    assert [f["archive"].rsplit("/", 1)[-1] for f in failures] == [_at(2), _at(3)]
    assert "hunter2" not in repr(captured)

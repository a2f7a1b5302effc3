"""Scheduled backups: `CAIRN_BACKUP_TO`, `CAIRN_BACKUP_SCHEDULE` (5-field cron, UTC) and
`CAIRN_BACKUP_KEEP`.

Each firing writes one archive into its own child of the target, named after the firing's
time (`cairn-20261202T030000Z`), so every process computes the same name for the same firing.
The updates processes run the schedule (the command wires it in; see docs/operations.md):

- with replicas on PostgreSQL, a firing's backup runs only in the process holding a session
  advisory lock; another replica that gets the lock later finds the firing's archive complete
  and does nothing, so a firing makes one archive;
- on SQLite there is one process, the embedded system; a file lock in the data dir keeps a
  `cairn backup` run by hand beside it from making or pruning archives at the same time.

A new archive is read back and checked against its manifest; only then are the complete
archives beyond the newest `CAIRN_BACKUP_KEEP`, and the unfinished ones older than the new
one, removed. A failure is one log line (no secret in it) and the next firing tries again.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal, Protocol

from croniter import croniter
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from cairn.archives import ArchiveLocation, ArchiveStorageError, open_location
from cairn.backup import BackupError, BackupSummary, backup, check_archive, load_manifest
from services.common.clock import Clock, SystemClock
from services.common.config import Settings
from services.common.datadir import PRIVATE_DIR_MODE, PRIVATE_FILE_MODE
from services.common.db import create_migration_engine, is_sqlite
from services.common.logging import get_logger
from services.common.loop import cancel_and_wait

log = get_logger("cairn.backups")

ARCHIVE_PREFIX = "cairn-"
STAMP_FORMAT = "%Y%m%dT%H%M%SZ"
# The loop wakes at least this often to look at the clock again (it may have been set).
MAX_SLEEP_SECONDS = 300.0
LOCK_ID = zlib.crc32(b"cairn-scheduled-backup")
LOCK_FILE = "backup.lock"

Outcome = Literal["made", "exists", "busy", "failed"]
BackupFunction = Callable[[Settings, ArchiveLocation], Awaitable[BackupSummary]]
Sleep = Callable[[float], Awaitable[None]]


def archive_name(firing: float) -> str:
    """The name of a firing's archive: `cairn-` and its UTC time (sorts oldest first)."""
    return ARCHIVE_PREFIX + datetime.fromtimestamp(firing, UTC).strftime(STAMP_FORMAT)


def archive_time(name: str) -> datetime | None:
    """The firing time an archive's name carries; None for other names."""
    if not name.startswith(ARCHIVE_PREFIX):
        return None
    try:
        moment = datetime.strptime(name.removeprefix(ARCHIVE_PREFIX), STAMP_FORMAT)
    except ValueError:
        return None
    return moment.replace(tzinfo=UTC)


def next_firing(schedule: str, after: float) -> float:
    """The first time strictly after `after` that the cron expression (UTC) names."""
    start = datetime.fromtimestamp(after, UTC)
    following: float = croniter(schedule, start).get_next(float)
    return following


@dataclass(frozen=True)
class ArchiveEntry:
    """One archive of a backup target, as `cairn backup --list` shows it."""

    name: str
    is_complete: bool
    created_at: str = ""
    rows: int = 0
    blobs: int = 0
    problem: str = ""


async def list_archives(location: ArchiveLocation) -> list[ArchiveEntry]:
    """The target's archives (children named `cairn-<UTC time>`), oldest first."""
    entries = []
    for name in await location.children():
        if archive_time(name) is None:
            continue
        try:
            manifest = await load_manifest(location.child(name))
        except BackupError as error:
            entries.append(ArchiveEntry(name, is_complete=False, problem=str(error)))
            continue
        rows = sum(
            table["rows"]
            for service in manifest["services"].values()
            for table in service["tables"].values()
        )
        entries.append(
            ArchiveEntry(
                name,
                is_complete=True,
                created_at=str(manifest.get("created_at", "")),
                rows=rows,
                blobs=len(manifest["blobs"]),
            )
        )
    return entries


def expired(entries: list[ArchiveEntry], newest: str, keep: int) -> list[str]:
    """Archives to remove once `newest` is complete: complete ones beyond the newest `keep`,
    and unfinished ones older than `newest` (left by failed firings)."""
    complete = [entry.name for entry in entries if entry.is_complete]
    kept = set(sorted(complete)[-keep:])
    return sorted(
        entry.name
        for entry in entries
        if entry.name != newest
        and (entry.name not in kept if entry.is_complete else entry.name < newest)
    )


class FiringLock(Protocol):
    def hold(self) -> contextlib.AbstractAsyncContextManager[bool]:
        """Enter with True when this process may run the firing, False when another does."""
        ...


class FileLock:
    """On SQLite: an exclusive `flock` on a file in the data dir, so the embedded system and a
    `cairn backup` run by hand beside it never make or prune archives at the same time."""

    def __init__(self, path: Path) -> None:
        self._path = path

    @contextlib.asynccontextmanager
    async def hold(self) -> AsyncIterator[bool]:
        self._path.parent.mkdir(parents=True, exist_ok=True, mode=PRIVATE_DIR_MODE)
        descriptor = os.open(self._path, os.O_RDWR | os.O_CREAT, PRIVATE_FILE_MODE)
        try:
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield False
                return
            try:
                yield True
            finally:
                fcntl.flock(descriptor, fcntl.LOCK_UN)
        finally:
            os.close(descriptor)


class AdvisoryLock:
    """A PostgreSQL session advisory lock, held on its own connection for the firing."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    @contextlib.asynccontextmanager
    async def hold(self) -> AsyncIterator[bool]:
        async with self._engine.connect() as connection:
            acquired = bool(
                await connection.scalar(text("SELECT pg_try_advisory_lock(:id)"), {"id": LOCK_ID})
            )
            await connection.commit()
            try:
                yield acquired
            finally:
                if acquired:
                    unlock = text("SELECT pg_advisory_unlock(:id)")
                    await connection.execute(unlock, {"id": LOCK_ID})
                    await connection.commit()


async def _backup_into(settings: Settings, location: ArchiveLocation) -> BackupSummary:
    return await backup(settings, location)


def _one_line(error: BaseException) -> str:
    if isinstance(error, BackupError | ArchiveStorageError):
        message = str(error)
    else:
        # Not ours: the type only, since a driver's message may quote a connection string.
        message = f"{type(error).__name__}"
    return message.splitlines()[0][:500] if message else type(error).__name__


@dataclass
class BackupScheduler:
    """Runs one firing at a time against one target, with the given lock and clock."""

    settings: Settings
    location: ArchiveLocation
    lock: FiringLock
    clock: Clock
    sleep: Sleep = asyncio.sleep
    make_backup: BackupFunction = _backup_into

    async def run_firing(self, firing: float) -> Outcome:
        """The firing's backup (unless another process made or makes it), then retention."""
        name = archive_name(firing)
        try:
            async with self.lock.hold() as acquired:
                if not acquired:
                    log.info("scheduled_backup_elsewhere", archive=name)
                    return "busy"
                return await self._run(name)
        except Exception as error:
            # The lock's database away, say: this firing is lost, the schedule goes on.
            where = self.location.child(name).describe()
            log.warning("scheduled_backup_failed", archive=where, error=_one_line(error))
            return "failed"

    async def _run(self, name: str) -> Outcome:
        where = self.location.child(name).describe()
        try:
            made, removed = await self.make_archive(name)
        except Exception as error:
            log.warning("scheduled_backup_failed", archive=where, error=_one_line(error))
            return "failed"
        if made is None:
            log.info("scheduled_backup_exists", archive=where)
            return "exists"
        log.info(
            "scheduled_backup_made",
            archive=where,
            rows=made.rows,
            blobs=made.blobs,
            removed=removed,
        )
        return "made"

    async def make_archive(self, name: str) -> tuple[BackupSummary | None, list[str]]:
        """The archive `name` (None if it is complete already), checked, then retention: the
        names of the archives removed."""
        archive = self.location.child(name)
        try:
            await load_manifest(archive)
        except BackupError:
            pass
        else:
            return None, []
        if not await archive.is_empty():
            # What a failed try of this firing left behind.
            await archive.remove()
        made = await self.make_backup(self.settings, archive)
        # Only an archive that reads back whole lets older ones go.
        await check_archive(archive, await load_manifest(archive))
        removed = expired(await list_archives(self.location), name, self.settings.backup_keep)
        for old in removed:
            await self.location.child(old).remove()
        return made, removed

    async def run(self, *, firings: int | None = None) -> None:
        """Wait for each firing and run it; forever, or for `firings` firings."""
        schedule = self.settings.backup_schedule
        firing = next_firing(schedule, self.clock.now())
        done = 0
        while firings is None or done < firings:
            delay = firing - self.clock.now()
            if delay > 0:
                await self.sleep(min(delay, MAX_SLEEP_SECONDS))
                continue
            await self.run_firing(firing)
            done += 1
            # Firings missed while this one ran are skipped, not made up for.
            firing = next_firing(schedule, max(self.clock.now(), firing))


class ScheduledBackups:
    """The schedule running as a task of a process, with what it holds (a lock connection)."""

    def __init__(self, scheduler: BackupScheduler, engine: AsyncEngine | None) -> None:
        self.scheduler = scheduler
        self._engine = engine
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self.scheduler.run())

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None
        if self._engine is not None:
            await self._engine.dispose()


def backup_target(settings: Settings) -> ArchiveLocation | None:
    """Where `CAIRN_BACKUP_TO` puts archives (None: no scheduled backups); BackupError for a
    target Cairn cannot use."""
    if not settings.backup_to.strip():
        return None
    where: str | Path = settings.backup_to.strip()
    try:
        return open_location(where, settings)
    except ArchiveStorageError as error:
        raise BackupError(f"CAIRN_BACKUP_TO: {error}") from None


def scheduled_backups(settings: Settings, clock: Clock | None = None) -> ScheduledBackups | None:
    """The schedule of `settings`, ready to start; None when `CAIRN_BACKUP_TO` is empty."""
    location = backup_target(settings)
    if location is None:
        return None
    url = settings.resolved_database_url()
    engine: AsyncEngine | None = None
    lock: FiringLock
    if is_sqlite(url):
        lock = FileLock(settings.data_dir / LOCK_FILE)
    else:
        engine = create_migration_engine(url, timeout_seconds=settings.database_timeout_seconds)
        lock = AdvisoryLock(engine)
    scheduler = BackupScheduler(settings, location, lock, clock or SystemClock())
    return ScheduledBackups(scheduler, engine)


async def run_backup_now(settings: Settings, clock: Clock | None = None) -> str:
    """`cairn backup` without `--to`: a firing now, into `CAIRN_BACKUP_TO`, with its retention;
    where the archive went. BackupError when it failed."""
    backups = scheduled_backups(settings, clock)
    if backups is None:
        raise BackupError("CAIRN_BACKUP_TO is not set")
    scheduler = backups.scheduler
    name = archive_name(int(scheduler.clock.now()))
    try:
        async with scheduler.lock.hold() as acquired:
            if not acquired:
                raise BackupError("another process is making a scheduled backup; try again later")
            try:
                await scheduler.make_archive(name)
            except (BackupError, ArchiveStorageError) as error:
                raise BackupError(str(error)) from None
    finally:
        await backups.stop()
    return scheduler.location.child(name).describe()

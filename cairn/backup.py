"""`cairn backup` and `cairn restore`: a consistent, self-describing archive of every
service's tables and the blobs their rows name, restorable into an empty database of either
engine.

An archive is a directory, or the objects under a prefix of an object store (`s3://`, `gs://`,
`az://`; `cairn/archives.py`), holding:

- `manifest.json`: format and version, the engine it came from, each service's migration
  revision, and per table its file, row count, the SHA-256 of the file and a content digest
  (the SHA-256 of the sorted SHA-256s of its rows, so it does not depend on row order, which
  differs between engines); per blob its digest and size. Written last: an archive without
  it is incomplete.
- `tables/<table>.jsonl`: one JSON object per row, columns by name; binary columns base64,
  timestamps ISO 8601 in UTC, JSON columns as JSON.
- `blobs/<digest>`: every blob a row names (`blob_digest` columns), as stored.

Consistency: every table is read in one read-only transaction on one connection: on SQLite a
deferred BEGIN, which in WAL mode reads one snapshot while writers go on; on PostgreSQL
REPEATABLE READ, one snapshot for the whole transaction. Blobs are never rewritten and a
row is committed only after its blob, so every blob the snapshot names exists (the garbage
collector removes a blob only after its rows are gone for `CAIRN_BLOB_GC_GRACE_SECONDS`).

Secrets stay sealed: the secrets service's rows hold data keys wrapped by the master key,
which is not in the archive. Restoring them is useless without the same `CAIRN_MASTER_KEY`.
"""

from __future__ import annotations

import base64
import hashlib
import importlib
import os
import tempfile
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import (
    JSON,
    DateTime,
    Integer,
    LargeBinary,
    MetaData,
    Table,
    TypeDecorator,
    func,
    inspect,
    select,
    text,
)
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.types import TypeEngine

from cairn.archives import (
    ArchiveFileMissing,
    ArchiveLocation,
    ArchiveStorageError,
    DirectoryLocation,
    open_location,
)
from services.common.blobs import (
    BlobStore,
    BlobStoreError,
    check_digest,
    digest_of,
    open_blob_store,
)
from services.common.config import SERVICE_NAMES, Settings
from services.common.datadir import prepare_database_files
from services.common.db import READ_ONLY_OPTION, create_migration_engine
from services.common.migrations import upgrade_to_head, version_table

FORMAT = "cairn-backup"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
TABLES_DIR = "tables"
BLOBS_DIR = "blobs"
# Columns whose value names a blob in the blob store.
BLOB_REFERENCE_COLUMN = "blob_digest"
INSERT_BATCH = 500


class BackupError(Exception):
    """A backup or restore that cannot go on; the message is one line for the operator."""


class TargetNotEmpty(BackupError):
    """The restore target already holds Cairn rows."""


@dataclass(frozen=True)
class ServiceSchema:
    name: str
    metadata: MetaData
    migrations: Path

    def head(self) -> str:
        config = Config()
        config.set_main_option("script_location", str(self.migrations))
        head = ScriptDirectory.from_config(config).get_current_head()
        return head or ""


def service_schemas() -> list[ServiceSchema]:
    """Every service's tables (all their model modules loaded) and migrations."""
    schemas = []
    for name in SERVICE_NAMES:
        package = importlib.import_module(f"services.{name}")
        # The server module loads every model module of the service into its metadata.
        importlib.import_module(f"services.{name}.server")
        models = importlib.import_module(f"services.{name}.models")
        migrations = Path(package.__file__ or "").parent / "migrations"
        schemas.append(ServiceSchema(name, models.Base.metadata, migrations))
    return schemas


# -- row encoding -------------------------------------------------------------------------------


def _kind(column_type: TypeEngine[Any]) -> str:
    if isinstance(column_type, TypeDecorator):
        column_type = column_type.impl_instance
    if isinstance(column_type, LargeBinary):
        return "binary"
    if isinstance(column_type, DateTime):
        return "timestamp"
    if isinstance(column_type, JSON):
        return "json"
    return "plain"


def _kinds(table: Table) -> dict[str, str]:
    # Names are SQLAlchemy's quoted_name (a str subclass orjson refuses as a key).
    return {str(column.name): _kind(column.type) for column in table.columns}


def _encode(value: Any, kind: str) -> Any:
    if value is None:
        return None
    if kind == "binary":
        return base64.b64encode(bytes(value)).decode("ascii")
    if kind == "timestamp":
        moment: datetime = value
        if moment.tzinfo is None:
            # SQLite hands timestamps back without a zone; they were written in UTC.
            moment = moment.replace(tzinfo=UTC)
        return moment.astimezone(UTC).isoformat()
    return value


def _decode(value: Any, kind: str) -> Any:
    if value is None:
        return None
    if kind == "binary":
        return base64.b64decode(value)
    if kind == "timestamp":
        return datetime.fromisoformat(value)
    return value


def encode_row(row: Mapping[str, Any] | RowMapping, kinds: Mapping[str, str]) -> bytes:
    """One row as its archive line (sorted keys, so equal rows give equal bytes)."""
    encoded = {name: _encode(row[name], kind) for name, kind in kinds.items()}
    line: bytes = orjson.dumps(encoded, option=orjson.OPT_SORT_KEYS)
    return line + b"\n"


def content_digest(row_digests: Iterable[bytes]) -> str:
    """A table's digest whatever order its rows came in."""
    hasher = hashlib.sha256()
    for digest in sorted(row_digests):
        hasher.update(digest)
    return hasher.hexdigest()


# -- reading a snapshot -------------------------------------------------------------------------


def _snapshot_engine(engine: AsyncEngine) -> AsyncEngine:
    if engine.dialect.name == "sqlite":
        # A deferred BEGIN: one WAL snapshot from the first read on, no write lock.
        return engine.execution_options(**{READ_ONLY_OPTION: True})
    return engine.execution_options(isolation_level="REPEATABLE READ")


async def _rows(connection: AsyncConnection, table: Table) -> AsyncIterator[RowMapping]:
    statement = select(table).order_by(*table.primary_key.columns)
    result = await connection.stream(statement.execution_options(yield_per=1000))
    async for row in result.mappings():
        yield row


@dataclass
class TableDump:
    file: str
    rows: int = 0
    sha256: str = ""
    content: str = ""
    blobs: set[str] = field(default_factory=set)


async def _dump_table(connection: AsyncConnection, table: Table, target: Path | None) -> TableDump:
    """Encode a table's rows (to `target` when given); counts, hashes and named blobs."""
    kinds = _kinds(table)
    dump = TableDump(file=f"{TABLES_DIR}/{table.name}.jsonl")  # noqa: RUF100
    file_hash = hashlib.sha256()
    row_digests: list[bytes] = []
    names_blobs = BLOB_REFERENCE_COLUMN in kinds
    handle = None if target is None else target.open("wb")
    try:
        async for row in _rows(connection, table):
            line = encode_row(row, kinds)
            file_hash.update(line)
            row_digests.append(hashlib.sha256(line).digest())
            dump.rows += 1
            if handle is not None:
                handle.write(line)
            if names_blobs and row[BLOB_REFERENCE_COLUMN]:
                dump.blobs.add(str(row[BLOB_REFERENCE_COLUMN]))
    finally:
        if handle is not None:
            handle.close()
    dump.sha256 = file_hash.hexdigest()
    dump.content = content_digest(row_digests)
    return dump


async def _revisions(
    connection: AsyncConnection, schemas: Sequence[ServiceSchema]
) -> dict[str, str]:
    existing = set(await connection.run_sync(lambda sync: inspect(sync).get_table_names()))
    revisions = {}
    for schema in schemas:
        table = version_table(schema.name)
        revision = ""
        if table in existing:
            revision = str(await connection.scalar(text(f"SELECT version_num FROM {table}")) or "")
        revisions[schema.name] = revision
    return revisions


# -- backup -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BackupSummary:
    tables: int
    rows: int
    blobs: int


def _location(where: str | Path | ArchiveLocation, settings: Settings) -> ArchiveLocation:
    if isinstance(where, str | Path):
        try:
            return open_location(where, settings)
        except ArchiveStorageError as error:
            raise BackupError(str(error)) from None
    return where


async def backup(
    settings: Settings,
    target: str | Path | ArchiveLocation,
    *,
    blobs: BlobStore | None = None,
) -> BackupSummary:
    """Write an archive of everything Cairn keeps into `target`: a new or empty directory, or
    an object store prefix (`s3://bucket/prefix`, `gs://…`, `az://…`) holding nothing yet."""
    location = _location(target, settings)
    try:
        return await _backup(settings, location, blobs)
    except (ArchiveStorageError, BlobStoreError) as error:
        raise BackupError(f"backup to {location.describe()} failed: {error}") from None


async def _backup(
    settings: Settings, location: ArchiveLocation, blobs: BlobStore | None
) -> BackupSummary:
    schemas = service_schemas()
    if not await location.is_empty():
        raise BackupError(
            f"{location.describe()} is not empty; back up into a new or empty directory or prefix"
        )
    if isinstance(location, DirectoryLocation):
        location.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(location.root, 0o700)
    url = settings.resolved_database_url()
    engine = create_migration_engine(url, timeout_seconds=settings.database_timeout_seconds)
    store = blobs or open_blob_store(settings)
    manifest: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "created_at": datetime.now(UTC).isoformat(),
        "engine": engine.dialect.name,
        "services": {},
        "blobs": [],
    }
    named: set[str] = set()
    rows = tables = 0
    try:
        with tempfile.TemporaryDirectory(prefix="cairn-backup-") as scratch:
            async with _snapshot_engine(engine).connect() as connection, connection.begin():
                if engine.dialect.name == "postgresql":
                    await connection.execute(text("SET TRANSACTION READ ONLY"))
                revisions = await _revisions(connection, schemas)
                for schema in schemas:
                    entry: dict[str, Any] = {"revision": revisions[schema.name], "tables": {}}
                    for table in schema.metadata.sorted_tables:
                        name = f"{TABLES_DIR}/{table.name}.jsonl"
                        if isinstance(location, DirectoryLocation):
                            await location.put_bytes(name, b"")
                            dump = await _dump_table(connection, table, location.local_path(name))
                        else:
                            # Staged one table at a time, then uploaded.
                            staged = Path(scratch) / "table.jsonl"
                            dump = await _dump_table(connection, table, staged)
                            await location.put_file(name, staged)
                            staged.unlink()
                        entry["tables"][str(table.name)] = {
                            "file": dump.file,
                            "rows": dump.rows,
                            "sha256": dump.sha256,
                            "content_sha256": dump.content,
                        }
                        named |= dump.blobs
                        rows += dump.rows
                        tables += 1
                    manifest["services"][schema.name] = entry
    finally:
        await engine.dispose()
    for digest in sorted(named):
        data = await store.get(digest)
        if digest_of(data) != digest:
            raise BackupError(f"blob {digest} does not hash to its name; the store is damaged")
        await location.put_bytes(f"{BLOBS_DIR}/{digest}", data)
        manifest["blobs"].append({"digest": digest, "size": len(data)})
    # Last: an archive without its manifest is unfinished.
    await location.put_bytes(MANIFEST, orjson.dumps(manifest, option=orjson.OPT_INDENT_2))
    return BackupSummary(tables=tables, rows=rows, blobs=len(named))


# -- restore ------------------------------------------------------------------------------------


def parse_manifest(data: bytes, where: str) -> dict[str, Any]:
    """The manifest's content, checked for a known format and a whole structure."""
    try:
        manifest = orjson.loads(data)
    except orjson.JSONDecodeError:
        raise BackupError(f"{where}/{MANIFEST} is not valid JSON: the archive is damaged") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BackupError(f"{where}/{MANIFEST} is not a Cairn backup manifest")
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        raise BackupError(
            f"{where} is a backup of format version {version!r}, which this Cairn does not "
            f"know (it reads version {FORMAT_VERSION}): restore with the Cairn that made it"
        )
    try:
        _check_structure(manifest)
    except (KeyError, TypeError, ValueError, AttributeError):
        raise BackupError(f"{where}/{MANIFEST} is incomplete or damaged") from None
    return manifest


def _check_structure(manifest: Mapping[str, Any]) -> None:
    """Every entry has its fields, and names only the files it may (no path escapes)."""
    for service in manifest["services"].values():
        str(service["revision"])
        for name, table in service["tables"].items():
            if table["file"] != f"{TABLES_DIR}/{name}.jsonl":
                raise ValueError(name)
            int(table["rows"])
            check_digest(table["sha256"])
            check_digest(table["content_sha256"])
    for blob in manifest["blobs"]:
        check_digest(blob["digest"])
        int(blob["size"])


async def load_manifest(location: ArchiveLocation) -> dict[str, Any]:
    """The archive's manifest; BackupError when it is missing, unknown or damaged."""
    try:
        data = await location.read_bytes(MANIFEST)
    except ArchiveFileMissing:
        raise BackupError(
            f"{location.describe()} holds no {MANIFEST}: not a Cairn backup, or unfinished"
        ) from None
    except ArchiveStorageError as error:
        raise BackupError(str(error)) from None
    return parse_manifest(data, location.describe())


def read_manifest(directory: Path) -> dict[str, Any]:
    """The manifest of the archive in `directory`."""
    path = directory / MANIFEST
    if not path.is_file():
        raise BackupError(f"{directory} holds no {MANIFEST}: not a Cairn backup, or unfinished")
    return parse_manifest(path.read_bytes(), str(directory))


def archive_files(manifest: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """Every file the manifest names: (name, expected SHA-256, what it is, for messages)."""
    files = []
    for service in manifest["services"].values():
        for name, table in service["tables"].items():
            files.append((table["file"], table["sha256"], f"rows of {name}"))
    for blob in manifest["blobs"]:
        files.append((f"{BLOBS_DIR}/{blob['digest']}", blob["digest"], f"blob {blob['digest']}"))
    return files


async def check_archive(
    location: ArchiveLocation, manifest: Mapping[str, Any], *, copy_to: Path | None = None
) -> None:
    """Every file the manifest names is there, whole (with `copy_to`: copied there too)."""
    for name, expected, what in archive_files(manifest):
        try:
            if copy_to is None:
                found = await location.sha256(name)
            else:
                target = copy_to / name
                target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
                found = await location.fetch(name, target)
        except ArchiveFileMissing:
            raise BackupError(f"the archive's {what} are missing or damaged") from None
        except ArchiveStorageError as error:
            raise BackupError(str(error)) from None
        if found != expected:
            raise BackupError(f"the archive's {what} are missing or damaged")


async def _occupied_table(engine: AsyncEngine, schemas: Sequence[ServiceSchema]) -> str | None:
    """The first Cairn table of the target that holds a row, if any."""
    async with engine.connect() as connection:
        existing = set(await connection.run_sync(lambda sync: inspect(sync).get_table_names()))
        for schema in schemas:
            for table in schema.metadata.sorted_tables:
                if table.name in existing:
                    count = await connection.scalar(select(func.count()).select_from(table))
                    if count:
                        return table.name
    return None


def _lines(path: Path) -> Iterable[bytes]:
    with path.open("rb") as handle:
        yield from handle


async def _insert_rows(connection: AsyncConnection, table: Table, path: Path) -> None:
    kinds = _kinds(table)
    batch: list[dict[str, Any]] = []
    for line in _lines(path):
        encoded = orjson.loads(line)
        batch.append({name: _decode(encoded.get(name), kind) for name, kind in kinds.items()})
        if len(batch) >= INSERT_BATCH:
            await connection.execute(table.insert(), batch)
            batch = []
    if batch:
        await connection.execute(table.insert(), batch)


async def _fix_sequences(connection: AsyncConnection, table: Table) -> None:
    """Move PostgreSQL's sequence of an integer key past the restored rows."""
    for column in table.primary_key.columns:
        if not isinstance(column.type, Integer) or column.autoincrement is False:
            continue
        await connection.execute(
            text(
                f"SELECT setval(pg_get_serial_sequence(:table, :column), "
                f'COALESCE(MAX("{column.name}"), 1), MAX("{column.name}") IS NOT NULL) '
                f'FROM "{table.name}"'
            ),
            {"table": table.name, "column": column.name},
        )


@dataclass(frozen=True)
class RestoreSummary:
    tables: int
    rows: int
    blobs: int
    verified: bool


async def restore(
    settings: Settings,
    source: str | Path | ArchiveLocation,
    *,
    verify: bool = False,
    blobs: BlobStore | None = None,
) -> RestoreSummary:
    """Restore an archive (a directory, or an object store prefix) into the configured database
    (which must hold no Cairn rows) and blob store; with `verify`, read everything back and
    compare it with the manifest. Nothing is written before the archive checked out whole."""
    location = _location(source, settings)
    manifest = await load_manifest(location)
    schemas = service_schemas()
    by_name = {schema.name: schema for schema in schemas}
    if set(manifest["services"]) != set(by_name):
        raise BackupError("the backup's services are not this Cairn's")
    for name, service in manifest["services"].items():
        head = by_name[name].head()
        if service["revision"] != head:
            raise BackupError(
                f"the backup's {name} tables are at revision {service['revision'] or 'none'}, "
                f"this Cairn's at {head}: restore with the Cairn version that made the backup"
            )
    for schema in schemas:
        recorded_tables = manifest["services"][schema.name]["tables"]
        for table in schema.metadata.sorted_tables:
            if table.name not in recorded_tables:
                raise BackupError(f"the backup has no rows file for table {table.name}")
    if isinstance(location, DirectoryLocation):
        await check_archive(location, manifest)
        return await _restore_directory(settings, location.root, manifest, verify, blobs)
    with tempfile.TemporaryDirectory(prefix="cairn-restore-") as scratch:
        # Fetched and checked whole before anything is written to the target.
        await check_archive(location, manifest, copy_to=Path(scratch))
        return await _restore_directory(settings, Path(scratch), manifest, verify, blobs)


async def _restore_directory(
    settings: Settings,
    directory: Path,
    manifest: Mapping[str, Any],
    verify: bool,
    blobs: BlobStore | None,
) -> RestoreSummary:
    schemas = service_schemas()
    url = settings.resolved_database_url()
    prepare_database_files(url, settings.data_dir)
    engine = create_migration_engine(url, timeout_seconds=settings.database_timeout_seconds)
    store = blobs or open_blob_store(settings)
    rows = tables = 0
    try:
        occupied = await _occupied_table(engine, schemas)
        if occupied is not None:
            raise TargetNotEmpty(
                f"the target database is not empty (table {occupied} holds rows); "
                "restore into an empty database"
            )
        for blob in manifest["blobs"]:
            # Blobs before the rows that name them, as Cairn itself writes them.
            await store.put(blob["digest"], (directory / BLOBS_DIR / blob["digest"]).read_bytes())
        for schema in schemas:
            await upgrade_to_head(engine, schema.name, schema.migrations, schema.metadata)
        # Migrations may seed rows; the target must still hold none but the backup's.
        occupied = await _occupied_table(engine, schemas)
        if occupied is not None:
            raise TargetNotEmpty(f"table {occupied} holds rows after migrating; not restoring")
        async with engine.begin() as connection:
            if engine.dialect.name == "sqlite":
                # Rows of one table may name each other; check keys at commit.
                await connection.exec_driver_sql("PRAGMA defer_foreign_keys=ON")
            for schema in schemas:
                entry = manifest["services"][schema.name]
                for table in schema.metadata.sorted_tables:
                    recorded = entry["tables"][table.name]
                    await _insert_rows(connection, table, directory / recorded["file"])
                    if engine.dialect.name == "postgresql":
                        await _fix_sequences(connection, table)
                    rows += recorded["rows"]
                    tables += 1
        if verify:
            await verify_restored(engine, schemas, manifest, store)
    except BlobStoreError as error:
        raise BackupError(f"the blob store failed: {error}") from None
    finally:
        await engine.dispose()
    return RestoreSummary(tables=tables, rows=rows, blobs=len(manifest["blobs"]), verified=verify)


async def verify_restored(
    engine: AsyncEngine,
    schemas: Sequence[ServiceSchema],
    manifest: Mapping[str, Any],
    store: BlobStore,
) -> None:
    """Every table's count and content digest, and every blob, as the manifest says."""
    async with _snapshot_engine(engine).connect() as connection, connection.begin():
        for schema in schemas:
            recorded_tables = manifest["services"][schema.name]["tables"]
            for table in schema.metadata.sorted_tables:
                recorded = recorded_tables[table.name]
                dump = await _dump_table(connection, table, None)
                if dump.rows != recorded["rows"]:
                    raise BackupError(
                        f"verify: {table.name} has {dump.rows} rows, the backup {recorded['rows']}"
                    )
                if dump.content != recorded["content_sha256"]:
                    raise BackupError(f"verify: the rows of {table.name} differ from the backup")
    for blob in manifest["blobs"]:
        if digest_of(await store.get(blob["digest"])) != blob["digest"]:
            raise BackupError(f"verify: blob {blob['digest']} differs from the backup")

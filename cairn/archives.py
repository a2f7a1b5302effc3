"""Where backup archives are written and read: a directory, or a prefix in an object store
(`s3://`, `gs://`, `az://`) reached through the same client settings as the blob store.

A location holds files by relative name (`manifest.json`, `tables/x.jsonl`, `blobs/<digest>`)
and may hold child locations (one per scheduled archive). Every failure of the underlying
storage becomes an ArchiveStorageError with one line for the operator, credentials never in it.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
from pathlib import Path
from typing import Any, Protocol

from services.common.config import Settings
from services.common.datadir import PRIVATE_DIR_MODE, PRIVATE_FILE_MODE
from services.common.object_stores import (
    ObjectStoreUrlError,
    describe_error,
    is_object_url,
    open_object_store,
    parse_object_url,
)

CHUNK_BYTES = 1 << 20


class ArchiveStorageError(Exception):
    """The archive's storage could not be reached or refused a call."""


class ArchiveFileMissing(ArchiveStorageError):
    """The location holds no file of that name."""


class ArchiveLocation(Protocol):
    """A directory-like place holding an archive's files, or archives."""

    def describe(self) -> str:
        """Where it is, for messages (no credentials)."""
        ...

    def child(self, name: str) -> ArchiveLocation: ...

    async def is_empty(self) -> bool: ...

    async def put_bytes(self, name: str, data: bytes) -> None: ...

    async def put_file(self, name: str, source: Path) -> None:
        """Store the local file `source` as `name`."""
        ...

    async def read_bytes(self, name: str) -> bytes:
        """The file's bytes; ArchiveFileMissing when there is none."""
        ...

    async def fetch(self, name: str, target: Path) -> str:
        """Copy the file to the local path `target`; its SHA-256 (hex)."""
        ...

    async def sha256(self, name: str) -> str:
        """The SHA-256 (hex) of the file, read whole; ArchiveFileMissing when there is none."""
        ...

    async def children(self) -> list[str]:
        """The names of the child locations that hold anything, sorted."""
        ...

    async def remove(self) -> None:
        """Delete everything under this location."""
        ...


def open_location(where: str | Path, settings: Settings) -> ArchiveLocation:
    """A directory path, or an object store URL with the blob store's client settings."""
    text = str(where)
    if isinstance(where, str) and is_object_url(text):
        try:
            store = open_object_store(text, settings)
        except ObjectStoreUrlError as error:
            raise ArchiveStorageError(str(error)) from None
        return ObjectLocation(store, str(parse_object_url(text)), "")
    if text.startswith("file://"):
        text = text.removeprefix("file://")
    elif "://" in text:
        raise ArchiveStorageError(
            f"{text!r} is neither a directory nor an s3://, gs://, az:// or azure:// URL"
        )
    return DirectoryLocation(Path(text))


# -- a directory -------------------------------------------------------------------------------


def _hash_file(path: Path) -> str:
    hasher = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(CHUNK_BYTES), b""):
            hasher.update(chunk)
    return hasher.hexdigest()


def _write_private(path: Path, data: bytes) -> None:
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE_FILE_MODE)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(data)


class DirectoryLocation:
    """Files under a local directory (created private, 0700, when first written)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def describe(self) -> str:
        return str(self.root)

    def child(self, name: str) -> DirectoryLocation:
        return DirectoryLocation(self.root / name)

    def _path(self, name: str) -> Path:
        return self.root / name

    def _parent_of(self, name: str) -> Path:
        """The file's path, its directories made (private) first."""
        path = self._path(name)
        self.root.mkdir(parents=True, mode=PRIVATE_DIR_MODE, exist_ok=True)
        directory = self.root
        for part in Path(name).parts[:-1]:
            directory = directory / part
            directory.mkdir(mode=PRIVATE_DIR_MODE, exist_ok=True)
        return path

    async def is_empty(self) -> bool:
        return not self.root.exists() or not any(self.root.iterdir())

    async def put_bytes(self, name: str, data: bytes) -> None:
        try:
            await asyncio.to_thread(_write_private, self._parent_of(name), data)
        except OSError as error:
            where = self._path(name)
            raise ArchiveStorageError(f"cannot write {where}: {error.strerror}") from None

    async def put_file(self, name: str, source: Path) -> None:
        target = self._parent_of(name)
        if source == target:
            return
        try:
            await asyncio.to_thread(shutil.copyfile, source, target)
            os.chmod(target, PRIVATE_FILE_MODE)
        except OSError as error:
            raise ArchiveStorageError(f"cannot write {target}: {error.strerror}") from None

    async def read_bytes(self, name: str) -> bytes:
        path = self._path(name)
        try:
            return await asyncio.to_thread(path.read_bytes)
        except FileNotFoundError:
            raise ArchiveFileMissing(f"{path} is missing") from None
        except OSError as error:
            raise ArchiveStorageError(f"cannot read {path}: {error.strerror}") from None

    def local_path(self, name: str) -> Path:
        """Where the file `name` is (it may not exist)."""
        return self._path(name)

    async def fetch(self, name: str, target: Path) -> str:
        source = self._path(name)
        if source != target:
            try:
                await asyncio.to_thread(shutil.copyfile, source, target)
            except FileNotFoundError:
                raise ArchiveFileMissing(f"{source} is missing") from None
        return await self.sha256(name)

    async def sha256(self, name: str) -> str:
        path = self._path(name)
        if not path.is_file():
            raise ArchiveFileMissing(f"{path} is missing")
        try:
            return await asyncio.to_thread(_hash_file, path)
        except OSError as error:
            raise ArchiveStorageError(f"cannot read {path}: {error.strerror}") from None

    async def children(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(
            entry.name for entry in self.root.iterdir() if entry.is_dir() and any(entry.iterdir())
        )

    async def remove(self) -> None:
        await asyncio.to_thread(shutil.rmtree, self.root, True)


# -- an object store prefix --------------------------------------------------------------------


class ObjectLocation:
    """Objects under a key prefix of an obstore store (itself scoped to bucket and prefix)."""

    def __init__(self, store: Any, url: str, prefix: str) -> None:
        self._store = store
        self._url = url
        self._prefix = prefix.strip("/")

    def describe(self) -> str:
        return f"{self._url}/{self._prefix}".rstrip("/") if self._prefix else self._url

    def child(self, name: str) -> ObjectLocation:
        prefix = f"{self._prefix}/{name}" if self._prefix else name
        return ObjectLocation(self._store, self._url, prefix)

    def _key(self, name: str) -> str:
        return f"{self._prefix}/{name}" if self._prefix else name

    def _failed(self, name: str, error: BaseException) -> ArchiveStorageError:
        if isinstance(error, FileNotFoundError):
            return ArchiveFileMissing(f"{self.describe()}/{name} is missing")
        return ArchiveStorageError(f"{self.describe()}/{name}: {describe_error(error)}")

    async def _keys(self) -> list[str]:
        import obstore

        keys: list[str] = []
        try:
            prefix = f"{self._prefix}/" if self._prefix else None
            async for chunk in obstore.list(self._store, prefix, chunk_size=1000):
                keys.extend(str(meta["path"]) for meta in chunk)
        except Exception as error:
            raise ArchiveStorageError(f"{self.describe()}: {describe_error(error)}") from None
        return keys

    async def is_empty(self) -> bool:
        return not await self._keys()

    async def put_bytes(self, name: str, data: bytes) -> None:
        import obstore

        try:
            await obstore.put_async(self._store, self._key(name), data)
        except Exception as error:
            raise self._failed(name, error) from None

    async def put_file(self, name: str, source: Path) -> None:
        import obstore

        try:
            await obstore.put_async(self._store, self._key(name), source)
        except Exception as error:
            raise self._failed(name, error) from None

    async def read_bytes(self, name: str) -> bytes:
        import obstore

        try:
            result = await obstore.get_async(self._store, self._key(name))
            return bytes(await result.bytes_async())
        except Exception as error:
            raise self._failed(name, error) from None

    async def _stream(self, name: str, target: Path | None) -> str:
        import obstore

        hasher = hashlib.sha256()
        handle = None
        if target is not None:
            descriptor = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE_FILE_MODE)
            handle = os.fdopen(descriptor, "wb")
        try:
            result = await obstore.get_async(self._store, self._key(name))
            async for chunk in result.stream(min_chunk_size=CHUNK_BYTES):
                data = bytes(chunk)
                hasher.update(data)
                if handle is not None:
                    handle.write(data)
        except Exception as error:
            raise self._failed(name, error) from None
        finally:
            if handle is not None:
                handle.close()
        return hasher.hexdigest()

    async def fetch(self, name: str, target: Path) -> str:
        return await self._stream(name, target)

    async def sha256(self, name: str) -> str:
        return await self._stream(name, None)

    async def children(self) -> list[str]:
        import obstore

        prefix = f"{self._prefix}/" if self._prefix else None
        try:
            listing = await obstore.list_with_delimiter_async(self._store, prefix)
        except Exception as error:
            raise ArchiveStorageError(f"{self.describe()}: {describe_error(error)}") from None
        prefixes = listing["common_prefixes"]
        return sorted(str(name).rstrip("/").rsplit("/", 1)[-1] for name in prefixes)

    async def remove(self) -> None:
        import obstore

        keys = await self._keys()
        try:
            for start in range(0, len(keys), 1000):
                await obstore.delete_async(self._store, keys[start : start + 1000])
        except Exception as error:
            raise ArchiveStorageError(f"{self.describe()}: {describe_error(error)}") from None

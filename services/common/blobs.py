"""Content-addressed blob storage for large texts (stack state versions): one interface, two
implementations.

A blob's name is the lowercase SHA-256 hex digest of its bytes, so a blob is never rewritten:
writing the same bytes again changes nothing, and different bytes can never take a name. The
database keeps the metadata and the digests; a blob is written before the row that names it
commits, and only the garbage collector (which knows which digests rows name) deletes blobs.

- `FilesystemBlobStore`: files under `<data dir>/blobs/ab/cd/<digest>` (two levels of fan-out
  directories), written to a private temporary file, flushed, then linked into place, so a
  reader sees the whole blob or none; files 0600, directories 0700. The embedded default.
- `ObjectBlobStore`: objects `<prefix>/ab/cd/<digest>` in an S3-compatible bucket (AWS S3,
  MinIO, Ceph, R2, ...), Google Cloud Storage or Azure Blob Storage, through `obstore`'s async
  API. Chosen by `CAIRN_BLOB_URL=s3://bucket/prefix` (or `gs://`, `az://`); the client is built
  in `services/common/object_stores.py`, shared with backups.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import re
import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit

from services.common.datadir import PRIVATE_DIR_MODE, PRIVATE_FILE_MODE, ensure_private_dir
from services.common.object_stores import (
    ObjectStoreUrlError,
    describe_error,
    is_object_url,
    open_object_store,
)

if TYPE_CHECKING:
    from services.common.config import Settings

_DIGEST = re.compile(r"[0-9a-f]{64}")
# Below this size a blob is read on the event loop; above it, in a thread. Writes always go
# to a thread: each ends with an fsync, which on the event loop stalled every request in flight
# for as long as the disk took (tens to hundreds of ms when many updates completed together).
_OFFLOAD_BYTES = 256 * 1024


class BlobNotFound(LookupError):
    """No blob has that digest."""

    def __init__(self, digest: str) -> None:
        super().__init__(f"no blob {digest}")
        self.digest = digest


class BlobDigestMismatch(ValueError):
    """The bytes given to `put` do not hash to the digest given with them."""


class BlobStoreError(RuntimeError):
    """The blob store could not be reached or refused the call (not a missing blob)."""


class BlobStore(Protocol):
    """Where large texts live, named by the SHA-256 of their content."""

    async def put(self, digest: str, data: bytes) -> None:
        """Store `data` under `digest` (its lowercase SHA-256 hex); a no-op if already there.

        Raises BlobDigestMismatch when `data` does not hash to `digest`.
        """
        ...

    async def get(self, digest: str) -> bytes:
        """The blob's bytes; raises BlobNotFound."""
        ...

    async def exists(self, digest: str) -> bool: ...

    async def delete(self, digest: str) -> None:
        """Remove the blob; nothing happens when there is none."""
        ...

    def list_digests(self) -> AsyncIterator[str]:
        """Every stored digest, in no particular order."""
        ...


def digest_of(data: bytes) -> str:
    """The name `data` is stored under."""
    return hashlib.sha256(data).hexdigest()


def check_digest(digest: str) -> str:
    """`digest` if it is a lowercase SHA-256 hex digest; ValueError otherwise."""
    if not _DIGEST.fullmatch(digest):
        raise ValueError(f"not a lowercase SHA-256 hex digest: {digest[:80]!r}")
    return digest


def _verify(digest: str, data: bytes) -> None:
    check_digest(digest)
    if digest_of(data) != digest:
        raise BlobDigestMismatch(f"the data does not hash to {digest}")


def _fan_out(digest: str) -> str:
    return f"{digest[:2]}/{digest[2:4]}/{digest}"


class FilesystemBlobStore:
    """Blobs as private files under one directory (see the module docstring)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, digest: str) -> Path:
        return self.root / _fan_out(check_digest(digest))

    async def put(self, digest: str, data: bytes) -> None:
        await asyncio.to_thread(self._put, digest, data)

    def _put(self, digest: str, data: bytes) -> None:
        _verify(digest, data)
        path = self._path(digest)
        if path.exists():
            return
        ensure_private_dir(self.root)
        for directory in (path.parent.parent, path.parent):
            with contextlib.suppress(FileExistsError):
                directory.mkdir(mode=PRIVATE_DIR_MODE)
        temporary = path.with_name(f".{digest}.{secrets.token_hex(8)}.tmp")
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE_MODE)
        try:
            with os.fdopen(descriptor, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            # A link never replaces: a blob written meanwhile by another process stays as it is.
            with contextlib.suppress(FileExistsError):
                os.link(temporary, path)
        finally:
            temporary.unlink(missing_ok=True)

    async def get(self, digest: str) -> bytes:
        path = self._path(digest)
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            raise BlobNotFound(digest) from None
        if size >= _OFFLOAD_BYTES:
            return await asyncio.to_thread(self._read, digest, path)
        return self._read(digest, path)

    @staticmethod
    def _read(digest: str, path: Path) -> bytes:
        try:
            return path.read_bytes()
        except FileNotFoundError:
            raise BlobNotFound(digest) from None

    async def exists(self, digest: str) -> bool:
        return self._path(digest).is_file()

    async def delete(self, digest: str) -> None:
        self._path(digest).unlink(missing_ok=True)

    async def list_digests(self) -> AsyncIterator[str]:
        if not self.root.is_dir():
            return
        for first in sorted(await asyncio.to_thread(_subdirectories, self.root)):
            for second in sorted(await asyncio.to_thread(_subdirectories, first)):
                names = await asyncio.to_thread(os.listdir, second)
                for name in sorted(names):
                    if _DIGEST.fullmatch(name):
                        yield name


def _subdirectories(path: Path) -> list[Path]:
    try:
        return [entry for entry in path.iterdir() if entry.is_dir() and len(entry.name) == 2]
    except FileNotFoundError:
        return []


class ObjectBlobStore:
    """Blobs as objects in a bucket (S3-compatible, GCS or Azure), under an optional key prefix."""

    def __init__(self, store: Any) -> None:
        # An obstore store already scoped to the bucket and prefix.
        self._store = store

    async def put(self, digest: str, data: bytes) -> None:
        if len(data) >= _OFFLOAD_BYTES:
            await asyncio.to_thread(_verify, digest, data)
        else:
            _verify(digest, data)
        if await self.exists(digest):
            return
        import obstore

        try:
            await obstore.put_async(self._store, _fan_out(digest), data)
        except Exception as error:
            raise BlobStoreError(describe_error(error)) from None

    async def get(self, digest: str) -> bytes:
        import obstore

        key = _fan_out(check_digest(digest))
        try:
            result = await obstore.get_async(self._store, key)
            return bytes(await result.bytes_async())
        except FileNotFoundError:
            raise BlobNotFound(digest) from None
        except Exception as error:
            raise BlobStoreError(describe_error(error)) from None

    async def exists(self, digest: str) -> bool:
        import obstore

        key = _fan_out(check_digest(digest))
        try:
            await obstore.head_async(self._store, key)
        except FileNotFoundError:
            return False
        except Exception as error:
            raise BlobStoreError(describe_error(error)) from None
        return True

    async def delete(self, digest: str) -> None:
        import obstore

        key = _fan_out(check_digest(digest))
        try:
            await obstore.delete_async(self._store, key)
        except FileNotFoundError:
            return
        except Exception as error:
            raise BlobStoreError(describe_error(error)) from None

    async def list_digests(self) -> AsyncIterator[str]:
        import obstore

        try:
            stream = obstore.list(self._store, chunk_size=1000)
            async for chunk in stream:
                for meta in chunk:
                    name = str(meta["path"]).rsplit("/", 1)[-1]
                    if _DIGEST.fullmatch(name):
                        yield name
        except Exception as error:
            raise BlobStoreError(describe_error(error)) from None


def open_blob_store(settings: Settings) -> BlobStore:
    """The blob store `CAIRN_BLOB_URL` names: empty for files under the data dir,
    `file:///path`, or an object store URL (`s3://`, `gs://`, `az://`; see
    `services/common/object_stores.py`)."""
    url = settings.blob_url.strip()
    if not url:
        return FilesystemBlobStore(settings.data_dir / "blobs")
    parts = urlsplit(url)
    if parts.scheme == "file":
        return FilesystemBlobStore(Path(parts.path))
    if not is_object_url(url):
        raise ValueError(
            "CAIRN_BLOB_URL must be empty, file:///path, s3://bucket/prefix, gs://bucket/prefix "
            f"or az://container/prefix: {url!r}"
        )
    try:
        return ObjectBlobStore(open_object_store(url, settings))
    except ObjectStoreUrlError as error:
        raise ValueError(f"CAIRN_BLOB_URL: {error}") from None

"""One suite for every blob store implementation (files, and S3 through moto)."""

from __future__ import annotations

import asyncio
import hashlib
import os
import stat
import threading
from pathlib import Path

import pytest

from services.common.blobs import (
    BlobDigestMismatch,
    BlobNotFound,
    BlobStore,
    FilesystemBlobStore,
    digest_of,
    open_blob_store,
)
from services.common.config import Settings


async def _all(store: BlobStore) -> set[str]:
    return {digest async for digest in store.list_digests()}


async def test_put_get_exists_delete(blob_store: BlobStore) -> None:
    data = b'{"resources": []}'
    digest = hashlib.sha256(data).hexdigest()
    assert not await blob_store.exists(digest)
    await blob_store.put(digest, data)
    assert await blob_store.exists(digest)
    assert await blob_store.get(digest) == data
    await blob_store.delete(digest)
    assert not await blob_store.exists(digest)
    with pytest.raises(BlobNotFound):
        await blob_store.get(digest)
    await blob_store.delete(digest)  # deleting what is gone is no error


async def test_put_is_idempotent_and_verifies(blob_store: BlobStore) -> None:
    data = b"x" * 1000
    digest = digest_of(data)
    await blob_store.put(digest, data)
    await blob_store.put(digest, data)
    assert await _all(blob_store) == {digest}
    with pytest.raises(BlobDigestMismatch):
        await blob_store.put(digest_of(b"other"), data)
    with pytest.raises(ValueError):
        await blob_store.put(digest.upper(), data)
    with pytest.raises(ValueError):
        await blob_store.get("../../etc/passwd")
    assert await blob_store.get(digest) == data


async def test_large_blobs_and_listing(blob_store: BlobStore) -> None:
    blobs = [bytes([index]) * (300 * 1024 + index) for index in range(5)] + [b""]
    digests = [digest_of(blob) for blob in blobs]
    await asyncio.gather(*(blob_store.put(d, b) for d, b in zip(digests, blobs, strict=True)))
    assert await _all(blob_store) == set(digests)
    for digest, blob in zip(digests, blobs, strict=True):
        assert await blob_store.get(digest) == blob


async def test_concurrent_puts_of_one_blob(blob_store: BlobStore) -> None:
    data = b"same" * 100_000
    digest = digest_of(data)
    await asyncio.gather(*(blob_store.put(digest, data) for _ in range(8)))
    assert await blob_store.get(digest) == data
    assert await _all(blob_store) == {digest}


async def test_filesystem_layout_is_private_and_fanned_out(tmp_path: Path) -> None:
    store = open_blob_store(Settings(data_dir=tmp_path))
    assert isinstance(store, FilesystemBlobStore)
    data = b"private state"
    digest = digest_of(data)
    await store.put(digest, data)
    path = tmp_path / "blobs" / digest[:2] / digest[2:4] / digest
    assert path.read_bytes() == data
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "blobs").stat().st_mode) == 0o700
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    # Nothing but the blob is left behind (no temporary files), and it is not rewritten.
    assert [p.name for p in path.parent.iterdir()] == [digest]
    before = path.stat().st_ino
    await store.put(digest, data)
    assert path.stat().st_ino == before


def test_blob_url_forms(tmp_path: Path) -> None:
    other = tmp_path / "elsewhere"
    store = open_blob_store(Settings(data_dir=tmp_path, blob_url=f"file://{other}"))
    assert isinstance(store, FilesystemBlobStore) and store.root == other
    with pytest.raises(ValueError):
        open_blob_store(Settings(data_dir=tmp_path, blob_url="ftp://bucket/x"))
    with pytest.raises(ValueError):
        open_blob_store(Settings(data_dir=tmp_path, blob_url="s3:///nobucket"))


async def test_a_file_blob_is_synced_off_the_event_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every write ends with an fsync, however small the blob: it runs in a thread, never on
    the event loop (where it would stall every request in flight for as long as the disk
    takes)."""
    synced_on: list[int] = []
    real_fsync = os.fsync

    def recording_fsync(descriptor: int) -> None:
        synced_on.append(threading.get_ident())
        real_fsync(descriptor)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    store = FilesystemBlobStore(tmp_path / "blobs")
    for data in (b"{}", b"y" * (300 * 1024)):
        await store.put(digest_of(data), data)
    assert len(synced_on) == 2
    assert threading.get_ident() not in synced_on

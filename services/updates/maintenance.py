"""Keeping the blob store tidy: the garbage collector of unnamed state blobs, moving texts
still held in database rows into the blob store (`cairn migrate`), and retention settings.

The collector is safe with replicas and crashes. A blob is written before the row naming
it commits, so a blob no row names may belong to a write still under way: a pass only
notes such a blob (with the time it first saw it unnamed), and a later pass deletes it
when it is still unnamed past the grace period, checking again in the same transaction
that removes the note. Several collectors may run at once: only the one whose transaction
removed the note deletes the blob. A writer that reuses bytes the collector removed
meanwhile writes them again once its row has committed (`StateTexts.confirm`).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from services.common.blobs import BlobStore, digest_of
from services.common.errors import InvalidArgument
from services.common.logging import get_logger
from services.common.loop import cancel_and_wait
from services.updates.state_store import Retention, StateStore
from services.updates.states import StateTexts

log = get_logger("cairn.updates")

# Digests examined per batch while listing the blob store.
LIST_BATCH = 500
# Versions moved per batch by `move_texts`.
MOVE_BATCH = 50
# The largest number of versions a retention setting may keep (besides "all").
MAX_KEEP_VERSIONS = 1_000_000


@dataclass(frozen=True)
class Collection:
    """What one garbage collection pass did."""

    listed: int
    named: int
    noted: int
    deleted: int


async def collect_garbage(
    blobs: BlobStore, store: StateStore, *, now: float, grace_seconds: float
) -> Collection:
    """One pass: note unnamed blobs, delete those noted longer than the grace period ago."""
    listed = named = noted = 0
    seen: set[str] = set()
    batch: list[str] = []

    async def examine(digests: list[str]) -> None:
        nonlocal named, noted
        referenced = await store.referenced(digests)
        unnamed = set(digests) - referenced
        named += len(referenced)
        noted += len(unnamed)
        await store.note_candidates(unnamed, now)

    async for digest in blobs.list_digests():
        listed += 1
        seen.add(digest)
        batch.append(digest)
        if len(batch) >= LIST_BATCH:
            await examine(batch)
            batch = []
    if batch:
        await examine(batch)
    deleted = 0
    cutoff = now - grace_seconds
    candidates = await store.candidates()
    # Notes of blobs that are gone (deleted elsewhere) or named again are dropped.
    await store.forget_candidates({d for d in candidates if d not in seen})
    for digest, first_seen in sorted(candidates.items()):
        if digest not in seen or first_seen >= cutoff:
            continue
        if await store.claim_for_deletion(digest, cutoff):
            await blobs.delete(digest)
            deleted += 1
    result = Collection(listed=listed, named=named, noted=noted, deleted=deleted)
    log.info(
        "blob_garbage_collected",
        listed=result.listed,
        named=result.named,
        unnamed=result.noted,
        deleted=result.deleted,
    )
    return result


async def move_texts(blobs: BlobStore, store: StateStore, *, batch: int = MOVE_BATCH) -> int:
    """Move every version text still held in its row into the blob store; the count moved.

    Idempotent and resumable: each version's blob is written, then its row names it and
    drops its copy in one statement; a run stopped anywhere leaves rows either untouched or
    moved, and the next run carries on with what is left.
    """
    moved = 0
    while True:
        rows = await store.inline_versions(batch)
        if not rows:
            return moved
        progress = 0
        for row in rows:
            digest = await asyncio.to_thread(digest_of, row.text_compressed)
            await blobs.put(digest, row.text_compressed)
            if await store.name_blob(row.stack_id, row.version, digest):
                moved += 1
            progress += 1
        log.info("state_texts_moved", moved=moved)
        if progress == 0:
            return moved


class Retentions:
    """Retention settings: how many newest versions of a stack keep their full state."""

    def __init__(self, store: StateStore, states: StateTexts, now: Callable[[], float]) -> None:
        self._store = store
        self._states = states
        self._now = now

    async def get(self, organization: str) -> Retention:
        return await self._store.retention(organization)

    async def set_organization(self, organization: str, keep: int | None) -> Retention:
        """Set (None: clear, keeping every version) and apply to the organization's stacks."""
        _check_keep(keep)
        await self._store.set_retention(organization, "", keep)
        for stack_id in await self._store.stacks_of(organization):
            await self._states.apply_retention(stack_id, organization, self._now())
        return await self._store.retention(organization)

    async def set_stack(self, organization: str, stack_id: str, keep: int | None) -> Retention:
        """A stack's own setting (None: its organization's applies), applied at once."""
        _check_keep(keep)
        await self._store.set_retention(organization, stack_id, keep)
        await self._states.apply_retention(stack_id, organization, self._now())
        return await self._store.retention(organization)


def _check_keep(keep: int | None) -> None:
    if keep is not None and not 1 <= keep <= MAX_KEEP_VERSIONS:
        raise InvalidArgument(
            f"Bad Request: keepVersions must be between 1 and {MAX_KEEP_VERSIONS}, or null "
            "to keep every version"
        )


class Collector:
    """Runs the garbage collector every `interval` seconds (first after a random part of one,
    so replicas started together do not all run at once)."""

    def __init__(self, collect: Callable[[], Awaitable[Collection]], interval: float) -> None:
        self._collect = collect
        self._interval = interval
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None and self._interval > 0:
            self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None

    async def _run(self) -> None:
        await asyncio.sleep(self._interval * random.uniform(0.1, 1.0))
        while True:
            try:
                await self._collect()
            except Exception as error:
                # The database or the blob store may be away for a while; next round retries.
                log.warning("blob_garbage_collection_failed", error=type(error).__name__)
            await asyncio.sleep(self._interval)

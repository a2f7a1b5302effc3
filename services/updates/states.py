"""Stack state versions' texts in the blob store: written before the row that names them,
read back by digest, never rewritten.

A version's compressed deployment text (zstd, as `texts.pack` makes it) is one blob named by
the SHA-256 of those compressed bytes. Rows written before the blob store still hold their
text until `cairn migrate` moves it; reads take it from wherever it is.
"""

from __future__ import annotations

import asyncio
import dataclasses

from services.common.blobs import BlobNotFound, BlobStore, digest_of
from services.common.errors import DomainError, Gone
from services.common.logging import get_logger
from services.updates.domain import FinalState
from services.updates.state_store import StateStore
from services.updates.store import StoredVersion

log = get_logger("cairn.updates")

# Above this size the compressed text is hashed in a thread.
_OFFLOAD_BYTES = 256 * 1024


def pruned_message(version: int) -> str:
    return (
        f"Gone: the state of version {version} was removed by this stack's history retention "
        "setting; its update, events and summary are kept"
    )


class StateTexts:
    """Puts versions' texts into the blob store and reads them back."""

    def __init__(self, blobs: BlobStore, store: StateStore) -> None:
        self.blobs = blobs
        self._store = store

    async def save(self, final: FinalState) -> FinalState:
        """Write the text's blob (before its row commits); the state naming that blob."""
        compressed = final.compressed
        if len(compressed) >= _OFFLOAD_BYTES:
            digest = await asyncio.to_thread(digest_of, compressed)
        else:
            digest = digest_of(compressed)
        await self.blobs.put(digest, compressed)
        return dataclasses.replace(final, blob_digest=digest)

    async def confirm(self, final: FinalState) -> None:
        """After the row naming the blob committed: make sure the blob is still there.

        The garbage collector may have removed the very same bytes (left unnamed by an
        earlier version) between `save` and the commit; writing them again closes that gap.
        """
        if final.blob_digest and not await self.blobs.exists(final.blob_digest):
            log.warning("state_blob_rewritten", digest=final.blob_digest)
            await self.blobs.put(final.blob_digest, final.compressed)

    async def compressed(self, stored: StoredVersion) -> bytes:
        """A stored version's compressed text; Gone when retention pruned it."""
        if stored.pruned_at is not None:
            raise Gone(pruned_message(stored.version))
        if stored.blob_digest is None:
            return stored.text_compressed
        try:
            return await self.blobs.get(stored.blob_digest)
        except BlobNotFound:
            log.error("state_blob_missing", version=stored.version, digest=stored.blob_digest)
            raise DomainError("the stored state of this version is missing") from None

    async def apply_retention(self, stack_id: str, organization: str, now: float) -> list[int]:
        """Prune the stack's versions past its retention setting (the stack's own, else its
        organization's; none: every version keeps its state). The versions pruned."""
        if not organization:
            return []
        retention = await self._store.retention(organization)
        keep = retention.stacks.get(stack_id, retention.keep_versions)
        if keep is None:
            return []
        pruned = await self._store.prune(stack_id, keep, now)
        if pruned:
            log.info("versions_pruned", stack_id=stack_id, versions=len(pruned), keep=keep)
        return pruned

"""Deployment texts in memory and off the event loop: the working texts of running updates,
packing for storage, rebuilding from stored deltas, replaying a journal.

Large texts are hashed, compressed, parsed and replayed in a thread so the loop stays free.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
import zstandard

from services.common.errors import FailedPrecondition, InvalidArgument
from services.common.logging import get_logger
from services.updates import checkpoints, views
from services.updates.delta import WorkingText, parse_edits
from services.updates.domain import FinalState
from services.updates.journal import replay

log = get_logger("cairn.updates")

# Texts above this size are hashed and compressed off the event loop.
OFFLOAD_BYTES = 256 * 1024
# Working texts kept in memory for delta writes (least recently used ones are dropped).
CACHE_BYTES = 256 * 1024 * 1024


@dataclass
class CachedText:
    sequence: int
    text: WorkingText


class WorkingTexts:
    """The current delta base of recent updates, least recently used first out."""

    def __init__(self, max_bytes: int = CACHE_BYTES) -> None:
        self._entries: OrderedDict[str, CachedText] = OrderedDict()
        self._max_bytes = max_bytes

    def get(self, update_id: str) -> CachedText | None:
        entry = self._entries.get(update_id)
        if entry is not None:
            self._entries.move_to_end(update_id)
        return entry

    def put(self, update_id: str, sequence: int, text: WorkingText) -> None:
        self._entries[update_id] = CachedText(sequence, text)
        self._entries.move_to_end(update_id)
        total = sum(entry.text.size for entry in self._entries.values())
        while total > self._max_bytes and len(self._entries) > 1:
            _, dropped = self._entries.popitem(last=False)
            total -= dropped.text.size

    def drop(self, update_id: str) -> None:
        self._entries.pop(update_id, None)


def catch_up(text: WorkingText, deltas: Sequence[Any]) -> bool:
    """Apply stored deltas to an older in-memory text; False if any does not fit."""
    for delta in deltas:
        edits = parse_edits(checkpoints.decompress(delta.edits_compressed))
        if not text.apply(edits, delta.sha256):
            return False
    return True


async def rebuild(stored: Any, deltas: Sequence[Any]) -> WorkingText:
    """A stored text with its later deltas applied."""
    if stored is None:
        raise InvalidArgument(
            "Bad Request: a checkpoint delta needs an earlier verbatim checkpoint of this update"
        )
    text = await unpack(stored.text_compressed)
    working: WorkingText = await off_loop(len(text), WorkingText, text)
    if not await off_loop(len(text), catch_up, working, deltas):
        raise FailedPrecondition("Conflict: the stored checkpoint chain is inconsistent")
    return working


async def off_loop(size: int, function: Callable[..., Any], *args: Any) -> Any:
    """`function(*args)`, in a thread when the text it works on is large."""
    if size >= OFFLOAD_BYTES:
        return await asyncio.to_thread(function, *args)
    return function(*args)


async def pack(text: bytes) -> tuple[bytes, str]:
    compressed = await off_loop(len(text), checkpoints.compress, text)
    sha256 = await off_loop(len(text), checkpoints.sha256_hex, text)
    return compressed, sha256


async def unpack(compressed: bytes) -> bytes:
    data: bytes = await off_loop(len(compressed), checkpoints.decompress, compressed)
    return data


async def final_state(text: bytes, resource_count: int | None = None) -> FinalState:
    """What a version stores for a deployment text."""
    compressed, sha256 = await pack(text)
    if resource_count is None:
        resource_count = await off_loop(len(text), checkpoints.count_resources, text)
    references = await off_loop(len(text), views.stack_references, text)
    return FinalState(compressed, len(text), sha256, resource_count, references)


def replay_blocking(
    base_compressed: bytes | None, entries: Sequence[bytes], now: datetime
) -> tuple[bytes, int]:
    """The deployment a journal leaves on top of its base, and its resource count."""
    base = None
    if base_compressed is not None:
        parsed = orjson.loads(checkpoints.decompress(base_compressed))
        base = parsed if isinstance(parsed, dict) else None
    decompressor = zstandard.ZstdDecompressor()
    parsed_entries = [orjson.loads(decompressor.decompress(entry)) for entry in entries]
    result = replay(base, parsed_entries, now=now)
    for warning in result.warnings:
        log.warning("journal_replay", detail=warning)
    return orjson.dumps(result.deployment), result.resource_count

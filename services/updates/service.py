"""The updates service's use cases, the update lifecycle: locks and leases, checkpoint and
journal writes, ending, import, rename, export. Read views are in `history`.

Servicer methods call one method here each. Writes on behalf of a running update happen in a
transaction that first checks the lease token against the update's row (fencing); the stack
lock row decides who may start; Redis, when configured, only turns contenders away early.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import orjson
import zstandard

from services.common.auth import hash_token
from services.common.clock import Clock
from services.common.errors import (
    Aborted,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
)
from services.common.logging import get_logger
from services.common.metrics import Metrics, default_metrics
from services.updates import checkpoints
from services.updates.bodies import DeltaWrite, EventBatch, TextWrite
from services.updates.delta import WorkingText
from services.updates.domain import (
    CANCELLED,
    CONFLICT_MESSAGE,
    IMPORT_KIND,
    LEASE_SECONDS,
    RENAME_KIND,
    RUNNING,
    FinalState,
    Lease,
    LeaseExpired,
    LeaseRef,
    NewUpdate,
    StackPath,
    StackState,
    StartedUpdate,
    UpdateRecord,
    holder_refusal,
    lease_is_valid,
    preview_write_refused,
    validate_complete_status,
    validate_renew_duration,
)
from services.updates.journal import validate_entry
from services.updates.lease import StackLock
from services.updates.states import StateTexts
from services.updates.store import Announce, Blocked, FencedUpdate, UpdateStore
from services.updates.texts import (
    WorkingTexts,
    catch_up,
    final_state,
    off_loop,
    pack,
    rebuild,
    replay_blocking,
    unpack,
)

log = get_logger("cairn.updates")

# A delta chain is folded into a stored text after this many deltas, or once the deltas
# add up to the text's own size: per-write cost stays proportional to the change.
MATERIALISE_EVERY = 256
# Start and import retry after ending an abandoned holder; bounded.
TAKEOVER_ATTEMPTS = 3
JOURNAL_COMPRESSION_LEVEL = 1
MAX_WRITER_LOCKS = 10_000
# An export retries when the update it reads ends meanwhile; bounded.
EXPORT_ATTEMPTS = 3


# Told (without waiting) that an update started or ended: the record and the result.
def _nothing() -> None:
    return None


def new_lease_token() -> str:
    return secrets.token_urlsafe(32)


class Updates:
    """The update lifecycle over the store, the stack lock and the clock."""

    def __init__(
        self,
        store: UpdateStore,
        lock: StackLock,
        clock: Clock,
        states: StateTexts,
        new_token: Callable[[], str] = new_lease_token,
        cache: WorkingTexts | None = None,
        metrics: Metrics | None = None,
        announce: Announce | None = None,
        announced: Callable[[], None] | None = None,
    ) -> None:
        self._store = store
        self._lock = lock
        self._clock = clock
        self._states = states
        self._new_token = new_token
        self._texts = cache or WorkingTexts()
        self._writers: dict[str, asyncio.Lock] = {}
        self._metrics = metrics or default_metrics()
        # Builds the webhook event an update's start or end writes to the outbox in its own
        # transaction; `announced` is told after such a commit (it wakes the dispatcher).
        self._announce = announce
        self._announced = announced or _nothing
        # One journal compressor for the event loop's thread (building one costs about as
        # much as compressing an entry); never used off the loop.
        self._journal_compressor = zstandard.ZstdCompressor(level=JOURNAL_COMPRESSION_LEVEL)

    # -- lifecycle -------------------------------------------------------------------------

    async def create(self, new: NewUpdate) -> UpdateRecord:
        return await self._store.create(new, self._clock.now())

    async def start(self, stack_id: str, update_id: str, journal_version: int) -> StartedUpdate:
        """Take the stack's lock (non-previews) and hand out a lease of five minutes."""
        update = await self._store.get(stack_id, update_id)
        began = time.perf_counter()
        try:
            started = await self._take(stack_id, update_id, update, journal_version)
        except FailedPrecondition as error:
            if error.message == CONFLICT_MESSAGE:
                self._metrics.update_lock_conflicts.inc()
            raise
        finally:
            if not update.is_preview:
                self._metrics.update_lock_wait_seconds.observe(time.perf_counter() - began)
        self._metrics.updates_started.labels(_kind_label(update)).inc()
        self._announced()
        return started

    async def _take(
        self, stack_id: str, update_id: str, update: UpdateRecord, journal_version: int
    ) -> StartedUpdate:
        token = self._new_token()
        token_hash = hash_token(token)
        if not update.is_preview:
            await self._acquire(stack_id, token_hash)
        try:
            for _ in range(TAKEOVER_ATTEMPTS):
                now = self._clock.now()
                expires_at = now + LEASE_SECONDS
                result = await self._store.start(
                    stack_id,
                    update_id,
                    token_hash=token_hash,
                    expires_at=expires_at,
                    journal_version=1 if journal_version >= 1 else 0,
                    now=now,
                    announce=self._announce,
                )
                if isinstance(result, Blocked):
                    await self._abandon(result.holder)
                    continue
                return StartedUpdate(
                    version=result.version,
                    lease=Lease(token=token, expires_at=expires_at),
                    journal_version=result.journal_version,
                )
            raise FailedPrecondition(CONFLICT_MESSAGE)
        except BaseException:
            if not update.is_preview:
                await self._lock.release(stack_id, token_hash)
            raise

    async def _acquire(self, stack_id: str, token_hash: str) -> None:
        holder = await self._lock.acquire(stack_id, token_hash, LEASE_SECONDS)
        if holder is None:
            return
        # Redis says the stack is held; the database row says whether that is still true.
        (state,) = await self._store.stack_states([stack_id])
        active = state.active_update
        if active is not None and lease_is_valid(active, self._clock.now()):
            raise FailedPrecondition(CONFLICT_MESSAGE)
        if not await self._lock.take_over(stack_id, holder, token_hash, LEASE_SECONDS):
            raise FailedPrecondition(CONFLICT_MESSAGE)

    async def _abandon(self, holder: UpdateRecord) -> None:
        """End an update whose lease ran out (as failed) and release the stack."""
        ended = holder
        if holder.status == RUNNING:
            ended = await self._store.expire(holder.id, self._clock.now(), self._announce)
            log.info("update_lease_expired", update_id=holder.id, stack_id=holder.stack_id)
            self._announced()
        await self._finalise(ended)

    async def renew(self, lease: LeaseRef, duration_seconds: int) -> Lease:
        """Extend the lease (never shorten it); the token stays the same."""
        validate_renew_duration(duration_seconds)
        now = self._clock.now()
        try:
            async with self._store.fenced(lease, now) as update:
                update.renew(now + duration_seconds)
                record = update.record
        except LeaseExpired:
            # The CLI treats 403 on renewal as "lease expired" and stops renewing.
            raise PermissionDenied("Forbidden: the update's lease has expired") from None
        if not record.is_preview:
            await self._lock.renew(record.stack_id, lease.token_hash, LEASE_SECONDS)
        return Lease(token=lease.token, expires_at=record.lease_expires_at or now)

    async def complete(self, lease: LeaseRef, status: str) -> None:
        """End the update (idempotent for the same status), store its state, free the stack."""
        validate_complete_status(status)
        ended = await self._store.end(
            lease.update_id,
            status=status,
            now=self._clock.now(),
            lease=lease,
            announce=self._announce,
        )
        self._announced()
        await self._finalise(ended)
        if not ended.is_preview:
            await self._lock.release(ended.stack_id, lease.token_hash)

    async def cancel(self, stack_id: str, update_id: str) -> None:
        """`pulumi cancel`: end a running update at once; its lease stops working."""
        update = await self._store.get(stack_id, update_id)
        ended = await self._store.end(
            update.id, status=CANCELLED, now=self._clock.now(), lease=None, announce=self._announce
        )
        self._announced()
        await self._finalise(ended)
        if not ended.is_preview and ended.lease_token_hash:
            await self._lock.release(ended.stack_id, ended.lease_token_hash)

    async def _finalise(self, update: UpdateRecord) -> None:
        if update.is_finalised:
            self._forget(update.id)
            return
        try:
            final = None if update.is_preview else await self._final_state(update)
        except FailedPrecondition:
            # Another caller (a retried complete, a takeover) finalised it meanwhile.
            if (await self._store.get(update.stack_id, update.id)).is_finalised:
                self._forget(update.id)
                return
            raise
        if final is not None:
            final = await self._states.save(final)
        await self._store.finalise(update, final, self._clock.now())
        if final is not None:
            await self._states.confirm(final)
            await self._states.apply_retention(
                update.stack_id, update.stack_path.organization, self._clock.now()
            )
        self._metrics.updates_finished.labels(_kind_label(update), update.status).inc()
        self._forget(update.id)

    def _forget(self, update_id: str) -> None:
        self._texts.drop(update_id)
        self._writers.pop(update_id, None)

    # -- checkpoints, journal, events --------------------------------------------------------

    def _writer(self, update_id: str) -> asyncio.Lock:
        """Serialises one update's writes in this process (the CLI sends one at a time)."""
        if len(self._writers) >= MAX_WRITER_LOCKS:
            # Updates finished on another replica never pass through `_forget` here.
            for idle in [key for key, lock in self._writers.items() if not lock.locked()]:
                del self._writers[idle]
        return self._writers.setdefault(update_id, asyncio.Lock())

    async def patch_checkpoint(self, lease: LeaseRef, write: TextWrite) -> None:
        """Full checkpoint mode: the text is the whole state, so it replaces what was stored."""
        text = write.text
        self._metrics.checkpoint_bytes.labels("full").inc(len(text))
        if write.is_invalid or write.parsed is None:
            raise InvalidArgument(
                "Bad Request: request must contain a checkpoint or using the IsInvalid flag "
                "is not longer supported"
            )
        await off_loop(len(text), _check_parsed, write.parsed)
        compressed, sha256 = await pack(text)
        async with (
            self._writer(lease.update_id),
            self._store.fenced(lease, self._clock.now()) as update,
        ):
            _refuse_preview(update)
            sequence = update.record.checkpoint_sequence + 1
            await update.put_working(sequence, compressed, len(text), sha256)
        self._texts.drop(lease.update_id)

    async def patch_verbatim(self, lease: LeaseRef, write: TextWrite) -> None:
        """A verbatim text: stored as received and kept as the base for the next delta."""
        text, sequence = write.text, write.sequence
        self._metrics.checkpoint_bytes.labels("verbatim").inc(len(text))
        if sequence < 1:
            raise InvalidArgument("Bad Request: sequenceNumber must be 1 or more")
        if not text or write.parsed is None:
            raise InvalidArgument("Bad Request: untypedDeployment is required")
        await off_loop(len(text), _check_parsed, write.parsed)
        working = await off_loop(len(text), WorkingText, text)
        compressed = await off_loop(len(text), checkpoints.compress, text)
        async with self._writer(lease.update_id):
            fenced = False
            try:
                async with self._store.fenced(lease, self._clock.now()) as update:
                    fenced = True
                    _refuse_preview(update)
                    last = update.record.checkpoint_sequence
                    if sequence < last:
                        raise _stale_sequence(sequence, last)
                    await update.put_working(sequence, compressed, len(text), working.sha256_hex())
            except BaseException:
                # A refused claim leaves the update's cached text alone: it is not the caller's.
                if fenced:
                    self._texts.drop(lease.update_id)
                raise
            self._texts.put(lease.update_id, sequence, working)

    async def patch_delta(self, lease: LeaseRef, write: DeltaWrite) -> None:
        """Apply text edits to the last text of this update; a wrong hash changes nothing.

        The write arrives parsed and checked (`bodies`): nothing here reads its JSON again.
        """
        raw_edits, edits, sequence = write.raw_edits, write.edits, write.sequence
        expected = write.checkpoint_hash
        self._metrics.checkpoint_bytes.labels("delta").inc(len(raw_edits))
        async with self._writer(lease.update_id):
            fenced = False
            try:
                async with self._store.fenced(lease, self._clock.now()) as update:
                    fenced = True
                    _refuse_preview(update)
                    record = update.record
                    last = record.checkpoint_sequence
                    if sequence <= last:
                        if sequence == last and await self._current_hash(update) == expected:
                            return
                        raise _stale_sequence(sequence, last)
                    if last == 0:
                        raise InvalidArgument(
                            "Bad Request: a checkpoint delta needs an earlier verbatim "
                            "checkpoint of this update"
                        )
                    working = await self._base_text(update, last)
                    applied = await off_loop(working.size, working.apply, edits, expected)
                    if not applied:
                        raise InvalidArgument(
                            "Bad Request: checkpoint hash mismatch: the delta does not produce "
                            "the expected checkpoint"
                        )
                    await update.add_delta(sequence, checkpoints.compress(raw_edits), expected)
                    if update.is_due_for_materialising(working.size, MATERIALISE_EVERY):
                        text = working.to_bytes()
                        compressed = await off_loop(len(text), checkpoints.compress, text)
                        await update.put_working(sequence, compressed, len(text), expected)
            except BaseException:
                # The in-memory text may be ahead of what was committed: rebuild next time
                # (a refused claim never touched it).
                if fenced:
                    self._texts.drop(lease.update_id)
                raise
            self._texts.put(lease.update_id, sequence, working)

    async def _current_hash(self, update: FencedUpdate) -> str:
        cached = self._texts.get(update.record.id)
        if cached is not None and cached.sequence == update.record.checkpoint_sequence:
            return cached.text.sha256_hex()
        working = await self._base_text(update, update.record.checkpoint_sequence)
        return working.sha256_hex()

    async def _base_text(self, update: FencedUpdate, sequence: int) -> WorkingText:
        """The text at `sequence`: from memory, caught up with newer deltas, or rebuilt."""
        cached = self._texts.get(update.record.id)
        if cached is not None and cached.sequence == sequence:
            return cached.text
        if cached is not None and cached.sequence < sequence:
            stored, deltas = await update.working_after(cached.sequence)
            if stored is None and catch_up(cached.text, deltas):
                return cached.text
        self._texts.drop(update.record.id)
        stored, deltas = await update.working_after(None)
        return await rebuild(stored, deltas)

    async def append_journal(self, lease: LeaseRef, entries: Sequence[Mapping[str, Any]]) -> None:
        """Store journal entries (duplicates of a retried batch are ignored).

        The entries arrive parsed (`bodies`); each is checked, serialised and compressed once.
        """
        checked: list[tuple[int, bytes]] = []
        size = 0
        compressor = self._journal_compressor
        for entry in entries:
            sequence = validate_entry(entry)
            data = orjson.dumps(entry)
            size += len(data)
            checked.append((sequence, compressor.compress(data)))
        self._metrics.checkpoint_bytes.labels("journal").inc(size)
        now = self._clock.now()
        if await self._store.append_journal_at_once(lease, now, checked):
            return
        await self._store.append_journal(lease, now, checked)

    async def record_events(self, lease: LeaseRef, batch: EventBatch) -> None:
        """Store engine events by sequence (retries are duplicates, order is restored on read)."""
        now = self._clock.now()
        if await self._store.add_events_at_once(lease, now, batch.events, batch.resource_changes):
            return
        await self._store.append_events(lease, now, batch.events, batch.resource_changes)

    async def append_log(self, lease: LeaseRef, kind: str, fields: bytes) -> None:
        async with self._store.fenced(lease, self._clock.now()) as update:
            await update.add_log_entry(kind, fields)

    # -- state -------------------------------------------------------------------------------

    async def _final_state(self, update: UpdateRecord) -> FinalState:
        """The deployment an ended update leaves: its checkpoints, its journal, or its base."""
        if update.has_checkpoint:
            text = await self._checkpoint_text(update)
            if text is None:
                raise FailedPrecondition("Conflict: the update's checkpoints are gone")
            return await final_state(text)
        if update.has_journal:
            text, count = await self._replayed(update)
            return await final_state(text, count)
        base = await self._store.version(update.stack_id, update.base_version)
        if base is not None and update.base_version:
            compressed = await self._states.compressed(base)
            return FinalState(compressed, base.size, base.sha256, base.resource_count)
        return await final_state(checkpoints.EMPTY_DEPLOYMENT, 0)

    async def _checkpoint_text(self, update: UpdateRecord) -> bytes | None:
        """The update's latest checkpoint text (None once its working data is gone)."""
        cached = self._texts.get(update.id)
        if cached is not None and cached.sequence == update.checkpoint_sequence:
            return cached.text.to_bytes()
        stored, deltas = await self._store.working(update.id)
        if stored is None:
            return None
        return (await rebuild(stored, deltas)).to_bytes()

    async def _replayed(self, update: UpdateRecord) -> tuple[bytes, int]:
        entries = await self._store.journal(update.id)
        base_text = None
        if update.base_version:
            stored = await self._store.version(update.stack_id, update.base_version)
            if stored is not None:
                base_text = await self._states.compressed(stored)
        now = datetime.fromtimestamp(self._clock.now(), tz=UTC)
        return await asyncio.to_thread(replay_blocking, base_text, entries, now)

    async def export(self, stack_id: str, version: int) -> bytes:
        """A stored version, or the current deployment (a running update's latest state)."""
        for _ in range(EXPORT_ATTEMPTS):
            (state,) = await self._store.stack_states([stack_id])
            active = state.active_update
            if active is None or active.is_finalised:
                break
            if version and active.version != version:
                break
            text = await self._running_text(active)
            # An update that ended while its working data was read left that data half
            # deleted: read again, from the version it stored.
            if text is not None and not (await self._store.get(stack_id, active.id)).is_finalised:
                return text
        else:
            raise FailedPrecondition("Conflict: the stack changed while it was read; try again")
        return await self._stored_version(stack_id, version)

    async def _running_text(self, update: UpdateRecord) -> bytes | None:
        """A running update's latest state (None if its working data is gone)."""
        if update.has_checkpoint:
            return await self._checkpoint_text(update)
        if update.has_journal:
            return (await self._replayed(update))[0]
        if not update.base_version:
            return checkpoints.EMPTY_DEPLOYMENT
        stored = await self._store.version(update.stack_id, update.base_version)
        return None if stored is None else await unpack(await self._states.compressed(stored))

    async def _stored_version(self, stack_id: str, version: int) -> bytes:
        """A version's deployment; `0` is the newest (the empty deployment when none)."""
        stored = await self._store.version(stack_id, version)
        if stored is None:
            if version:
                raise NotFound(f"Not Found: Version {version}")
            return checkpoints.EMPTY_DEPLOYMENT
        return await unpack(await self._states.compressed(stored))

    async def import_deployment(
        self, stack_id: str, stack_path: tuple[str, str, str], text: bytes, requested_by: str
    ) -> str:
        """`stack import`: a finished update of kind import whose state is the given text.

        A running update is refused (409) before the text is looked at, as seed 000 orders it.
        """
        (state,) = await self._store.stack_states([stack_id])
        if state.active_update is not None and not state.active_update.is_finalised:
            refused = holder_refusal(state.active_update, self._clock.now())
            if refused is not None:
                raise refused
        parsed = checkpoints.check_untyped_deployment(
            checkpoints.parse_json(text, "the deployment")
        )
        named = checkpoints.service_provider_stack(parsed)
        if named is not None and named != stack_path:
            raise InvalidArgument(
                "Bad Request: cannot import deployment with encrypted secrets from a different "
                "stack"
            )
        final = await self._states.save(await final_state(text, checkpoints.resource_count(parsed)))
        for _ in range(TAKEOVER_ATTEMPTS):
            result = await self._store.record_finished(
                stack_id,
                kind=IMPORT_KIND,
                requested_by=requested_by,
                final=final,
                now=self._clock.now(),
                stack_path=StackPath(*stack_path),
            )
            if isinstance(result, Blocked):
                await self._abandon(result.holder)
                continue
            await self._finished(stack_id, stack_path[0], final)
            return result
        raise FailedPrecondition(CONFLICT_MESSAGE)

    async def _finished(self, stack_id: str, organization: str, final: FinalState) -> None:
        """After a version's row committed: its blob checked, retention applied."""
        await self._states.confirm(final)
        await self._states.apply_retention(stack_id, organization, self._clock.now())

    async def record_rename(
        self, stack_id: str, stack_path: tuple[str, str, str], requested_by: str
    ) -> str:
        """A rename history entry whose state names the stack's new path.

        The CLI sends secret decryption to the stack a service secrets provider's state
        names, so that state must follow the rename.
        """
        for _ in range(TAKEOVER_ATTEMPTS):
            (state,) = await self._store.stack_states([stack_id])
            text = await self.export(stack_id, 0)
            renamed = await off_loop(len(text), checkpoints.retarget, text, stack_path)
            final = await self._states.save(await final_state(renamed))
            try:
                result = await self._store.record_finished(
                    stack_id,
                    kind=RENAME_KIND,
                    requested_by=requested_by,
                    final=final,
                    now=self._clock.now(),
                    expected_version=state.version,
                    stack_path=StackPath(*stack_path),
                )
            except Aborted:
                continue
            if isinstance(result, Blocked):
                await self._abandon(result.holder)
                continue
            await self._finished(stack_id, stack_path[0], final)
            return result
        raise FailedPrecondition(CONFLICT_MESSAGE)

    async def stack_states(self, stack_ids: Sequence[str]) -> list[StackState]:
        return await self._store.stack_states(stack_ids)

    async def check_deletion(self, stack_id: str, *, force: bool) -> None:
        """Refuse while an update holds the stack, or (without force) while it has resources."""
        (state,) = await self._store.stack_states([stack_id])
        active = state.active_update
        if active is not None and lease_is_valid(active, self._clock.now()):
            raise FailedPrecondition(
                "Conflict: an update is in progress on this stack; wait for it or cancel it"
            )
        if force:
            return
        count = state.resource_count
        if active is not None and not active.is_finalised:
            count = checkpoints.count_resources(await self.export(stack_id, 0))
        if count > 0:
            # The CLI recognises exactly this text and suggests --force.
            raise InvalidArgument("Bad Request: Stack still contains resources.")

    async def purge(self, stack_id: str) -> None:
        await self._store.purge(stack_id)


def _kind_label(update: UpdateRecord) -> str:
    """The update's kind for metrics; a dry run counts as a preview (it holds no lock)."""
    return "preview" if update.is_preview else update.kind


def _check_parsed(parsed: Mapping[str, Any]) -> None:
    """A checkpoint must be something the CLI can load back later."""
    checkpoints.check_untyped_deployment(parsed, "the checkpoint")


def _refuse_preview(update: FencedUpdate) -> None:
    if update.record.is_preview:
        raise preview_write_refused()


def _stale_sequence(sequence: int, last: int) -> Aborted:
    return Aborted(
        f"Conflict: checkpoint sequence number {sequence} is not after the last applied "
        f"one ({last})"
    )

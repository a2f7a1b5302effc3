"""SQL for where stack state versions live: which blobs rows name, the garbage collector's
candidates, versions still holding their text in the database, and retention settings."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

from sqlalchemy import and_, delete, func, select
from sqlalchemy import update as sql_update
from sqlalchemy.dialects import postgresql, sqlite

from services.common.db import Sessions
from services.updates.models import BlobCandidateRow, RetentionRow, StackVersionRow, UpdateRow

# Digests looked up in one statement (well under SQLite's and PostgreSQL's parameter limits).
BATCH = 500


@dataclass(frozen=True)
class InlineVersion:
    """A version whose compressed text is still in its row (written before the blob store)."""

    stack_id: str
    version: int
    text_compressed: bytes


@dataclass(frozen=True)
class Retention:
    """An organization's setting and its stacks' overrides (None: keep every version)."""

    organization: str
    keep_versions: int | None
    stacks: dict[str, int]


class StateStore:
    """Rows that name blobs, and the settings that decide which versions keep their text."""

    def __init__(self, sessions: Sessions, dialect: str, reads: Sessions | None = None) -> None:
        self._sessions = sessions
        self._reads = reads or sessions
        self._dialect = dialect

    # -- the garbage collector ---------------------------------------------------------------

    async def referenced(self, digests: Collection[str]) -> set[str]:
        """Those of `digests` that some version row names."""
        found: set[str] = set()
        ordered = sorted(digests)
        async with self._reads.begin() as session:
            for start in range(0, len(ordered), BATCH):
                rows = await session.scalars(
                    select(StackVersionRow.blob_digest)
                    .where(StackVersionRow.blob_digest.in_(ordered[start : start + BATCH]))
                    .distinct()
                )
                found.update(digest for digest in rows if digest)
        return found

    async def note_candidates(self, digests: Collection[str], now: float) -> None:
        """Remember unnamed blobs; one already noted keeps the time it was first seen."""
        if not digests:
            return
        dialect = postgresql if self._dialect == "postgresql" else sqlite
        statement = dialect.insert(BlobCandidateRow).on_conflict_do_nothing(
            index_elements=["digest"]
        )
        async with self._sessions.begin() as session:
            await session.execute(
                statement, [{"digest": digest, "first_seen": now} for digest in sorted(digests)]
            )

    async def candidates(self) -> dict[str, float]:
        async with self._reads.begin() as session:
            rows = await session.execute(
                select(BlobCandidateRow.digest, BlobCandidateRow.first_seen)
            )
            return {digest: first_seen for digest, first_seen in rows}

    async def forget_candidates(self, digests: Collection[str]) -> None:
        ordered = sorted(digests)
        if not ordered:
            return
        async with self._sessions.begin() as session:
            for start in range(0, len(ordered), BATCH):
                await session.execute(
                    delete(BlobCandidateRow).where(
                        BlobCandidateRow.digest.in_(ordered[start : start + BATCH])
                    )
                )

    async def claim_for_deletion(self, digest: str, seen_before: float) -> bool:
        """In one transaction: True (and the candidate row gone) when the blob was noted
        before `seen_before` and no row names it now; the caller then deletes the blob."""
        async with self._sessions.begin() as session:
            named = await session.scalar(
                select(func.count())
                .select_from(StackVersionRow)
                .where(StackVersionRow.blob_digest == digest)
            )
            if named:
                await session.execute(
                    delete(BlobCandidateRow).where(BlobCandidateRow.digest == digest)
                )
                return False
            result = await session.execute(
                delete(BlobCandidateRow).where(
                    BlobCandidateRow.digest == digest, BlobCandidateRow.first_seen < seen_before
                )
            )
            return bool(getattr(result, "rowcount", 0))

    # -- moving texts out of rows ------------------------------------------------------------

    async def inline_versions(self, limit: int) -> list[InlineVersion]:
        """Up to `limit` versions whose text is still in their row."""
        async with self._reads.begin() as session:
            rows = await session.execute(
                select(StackVersionRow.stack_id, StackVersionRow.version, StackVersionRow.data)
                .where(StackVersionRow.blob_digest.is_(None), StackVersionRow.pruned_at.is_(None))
                .order_by(StackVersionRow.stack_id, StackVersionRow.version)
                .limit(limit)
            )
            return [
                InlineVersion(stack_id, version, bytes(data)) for stack_id, version, data in rows
            ]

    async def name_blob(self, stack_id: str, version: int, digest: str) -> bool:
        """The version's text now lives in blob `digest`: empty its row's copy (once)."""
        async with self._sessions.begin() as session:
            result = await session.execute(
                sql_update(StackVersionRow)
                .where(
                    StackVersionRow.stack_id == stack_id,
                    StackVersionRow.version == version,
                    StackVersionRow.blob_digest.is_(None),
                    StackVersionRow.pruned_at.is_(None),
                )
                .values(blob_digest=digest, data=b"")
            )
            return bool(getattr(result, "rowcount", 0))

    # -- retention ---------------------------------------------------------------------------

    async def retention(self, organization: str) -> Retention:
        async with self._reads.begin() as session:
            rows = await session.execute(
                select(RetentionRow.stack_id, RetentionRow.keep_versions).where(
                    RetentionRow.organization == organization
                )
            )
            found = {stack_id: keep for stack_id, keep in rows}
        keep = found.pop("", None)
        return Retention(organization, keep, found)

    async def set_retention(self, organization: str, stack_id: str, keep: int | None) -> None:
        """Set (or with None clear) an organization's setting (`stack_id` '') or a stack's."""
        async with self._sessions.begin() as session:
            await session.execute(
                delete(RetentionRow).where(
                    RetentionRow.organization == organization, RetentionRow.stack_id == stack_id
                )
            )
            if keep is not None:
                session.add(
                    RetentionRow(organization=organization, stack_id=stack_id, keep_versions=keep)
                )

    async def stacks_of(self, organization: str) -> list[str]:
        """Stacks of an organization that have stored versions."""
        async with self._reads.begin() as session:
            rows = await session.scalars(
                select(UpdateRow.stack_id)
                .where(UpdateRow.stack_organization == organization)
                .distinct()
            )
            return list(rows)

    async def prune(self, stack_id: str, keep: int, now: float) -> list[int]:
        """Let go of the text of every version but the newest `keep`; the versions pruned."""
        async with self._sessions.begin() as session:
            newest = await session.scalar(
                select(func.max(StackVersionRow.version)).where(
                    StackVersionRow.stack_id == stack_id
                )
            )
            if newest is None:
                return []
            condition = and_(
                StackVersionRow.stack_id == stack_id,
                StackVersionRow.version <= int(newest) - keep,
                StackVersionRow.pruned_at.is_(None),
            )
            versions = list(await session.scalars(select(StackVersionRow.version).where(condition)))
            if versions:
                await session.execute(
                    sql_update(StackVersionRow)
                    .where(condition)
                    .values(pruned_at=now, data=b"", blob_digest=None)
                )
            return sorted(versions)

    async def pruned_versions(self, stack_id: str, versions: Sequence[int]) -> set[int]:
        """Which of `versions` of the stack have been pruned."""
        if not versions:
            return set()
        async with self._reads.begin() as session:
            rows = await session.scalars(
                select(StackVersionRow.version).where(
                    StackVersionRow.stack_id == stack_id,
                    StackVersionRow.version.in_(list(versions)),
                    StackVersionRow.pruned_at.is_not(None),
                )
            )
            return set(rows)

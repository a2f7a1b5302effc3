"""The updates service's read views: an update's status and events, the history, previews,
the activity feed, resources of a version, summaries and StackReference lookups.

Servicer methods call one method here each; nothing here writes.
"""

from __future__ import annotations

from collections.abc import Sequence

import orjson

from services.common.errors import NotFound
from services.updates import views
from services.updates.domain import (
    ALL_EVENTS,
    ENDED,
    MAX_EVENTS_PAGE_SIZE,
    MAX_FEED_ITEMS,
    MAX_FILTERED_EVENT_SCAN,
    MAX_REFERENCING_STACKS,
    MAX_SUMMARY_EVENTS,
    MAX_TOKEN_LOOKUP,
    EngineEvent,
    EventFilter,
    HistoryPage,
    StackReference,
    StatusEvent,
    Timeline,
    UpdateRecord,
    check_token_lookup,
    collates_with,
    event_names_urn,
    events_page_size,
    feed_page,
    history_page,
    parse_index_token,
    update_not_found,
)
from services.updates.history_store import HistoryStore
from services.updates.states import StateTexts
from services.updates.store import UpdateStore
from services.updates.texts import off_loop, unpack


def _is_about(event: EngineEvent, urn: str) -> bool:
    return not urn or (
        urn.encode() in event.data and event_names_urn(event.kind, orjson.loads(event.data), urn)
    )


class UpdateHistory:
    """What has been recorded about a stack's updates, over the update and history stores."""

    def __init__(self, store: UpdateStore, history: HistoryStore, states: StateTexts) -> None:
        self._store = store
        self._history = history
        self._states = states

    async def pruned(self, stack_id: str, updates: Sequence[UpdateRecord]) -> set[int]:
        """The versions among these updates' whose state retention removed."""
        versions = [u.version for u in updates if not u.is_preview and u.version]
        return await self._states.pruned_versions(stack_id, versions)

    # -- updates and their events -----------------------------------------------------------

    async def get(self, stack_id: str, update_id: str) -> UpdateRecord:
        return await self._store.get(stack_id, update_id)

    async def status(
        self, stack_id: str, update_id: str, token: str
    ) -> tuple[UpdateRecord, list[StatusEvent], str]:
        """Status lines after the token; the next token is '' once the update has ended."""
        update = await self._store.get(stack_id, update_id)
        start = parse_index_token(token)
        page = events_page_size(0)
        events = await self._history.log_entries(update_id, start - 1, page)
        following = events[-1].index + 1 if events else max(start, 0)
        done = update.status in ENDED and len(events) < page
        return update, events, "" if done else str(following)

    async def engine_events(
        self,
        stack_id: str,
        update_id: str,
        token: str,
        page_size: int,
        wanted: EventFilter = ALL_EVENTS,
    ) -> tuple[list[EngineEvent], str]:
        """A page of engine events after the token; the next token is '' once the update has
        ended and every stored event was read. Types are filtered by the query; a URN by
        reading each candidate's payload, looking at no more than MAX_FILTERED_EVENT_SCAN
        stored events per call (the token resumes where the scan stopped)."""
        update = await self._store.get(stack_id, update_id)
        start = parse_index_token(token)
        page = events_page_size(page_size)
        after = start - 1
        found: list[EngineEvent] = []
        exhausted = False
        scanned = 0
        while len(found) < page and scanned < MAX_FILTERED_EVENT_SCAN:
            batch = await self._history.engine_events(update_id, after, page, wanted.kinds)
            scanned += len(batch)
            for event in batch:
                if len(found) == page:
                    break
                after = event.sequence
                if _is_about(event, wanted.urn):
                    found.append(event)
            else:
                exhausted = len(batch) < page
                if exhausted:
                    break
        done = update.status in ENDED and exhausted
        following = after + 1
        return found, "" if done else str(following)

    async def history(self, stack_id: str, page_size: int, page: int) -> HistoryPage:
        limit, offset = history_page(page_size, page)
        return await self._history.history(stack_id, limit, offset)

    async def by_tokens(
        self, token_ids: Sequence[str], stack_ids: Sequence[str]
    ) -> list[UpdateRecord]:
        """What was created with these tokens (a deployment's job tokens) in these stacks."""
        check_token_lookup(token_ids, stack_ids)
        return await self._history.by_tokens(
            [token for token in token_ids if token], stack_ids, MAX_TOKEN_LOOKUP
        )

    async def by_version(self, stack_id: str, version: int) -> UpdateRecord:
        found = await self._history.by_version(stack_id, version)
        if found is None:
            raise NotFound("Not Found: Version" + (f" {version}" if version else ""))
        return found

    # -- history views -----------------------------------------------------------------------

    async def resources(
        self, stack_id: str, version: int, urn: str, *, count_only: bool = False
    ) -> tuple[int, int, list[bytes]]:
        """(version, resource count, resources) of a stored version (0: the newest); with
        `urn`, only that resource."""
        stored = await self._store.version(stack_id, version)
        if stored is None:
            if version:
                raise NotFound(f"Not Found: Version {version}")
            if urn:
                raise NotFound("Not Found: Resource")
            return 0, 0, []
        if count_only:
            return stored.version, stored.resource_count, []
        text = await unpack(await self._states.compressed(stored))
        found: list[bytes] = await off_loop(len(text), views.resource_views, text, urn)
        return stored.version, stored.resource_count, found

    async def preview(self, stack_id: str, update_id: str) -> UpdateRecord:
        update = await self._store.get(stack_id, update_id)
        if not update.is_preview:
            raise update_not_found()
        return update

    async def previews(
        self, stack_id: str, version: int, page: int, page_size: int, *, ascending: bool
    ) -> tuple[HistoryPage, int]:
        """Previews run ahead of the update that made `version` (on the version before it),
        and the page size applied."""
        limit, offset = feed_page(page, page_size)
        update = await self.by_version(stack_id, version)
        found = await self._history.previews(
            stack_id, update.base_version, limit, offset, ascending=ascending
        )
        return found, limit if page else len(found.updates)

    async def activity(self, stack_id: str, page: int, page_size: int) -> tuple[HistoryPage, int]:
        """Newest first, with the page size applied."""
        limit, offset = feed_page(page, page_size)
        found = await self._history.history(stack_id, limit, offset)
        return found, limit if page else len(found.updates)

    async def timeline(self, stack_id: str, version: int) -> Timeline:
        """The update of a version (0: the newest) and the previews ahead of it, oldest
        first, split into those of the same group of work (collated) and the rest."""
        update = await self.by_version(stack_id, version)
        previews = await self._history.previews(
            stack_id, update.base_version, MAX_FEED_ITEMS, 0, ascending=True
        )
        collated = tuple(
            p for p in previews.updates if collates_with(update.environment, p.environment)
        )
        others = tuple(p for p in previews.updates if p not in collated)
        return Timeline(update, collated, others)

    async def summarise(
        self, stack_id: str, update_id: str, stack_path: str
    ) -> tuple[UpdateRecord, str]:
        """The CLI-like summary of an update ('' : the newest version's) from its events."""
        if update_id:
            update = await self._store.get(stack_id, update_id)
        else:
            found = await self._history.by_version(stack_id, 0)
            if found is None:
                raise update_not_found()
            update = found
        events: list[bytes] = []
        after = -1
        while len(events) < MAX_SUMMARY_EVENTS:
            page = await self._history.engine_events(update.id, after, MAX_EVENTS_PAGE_SIZE)
            events.extend(event.data for event in page)
            if len(page) < MAX_EVENTS_PAGE_SIZE:
                break
            after = page[-1].sequence
        events = events[:MAX_SUMMARY_EVENTS]
        folded = await off_loop(sum(len(e) for e in events), views.digest, events)
        duration = folded.duration_seconds
        if duration is None and update.started_at is not None and update.ended_at is not None:
            duration = int(update.ended_at - update.started_at)
        header = views.SummaryHeader(
            kind=update.kind,
            is_preview=update.is_preview,
            stack_path=stack_path,
            result=update.status,
            duration_seconds=duration,
        )
        return update, views.render_summary(header, folded)

    async def references(self, stack_id: str) -> list[StackReference]:
        return await self._history.references(stack_id)

    async def referencing(self, names: Sequence[str]) -> list[StackReference]:
        return await self._history.referencing(names, MAX_REFERENCING_STACKS)
